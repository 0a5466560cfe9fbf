"""Serving: the recommendation pipeline, the safety rules, the gRPC
servicers, the server and the probe CLI."""
