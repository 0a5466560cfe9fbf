"""TLS and mutual TLS, and who may call what.

With ``client_ca`` set the server requires a client certificate signed by
that CA (mutual TLS) and each method is allowed only for the client
identities of the roles that need it; an identity is the certificate's
common name or any of its subject alternative names (DNS, URI, e.g. a
SPIFFE id). Roles and their methods live here, in code; which identities
hold a role is configuration (``--client-role ROLE=IDENTITY``; by default
an identity equal to the role's name holds it).

Some calls are also checked on a field: ``UnlinkGuardian`` with
``requested_by_child=true`` speaks for the child, whose own app reaches us
through the messaging backend; with ``false`` it speaks for the guardian,
who reaches us through the guardian portal (``CHILD_REQUEST_ROLES``,
``GUARDIAN_REQUEST_ROLES``). Neither may speak for the other.

Without ``client_ca`` (server-side TLS only, or plaintext on loopback)
there is no client identity and no per-method check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

__all__ = ["CHILD_REQUEST_ROLES", "GUARDIAN_REQUEST_ROLES", "OPEN_SERVICES", "ROLES", "ROLE_METHODS", "TRUSTED_ROLES",
           "Authorizer", "TlsConfig", "caller_roles", "parse_role_assignments", "peer_identities",
           "server_credentials"]

# Roles and the methods (full names "/package.Service/Method", or a whole
# service "/package.Service/*") each may call.
ROLE_METHODS: Mapping[str, tuple[str, ...]] = {
    # The messaging backend: suggestions, send-time checks, graph events
    # and the relationship reads that go with them.
    "messaging-backend": (
        "/contactgraph.v1.SuggestionService/SuggestContacts",
        "/contactgraph.v1.SafetyService/*",
        "/contactgraph.v1.GraphService/*",
        # Only with requested_by_child=true (the child's own app), checked
        # by the servicer against CHILD_REQUEST_ROLES.
        "/contactgraph.v1.GuardianService/UnlinkGuardian",
    ),
    # Trust-and-safety tools: why someone was or was not suggested, and the
    # full state of a pair (every friend in common, TRUSTED_ROLES).
    "trust-and-safety": ("/contactgraph.v1.SuggestionService/ExplainSuggestion",
                         "/contactgraph.v1.GraphService/GetRelationship"),
    # The guardian portal: guardian links, controls and overviews.
    "guardian-portal": ("/contactgraph.v1.GuardianService/*",),
    # Operators and the rebuild job: snapshot loads.
    "operator": ("/contactgraph.v1.AdminService/*",),
}
ROLES = tuple(ROLE_METHODS)
# Roles that are shown what a user of the app may not be (e.g. friends in
# common who are hidden minors). Everyone else, and every caller without
# mutual TLS (no verified identity), gets what a user may be shown.
TRUSTED_ROLES = frozenset({"trust-and-safety"})

# Who may send UnlinkGuardian with requested_by_child=true (the child's
# app, through the messaging backend) and with false (the guardian, through
# the guardian portal).
CHILD_REQUEST_ROLES = frozenset({"messaging-backend"})
GUARDIAN_REQUEST_ROLES = frozenset({"guardian-portal"})
# Any authenticated client may use these (load balancers, grpcurl).
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")


@dataclass(frozen=True)
class TlsConfig:
    """PEM files. ``client_ca`` turns on mutual TLS. ``roles``: (identity,
    role) pairs; empty means each role is held by the identity of the same
    name."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    roles: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("cert", "key", "client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TLS {name.replace('_', ' ')} file {path} does not exist")
        for identity, role in self.roles:
            if role not in ROLE_METHODS:
                raise ValueError(f"unknown client role {role!r} for {identity!r}; roles: {', '.join(ROLES)}")

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def identity_roles(self) -> dict[str, frozenset[str]]:
        """{identity: roles}: the configured pairs, or each role's own name."""
        pairs = self.roles or tuple((role, role) for role in ROLES)
        out: dict[str, set[str]] = {}
        for identity, role in pairs:
            out.setdefault(identity, set()).add(role)
        return {k: frozenset(v) for k, v in out.items()}


def parse_role_assignments(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``ROLE=IDENTITY[,IDENTITY...]`` strings -> (identity, role) pairs.
    Raises ValueError naming the bad value."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        role, sep, identities = value.partition("=")
        if not sep or not identities:
            raise ValueError(f"--client-role {value!r}: expected ROLE=IDENTITY[,IDENTITY...]")
        if role not in ROLE_METHODS:
            raise ValueError(f"--client-role {value!r}: unknown role {role!r}; roles: {', '.join(ROLES)}")
        pairs += [(identity.strip(), role) for identity in identities.split(",") if identity.strip()]
    return tuple(pairs)


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    key = Path(tls.key).read_bytes()
    cert = Path(tls.cert).read_bytes()
    client_ca = Path(tls.client_ca).read_bytes() if tls.client_ca is not None else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def peer_identities(context: grpc.ServicerContext) -> list[str]:
    """The client certificate's common name and subject alternative names
    (empty without a verified client certificate)."""
    auth = context.auth_context()
    names = [*auth.get("x509_common_name", ()), *auth.get("x509_subject_alternative_name", ())]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def caller_roles(tls: TlsConfig | None, context: grpc.ServicerContext) -> frozenset[str]:
    """The roles the calling client's verified identity holds (empty
    without mutual TLS)."""
    if tls is None or not tls.mutual:
        return frozenset()
    roles = tls.identity_roles()
    return frozenset().union(*(roles.get(identity, frozenset()) for identity in peer_identities(context)))


class Authorizer:
    """Per-method allow lists by client identity (mutual TLS only)."""

    def __init__(self, tls: TlsConfig) -> None:
        self._roles = tls.identity_roles()

    def roles_for(self, method: str) -> frozenset[str]:
        """Roles allowed to call ``method`` ("/pkg.Service/Method")."""
        service = method.rsplit("/", 1)[0] + "/*"
        return frozenset(role for role, methods in ROLE_METHODS.items()
                         if method in methods or service in methods)

    @staticmethod
    def is_open(method: str) -> bool:
        return method.startswith(OPEN_SERVICES)

    def allowed(self, method: str, identities: Iterable[str], roles: frozenset[str] | None = None) -> bool:
        if self.is_open(method):
            return True
        wanted = self.roles_for(method) if roles is None else roles
        return self.holds(identities, wanted)

    def holds(self, identities: Iterable[str], roles: frozenset[str]) -> bool:
        """Whether any of the caller's identities holds one of ``roles``."""
        return any(self._roles.get(identity, frozenset()) & roles for identity in identities)


def add_port(server: grpc.Server, address: str, tls: TlsConfig | None) -> int:
    """Listen on ``address`` with TLS when configured, plaintext otherwise
    (ServerConfig allows plaintext on loopback only, unless told). Returns
    the port; 0 means it could not bind."""
    if tls is None:
        return int(server.add_insecure_port(address))
    return int(server.add_secure_port(address, server_credentials(tls)))


@dataclass(frozen=True)
class ClientTls:
    """What a client (the probe, the load generator) needs for TLS: the CA
    that signed the server's certificate (None: the system roots), and its
    own certificate and key for mutual TLS. ``server_name`` overrides the
    name checked against the server's certificate."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both --tls-cert and --tls-key")

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(root_certificates=read(self.ca), private_key=read(self.key),
                                            certificate_chain=read(self.cert))

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
