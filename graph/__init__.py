"""The graph as data: the in-memory store, events, embeddings, the ANN index,
the snapshot format and the offline rebuild job. Never imports gRPC or
``service``."""
