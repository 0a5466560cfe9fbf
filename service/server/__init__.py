"""The gRPC server: wiring, config, TLS, interceptors and lanes, metrics, logs, status."""
