"""Server configuration: built once from flags, validated, passed in."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from graph.config import GraphConfig

DEFAULT_PORT = 50051
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_BATCH_EVENTS = 1000


@dataclass(frozen=True)
class ServerConfig:
    snapshot: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 8
    # Signs page tokens. A random key means tokens die with the process.
    token_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    token_ttl_s: float = 600.0
    grace_s: float = 5.0
    allow_remote_plaintext: bool = False
    graph: GraphConfig = field(default_factory=GraphConfig)
    # The safety policy file (TOML); None runs the built-in policy.
    policy_path: Path | None = None
    # Verifies guardian consent tokens (the backend that issues them holds
    # the same key). A random key means no token verifies.
    guardian_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    # Durable service state (guardian links, controls, audit); None keeps it
    # in memory only.
    data_dir: Path | None = None
    audit_retention_s: float = 365 * 86400.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not self.allow_remote_plaintext and not _is_loopback(self.host):
            raise ValueError(
                f"host {self.host} is not loopback: plaintext gRPC is only served on loopback "
                "unless explicitly allowed")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
