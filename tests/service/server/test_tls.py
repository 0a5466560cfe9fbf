"""TLS and mutual TLS with certificates generated here: a client that does
not trust the server's CA is refused; with mutual TLS a client without a
certificate, or with one from another CA, is refused; each method is
allowed only for the client identities of its roles (PERMISSION_DENIED
otherwise); plaintext is refused off loopback unless explicitly allowed."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from contactgraph.v1 import (
    guardian_service_pb2,
    guardian_service_pb2_grpc,
    safety_service_pb2,
    safety_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)
from service.cli.probe import Endpoint, ProbeError, suggest
from service.safety.guardian import issue_consent_token
from service.server.config import ServerConfig
from service.server.tls import Authorizer, ClientTls, TlsConfig, parse_role_assignments
from tests.support.grpc_errors import status_code
from tests.support.rpc import serve_time_stamp

if TYPE_CHECKING:
    from tests.support.server import RunningServer

pytestmark = pytest.mark.integration


# --- certificates -------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class Ca:
    """A throwaway certificate authority writing PEM files into ``root``."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256()))
        self.pem = root / f"{name}.ca.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), uris: tuple[str, ...] = (),
              server: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                  else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        slug = cn.replace("/", "_").replace(":", "_")
        out = Issued(self.root / f"{self.name}.{slug}.pem", self.root / f"{self.name}.{slug}.key")
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return out


@dataclass(frozen=True)
class Pki:
    ca: Ca
    other_ca: Ca
    server: Issued
    clients: dict[str, Issued]
    stranger_from_other_ca: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca, other = Ca(root, "test-ca"), Ca(root, "other-ca")
    server = ca.issue("contactgraph", dns=("localhost",), ips=("127.0.0.1",), server=True)
    clients = {
        "messaging-backend": ca.issue("messaging-backend"),
        "trust-and-safety": ca.issue("trust-and-safety"),
        "guardian-portal": ca.issue("guardian-portal"),
        "stranger": ca.issue("stranger"),
        # Identified by a SAN (a SPIFFE id) rather than the common name.
        "spiffe-backend": ca.issue("backend-7f3a", uris=("spiffe://example.org/messaging",)),
    }
    return Pki(ca, other, server, clients, other.issue("messaging-backend"))


def _channel(target: str, ca: Path | None, client: Issued | None = None) -> grpc.Channel:
    tls = ClientTls(ca, client.cert if client else None, client.key if client else None)
    return grpc.secure_channel(target, tls.credentials(), options=tls.options())


SUGGEST = suggestion_service_pb2.SuggestContactsRequest(user_id=1)
CHECK = safety_service_pb2.CheckMessagingRequest(sender_id=1, recipient_id=2)
EXPLAIN = suggestion_service_pb2.ExplainSuggestionRequest(viewer_id=1, candidate_id=10)
TRANSPARENCY = guardian_service_pb2.GetGuardianTransparencyRequest(child_user_id=30)


def _calls(channel: grpc.Channel) -> dict[str, Callable[[], object]]:
    suggestions = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
    safety = safety_service_pb2_grpc.SafetyServiceStub(channel)
    guardians = guardian_service_pb2_grpc.GuardianServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    return {
        "suggest": lambda: suggestions.SuggestContacts(SUGGEST, timeout=5),
        "check": lambda: safety.CheckMessaging(CHECK, timeout=5),
        "explain": lambda: suggestions.ExplainSuggestion(EXPLAIN, timeout=5),
        "guardian": lambda: guardians.GetGuardianTransparency(TRANSPARENCY, timeout=5),
        "health": lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5),
    }


# --- server-side TLS --------------------------------------------------------------


class TestTls:
    def test_client_trusting_the_ca_is_served(self, pki: Pki,
                                              server_factory: Callable[..., RunningServer]) -> None:
        """With TLS on, a client that trusts the server's CA is served (no
        client certificate needed, no per-method check)."""
        running = server_factory(tls=TlsConfig(pki.server.cert, pki.server.key))
        with _channel(running.target, pki.ca.pem) as channel:
            calls = _calls(channel)
            assert status_code(calls["suggest"]) == grpc.StatusCode.OK
            assert status_code(calls["explain"]) == grpc.StatusCode.OK

    def test_client_without_the_right_ca_is_refused(self, pki: Pki,
                                                    server_factory: Callable[..., RunningServer]) -> None:
        """A client trusting another CA fails the handshake (UNAVAILABLE);
        so does a plaintext client."""
        running = server_factory(tls=TlsConfig(pki.server.cert, pki.server.key))
        with _channel(running.target, pki.other_ca.pem) as channel:
            assert status_code(_calls(channel)["suggest"]) == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(running.target) as channel:
            assert status_code(_calls(channel)["suggest"]) == grpc.StatusCode.UNAVAILABLE

    def test_probe_speaks_tls_and_names_the_failure(self, pki: Pki,
                                                    server_factory: Callable[..., RunningServer]) -> None:
        """The probe's Endpoint carries TLS settings and a request id."""
        running = server_factory(tls=TlsConfig(pki.server.cert, pki.server.key))
        text = suggest(Endpoint(running.target, ClientTls(pki.ca.pem), "probe-1"), 1, 5, "new_contacts", "",
                       True, 5.0)
        assert '"suggestions"' in text
        with pytest.raises(ProbeError, match="cannot reach"):
            suggest(Endpoint(running.target), 1, 5, "new_contacts", "", True, 5.0)


