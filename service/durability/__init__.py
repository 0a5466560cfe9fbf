"""Durability: the write-ahead log, the journal over it, and the snapshot hot swap."""
