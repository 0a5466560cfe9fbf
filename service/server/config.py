"""Server configuration: built once from flags, validated, passed in."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from graph.config import GraphConfig
from service.server.tls import TlsConfig

DEFAULT_PORT = 50051
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_BATCH_EVENTS = 1000
# Page token secrets shorter than this are refused (the configured format,
# parse_page_token_keys, is exactly 32 bytes).
MIN_KEY_BYTES = 16


DEFAULT_WAL_SEGMENT_BYTES = 64 << 20


@dataclass(frozen=True)
class WalConfig:
    """The write-ahead log: ``directory`` holds its segments, which rotate
    past ``segment_bytes``; ``fsync`` is off only in benchmarks (then an
    acknowledged event survives the process but not the machine)."""

    directory: Path
    segment_bytes: int = DEFAULT_WAL_SEGMENT_BYTES
    fsync: bool = True

    def __post_init__(self) -> None:
        if self.segment_bytes < 4096:
            raise ValueError(f"WAL segment size must be at least 4096 bytes, got {self.segment_bytes}")


# The JetStream log (service/durability/stream_log.py).
STREAM_SUBJECT = "contactgraph.events"
STREAM_NAME = "CONTACTGRAPH"


@dataclass(frozen=True)
class StreamConfig:
    """``url``: nats://HOST:PORT[,nats://HOST:PORT...]; ``replicas``: the
    stream's replicas (3 in production, 1 in tests); ``timeout_s``: the
    longest any call to NATS may take (connect, publish ack);
    ``own_apply_wait_s``: how long ApplyEvents waits for its own replica to
    apply the batch before answering (read-your-writes on that replica
    without a token; the answer is sent either way)."""

    url: str
    stream: str = STREAM_NAME
    subject: str = STREAM_SUBJECT
    replicas: int = 1
    timeout_s: float = 2.0
    duplicate_window_s: float = 120.0
    own_apply_wait_s: float = 1.0

    def __post_init__(self) -> None:
        for part in self.url.split(","):
            parsed = urlsplit(part.strip())
            if parsed.scheme != "nats" or not parsed.hostname or parsed.port is None:
                raise ValueError(f"--log: {part!r} is not nats://HOST:PORT")
        if self.replicas < 1:
            raise ValueError(f"stream replicas must be >= 1, got {self.replicas}")
        if not self.timeout_s > 0:
            raise ValueError(f"stream timeout must be > 0, got {self.timeout_s}")

    @property
    def servers(self) -> list[str]:
        return [part.strip() for part in self.url.split(",")]


@dataclass(frozen=True)
class ServerConfig:
    snapshot: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # Ordinary calls running at once (suggestions, reads, guardian calls).
    # They are CPU-bound under one GIL: on two cores, 2 beat 8 in the
    # serving bench (more threads only add GIL hand-offs).
    workers: int = 2
    # Page token keys (service/servicers/page_token.py): the first seals new tokens,
    # every one opens them (rotation). Empty: a random key per process, so
    # tokens die with it (the server logs a warning); see
    # ``load_page_token_keys`` for where they come from.
    token_keys: tuple[bytes, ...] = field(default=(), repr=False)
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
    # The write-ahead log; None serves without one (an acknowledged event
    # then dies with the process).
    wal: WalConfig | None = None
    # The log is a JetStream stream instead of the WAL (serve --log nats://...).
    stream: StreamConfig | None = None
    # Seconds between looks at the snapshot directory for a newer snapshot
    # renamed into place (then it is swapped in); 0 never looks.
    watch_interval_s: float = 0.0
    # Overload (service/server/lanes.py): ordinary calls run ``workers`` at
    # a time with up to ``queue`` more waiting; SafetyService checks have
    # their own reserved ``send_workers`` and ``send_queue``. Past a lane's
    # workers + queue, or after ``queue_timeout_s`` in its queue, a call gets
    # RESOURCE_EXHAUSTED.
    queue: int = 64
    send_workers: int = 2
    send_queue: int = 64
    # ApplyEvents has a lane of its own: its calls wait on the WAL's fsync
    # and group commit needs many at once.
    event_workers: int = 8
    event_queue: int = 64
    queue_timeout_s: float = 1.0
    # Requests larger than this get RESOURCE_EXHAUSTED from gRPC itself.
    max_request_bytes: int = 4 << 20
    # Prometheus metrics over HTTP: None is off, 0 picks a free port (tests);
    # ``metrics_host`` None listens on ``host``.
    metrics_port: int | None = None
    metrics_host: str | None = None
    # TLS, and mutual TLS with per-method allow lists (service/server/tls.py);
    # None serves plaintext, on loopback only unless explicitly allowed.
    tls: TlsConfig | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.watch_interval_s < 0:
            raise ValueError("watch interval must not be negative")
        if min(self.queue, self.send_queue, self.event_queue) < 0 or min(self.send_workers, self.event_workers) < 1:
            raise ValueError("queues must not be negative and every lane needs at least one worker")
        if not self.queue_timeout_s > 0:
            raise ValueError("queue timeout must be positive")
        for i, key in enumerate(self.token_keys):
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"page token key {i + 1} is {len(key)} bytes; at least {MIN_KEY_BYTES} needed")
        if self.max_request_bytes < 1024:
            raise ValueError("max_request_bytes must be at least 1024")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics port {self.metrics_port} is out of range")
        if self.tls is None and not self.allow_remote_plaintext and not _is_loopback(self.host):
            raise ValueError(
                f"host {self.host} is not loopback: plaintext gRPC is only served on loopback "
                "unless explicitly allowed")


PAGE_TOKEN_KEY_ENV = "CONTACTGRAPH_PAGE_TOKEN_KEY"
PAGE_TOKEN_KEY_BYTES = 32


def parse_page_token_keys(text: str, source: str) -> tuple[bytes, ...]:
    """Page token keys from text: one key per line (or, on one line,
    separated by commas), each the standard or URL-safe base64 of exactly
    32 random bytes (``openssl rand -base64 32``); blank lines and lines
    starting with ``#`` are skipped. The first key seals new tokens, all of
    them open tokens. Raises ValueError naming ``source`` and the line,
    never echoing a key."""
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for item in (part.strip() for part in line.split(",")):
            if not item:
                continue
            try:
                key = base64.b64decode(item.replace("-", "+").replace("_", "/") + "=" * (-len(item) % 4),
                                       validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{source} line {number}: a page token key must be base64") from None
            if len(key) != PAGE_TOKEN_KEY_BYTES:
                raise ValueError(f"{source} line {number}: a page token key must be {PAGE_TOKEN_KEY_BYTES} "
                                 f"bytes (base64 of 32 random bytes), got {len(key)}")
            keys.append(key)
    if not keys:
        raise ValueError(f"{source} holds no page token key")
    return tuple(keys)


def load_page_token_keys(key_file: str | Path | None, environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """The configured page token keys: from ``key_file`` when given (the
    flag wins), else from the CONTACTGRAPH_PAGE_TOKEN_KEY variable, else
    none (the server then uses a random key and warns)."""
    if key_file is not None:
        return parse_page_token_keys(Path(key_file).read_text(), f"page token key file {key_file}")
    value = environ.get(PAGE_TOKEN_KEY_ENV)
    if value is not None and value.strip():
        return parse_page_token_keys(value, PAGE_TOKEN_KEY_ENV)
    return ()


def snapshot_roots(config: ServerConfig) -> tuple[Path, ...]:
    """The directories AdminService.LoadSnapshot may read from: the served
    snapshot's parent (where a rebuild renames new snapshots into place;
    both the link's and, if the snapshot path is a symlink, its target's)
    and the data directory. Resolved (symlinks, ``..``)."""
    roots = [config.snapshot.absolute().parent.resolve(), config.snapshot.resolve().parent]
    if config.data_dir is not None:
        roots.append(config.data_dir.resolve())
    return tuple(dict.fromkeys(roots))


def policy_root(config: ServerConfig) -> Path | None:
    """The directory AdminService.ReloadPolicy may read a policy file from:
    the started policy file's (None without one: then only the built-in
    policy runs and no file may be named)."""
    return config.policy_path.resolve().parent if config.policy_path is not None else None


def confined(requested: str, roots: tuple[Path, ...]) -> Path | None:
    """``requested`` resolved (symlinks followed, ``..`` folded; relative to
    the working directory) if it lies within one of ``roots``, else None.
    Nothing is said about whether the path exists: a caller must not learn
    that of files it may not read."""
    try:
        path = Path(requested).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return None
    return path if any(path == root or path.is_relative_to(root) for root in roots) else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