# --- mutual TLS --------------------------------------------------------------------


@pytest.fixture
def mtls(pki: Pki, server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(tls=TlsConfig(pki.server.cert, pki.server.key, pki.ca.pem))


class TestMutualTls:
    def test_client_without_a_certificate_is_refused(self, pki: Pki, mtls: RunningServer) -> None:
        """Mutual TLS: no client certificate, no connection."""
        with _channel(mtls.target, pki.ca.pem) as channel:
            assert status_code(_calls(channel)["health"]) == grpc.StatusCode.UNAVAILABLE

    def test_certificate_from_another_ca_is_refused(self, pki: Pki, mtls: RunningServer) -> None:
        """A client certificate with the right name but the wrong CA fails."""
        with _channel(mtls.target, pki.ca.pem, pki.stranger_from_other_ca) as channel:
            assert status_code(_calls(channel)["check"]) == grpc.StatusCode.UNAVAILABLE

    @pytest.mark.parametrize("client, allowed", [
        ("messaging-backend", {"suggest", "check", "health"}),
        ("trust-and-safety", {"explain", "health"}),
        ("guardian-portal", {"guardian", "health"}),
        ("stranger", {"health"}),
    ])
    def test_each_identity_may_call_only_its_methods(self, pki: Pki, mtls: RunningServer, client: str,
                                                     allowed: set[str]) -> None:
        """messaging backend: suggestions, checks, events; trust and
        safety: explain; guardian portal: guardian calls; anyone with a
        valid certificate: health. Everything else is PERMISSION_DENIED."""
        with _channel(mtls.target, pki.ca.pem, pki.clients[client]) as channel:
            codes = {name: status_code(call) for name, call in _calls(channel).items()}
        assert {n for n, c in codes.items() if c == grpc.StatusCode.OK} == allowed
        assert all(c == grpc.StatusCode.PERMISSION_DENIED for n, c in codes.items() if n not in allowed)

    def test_roles_can_be_given_to_other_identities(self, pki: Pki,
                                                    server_factory: Callable[..., RunningServer]) -> None:
        """--client-role maps a SAN (here a SPIFFE id) to a role; then the
        default name-equals-role mapping no longer applies."""
        roles = parse_role_assignments(["messaging-backend=spiffe://example.org/messaging"])
        running = server_factory(tls=TlsConfig(pki.server.cert, pki.server.key, pki.ca.pem, roles))
        with _channel(running.target, pki.ca.pem, pki.clients["spiffe-backend"]) as channel:
            assert status_code(_calls(channel)["check"]) == grpc.StatusCode.OK
            assert status_code(_calls(channel)["explain"]) == grpc.StatusCode.PERMISSION_DENIED
        with _channel(running.target, pki.ca.pem, pki.clients["messaging-backend"]) as channel:
            assert status_code(_calls(channel)["check"]) == grpc.StatusCode.PERMISSION_DENIED


    def test_only_trusted_roles_see_every_friend_in_common(self, pki: Pki, mtls: RunningServer) -> None:
        """GetRelationship's mutual_friend_count: trust and safety (a
        TRUSTED_ROLES role) sees every friend in common; the messaging
        backend, which relays it to users, only those the actor may be told
        of. 2 and 3 share adults 1, 10 and 12, and, once 3 befriends them,
        banned 20, 16_17 minor 30 and 13_15 minor 31."""
        from contactgraph.v1 import graph_events_pb2, graph_service_pb2, graph_service_pb2_grpc

        events = [graph_events_pb2.GraphEvent(event_id=f"tls-mutual-{a}-{b}", event_time=serve_time_stamp(),
                                              follow=graph_events_pb2.Edge(actor_id=a, target_id=b))
                  for m in (20, 30, 31) for a, b in ((3, m), (m, 3))]
        ask = graph_service_pb2.GetRelationshipRequest(actor_id=2, target_id=3)
        with _channel(mtls.target, pki.ca.pem, pki.clients["messaging-backend"]) as channel:
            graph = graph_service_pb2_grpc.GraphServiceStub(channel)
            graph.ApplyEvents(graph_service_pb2.ApplyEventsRequest(events=events), timeout=10)
            assert graph.GetRelationship(ask, timeout=10).mutual_friend_count == 3
        with _channel(mtls.target, pki.ca.pem, pki.clients["trust-and-safety"]) as channel:
            graph = graph_service_pb2_grpc.GraphServiceStub(channel)
            assert graph.GetRelationship(ask, timeout=10).mutual_friend_count == 6


GUARDIAN_KEY = b"tls-test-guardian-key-0123456789ab"


def _unlink_code(channel: grpc.Channel, by_child: bool) -> tuple[grpc.StatusCode, str]:
    stub = guardian_service_pb2_grpc.GuardianServiceStub(channel)
    try:
        stub.UnlinkGuardian(guardian_service_pb2.UnlinkGuardianRequest(guardian_id="g", child_user_id=30,
                                                                       requested_by_child=by_child), timeout=5)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


class TestRequestedByChild:
    @pytest.mark.parametrize("client, by_child, allowed", [
        ("messaging-backend", True, True),
        ("messaging-backend", False, False),
        ("guardian-portal", False, True),
        ("guardian-portal", True, False),
        ("trust-and-safety", True, False),
        ("stranger", False, False),
    ])
    def test_who_may_speak_for_whom(self, pki: Pki, server_factory: Callable[..., RunningServer], client: str,
                                    by_child: bool, allowed: bool) -> None:
        """UnlinkGuardian with requested_by_child=true speaks for the child,
        whose app reaches us through the messaging backend; false speaks for
        the guardian, through the guardian portal. Either role speaking for
        the other is PERMISSION_DENIED naming requested_by_child, and the
        link stays."""
        running = server_factory(tls=TlsConfig(pki.server.cert, pki.server.key, pki.ca.pem),
                                 guardian_key=GUARDIAN_KEY)
        with _channel(running.target, pki.ca.pem, pki.clients["guardian-portal"]) as portal:
            guardians = guardian_service_pb2_grpc.GuardianServiceStub(portal)
            guardians.LinkGuardian(guardian_service_pb2.LinkGuardianRequest(
                guardian_id="g", child_user_id=30,
                consent_token=issue_consent_token(GUARDIAN_KEY, "g", 30, running.clock.now())), timeout=5)
        with _channel(running.target, pki.ca.pem, pki.clients[client]) as channel:
            code, details = _unlink_code(channel, by_child)
        if allowed:
            assert code == grpc.StatusCode.OK
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED
        with _channel(running.target, pki.ca.pem, pki.clients["guardian-portal"]) as portal:
            links = guardian_service_pb2_grpc.GuardianServiceStub(portal).GetGuardianTransparency(
                TRANSPARENCY, timeout=5).links
        assert [lnk.guardian_id for lnk in links] == ([] if allowed else ["g"])
        if not allowed and client in ("messaging-backend", "guardian-portal"):
            assert "requested_by_child" in details


class TestConfig:
    def test_plaintext_off_loopback_is_refused_unless_allowed(self, pki: Pki, tmp_path: Path) -> None:
        """A non-loopback host needs TLS or an explicit opt-in."""
        with pytest.raises(ValueError, match="loopback"):
            ServerConfig(snapshot=tmp_path, host="0.0.0.0")
        ServerConfig(snapshot=tmp_path, host="0.0.0.0", allow_remote_plaintext=True)
        ServerConfig(snapshot=tmp_path, host="0.0.0.0", tls=TlsConfig(pki.server.cert, pki.server.key))

    def test_bad_tls_settings_are_refused(self, pki: Pki, tmp_path: Path) -> None:
        """Missing files and unknown roles fail at start-up, naming them."""
        with pytest.raises(ValueError, match="does not exist"):
            TlsConfig(tmp_path / "nope.pem", pki.server.key)
        with pytest.raises(ValueError, match="unknown role"):
            parse_role_assignments(["admin=me"])
        with pytest.raises(ValueError, match="ROLE=IDENTITY"):
            parse_role_assignments(["messaging-backend"])

    def test_every_method_of_ours_belongs_to_a_role(self) -> None:
        """No method is left callable by nobody under mutual TLS."""
        from google.protobuf import descriptor_pool

        from service.server.server import SERVICE_NAMES

        authorizer = Authorizer(TlsConfig(Path(__file__), Path(__file__)))
        pool = descriptor_pool.Default()
        for service in SERVICE_NAMES:
            for method in pool.FindServiceByName(service).methods:
                assert authorizer.roles_for(f"/{service}/{method.name}"), f"{service}/{method.name}"
