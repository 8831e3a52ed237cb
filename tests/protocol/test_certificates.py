"""The TLS certificates ``secagg init`` writes: names, key usages, the pinned server certificate.

The attacks these certificates stop are shown with real processes in
``tests/integration/test_identity.py``; here, what each certificate says.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import shutil
import tomllib
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from secagg import cli
from secagg.errors import ConfigError, PermissionDenied, ServerNotAuthentic
from secagg.protocol.deployment import init_deployment
from secagg.protocol.hosts import resolve_address, split_address
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import load_roster
from secagg.protocol.tls_identity import (
    ca_certificate,
    certified_party,
    party_certificate,
    party_names,
)
from secagg.rpc.transport import Identity, identity

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


def _usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_the_server_certificate_names_the_server_and_serves_only(deployment: Path) -> None:
    cert = _certificate(DeploymentLayout(deployment).party_dir("server", "server") / "tls.pem")
    dns, ips = _names(cert)
    assert _common_name(cert) == "server"
    assert dns == ["server", "localhost"]  # loopback default: no --host server=...
    assert ips == ["127.0.0.1"]
    assert _usages(cert) == [SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize(
    ("name", "role"), [("kh1", "keyholder"), ("c1", "client"), ("admin", "admin")]
)
def test_every_other_certificate_names_its_party_and_is_a_client_only(
    deployment: Path, name: str, role: str
) -> None:
    cert = _certificate(DeploymentLayout(deployment).party_dir(name, role) / "tls.pem")
    assert _common_name(cert) == name
    assert _names(cert) == ([name], [])  # no localhost, no address: nothing to serve
    assert _usages(cert) == [CLIENT_AUTH]


def test_the_roster_records_the_server_certificate_every_party_pins(deployment: Path) -> None:
    layout = DeploymentLayout(deployment)
    server_pem = (layout.party_dir("server", "server") / "tls.pem").read_bytes()
    der = x509.load_pem_x509_certificate(server_pem).public_bytes(serialization.Encoding.DER)
    roster = load_roster(deployment)
    assert roster.server_certificate_sha256 == hashlib.sha256(der).digest()
    assert layout.server_certificate.read_bytes() == server_pem
    for party in ("c1", "kh2", "admin"):
        assert identity(deployment, party).server_certificate() == server_pem


def test_a_substituted_server_certificate_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    init_deployment(directory, clients=2, keyholders=1, threshold=1)
    layout = DeploymentLayout(directory)
    shutil.copyfile(layout.party_dir("c1", "client") / "tls.pem", layout.server_certificate)
    with pytest.raises(ConfigError, match="not the server certificate the roster names"):
        identity(directory, "c2").channel()
    with pytest.raises(ConfigError, match="not the server certificate the roster names"):
        identity(directory, "c1").server_credentials()  # c1 cannot serve with its own either


def test_a_roster_without_the_server_fingerprint_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    init_deployment(directory, clients=2, keyholders=1, threshold=1)
    path = DeploymentLayout(directory).roster
    document = tomllib.loads(path.read_text())
    del document["server"]["tls_certificate_sha256"]
    path.write_text(tomli_w.dumps(document))
    with pytest.raises(ConfigError, match=r"server\.tls_certificate_sha256 is missing"):
        load_roster(directory)


def test_hosts_are_named_in_certificates_and_mapped_in_the_roster(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    code = cli.main(
        ["init", str(directory), "--clients", "2", "--keyholders", "2", "--threshold", "1",
         "--address", "secagg-server.test:50999",
         "--host", "server=secagg-server.test", "--resolve", "secagg-server.test=127.0.0.2",
         "--host", "kh1=kh1.example.org", "--host", "kh1=10.0.0.7"]
    )  # fmt: skip
    assert code == 0
    layout = DeploymentLayout(directory)
    server = _certificate(layout.party_dir("server", "server") / "tls.pem")
    assert _names(server) == (["server", "secagg-server.test"], ["127.0.0.2"])  # no localhost
    kh1 = _certificate(layout.party_dir("kh1", "keyholder") / "tls.pem")
    assert _names(kh1) == (["kh1", "kh1.example.org"], ["10.0.0.7"])
    assert _usages(kh1) == [CLIENT_AUTH]
    assert _names(_certificate(layout.party_dir("kh2", "keyholder") / "tls.pem")) == (["kh2"], [])
    roster = load_roster(directory)
    assert roster.hosts == {"secagg-server.test": "127.0.0.2"}
    assert roster.server_address == "secagg-server.test:50999"
    assert roster.server_target() == "127.0.0.2:50999"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--host", "mallory=evil.test", "not a party"),
        ("--host", "server=*.example.org", "neither an IP address nor"),
        ("--host", "c1=Bad_Name", "neither an IP address nor"),
        ("--resolve", "secagg-server.test=not-an-ip", "must map to an IP address"),
        ("--resolve", "127.0.0.9=127.0.0.2", "must be a DNS name"),
    ],
)
def test_bad_hosts_are_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    directory = tmp_path / "d"
    args = ["init", str(directory), "--clients", "2", "--keyholders", "1", "--threshold", "1"]
    assert cli.main([*args, option, value]) == 2
    assert message in capsys.readouterr().err
    assert not directory.exists()


def test_addresses_resolve_through_the_roster_table() -> None:
    hosts = {"secagg-server.test": "127.0.0.2", "v6.test": "::1"}
    assert resolve_address("secagg-server.test:7000", hosts) == "127.0.0.2:7000"
    assert resolve_address("v6.test:7000", hosts) == "[::1]:7000"
    assert resolve_address("other.test:7000", hosts) == "other.test:7000"
    assert split_address("[::1]:7000") == ("::1", 7000)
    for bad in ("no-port", "host:99999", "host:", "bad host:1"):
        with pytest.raises(ConfigError):
            split_address(bad)


# ---------------------------------------------------------------- the server's check


def _issue(
    deployment: Path, common_name: str, dns: list[str], usages: list[x509.ObjectIdentifier]
) -> bytes:
    """A certificate from the deployment CA with the given names and usages (PEM)."""
    layout = DeploymentLayout(deployment)
    ca_key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = _certificate(layout.ca_certificate)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), False)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_the_server_names_a_caller_by_its_party_certificate(deployment: Path) -> None:
    layout = DeploymentLayout(deployment)
    for name, role in (("c1", "client"), ("kh3", "keyholder"), ("admin", "admin")):
        assert certified_party((layout.party_dir(name, role) / "tls.pem").read_bytes()) == name
    server_pem = (layout.party_dir("server", "server") / "tls.pem").read_bytes()
    with pytest.raises(PermissionDenied, match="not a client certificate"):
        certified_party(server_pem)
    refused = {
        "names another party": _issue(deployment, "c1", ["c2"], [CLIENT_AUTH]),
        "no key usage": _issue(deployment, "c1", ["c1"], []),
        "server and client": _issue(deployment, "c1", ["c1"], [CLIENT_AUTH, SERVER_AUTH]),
    }
    for what, pem in refused.items():
        with pytest.raises(PermissionDenied):
            certified_party(pem)
        print(f"refused: {what}")
    with pytest.raises(PermissionDenied):
        certified_party(b"not a certificate")


def test_party_names_are_listed_once_in_order() -> None:
    names = party_names("server", ["s.test", "s.test", "127.0.0.1"], {"s.test": "127.0.0.1"})
    assert names == [
        x509.DNSName("server"),
        x509.DNSName("s.test"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = ca_certificate(ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = party_certificate("c9", server=False, names=names[:1], key=key, ca_key=ca_key, ca=ca)
    assert _usages(leaf) == [CLIENT_AUTH]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


# ---------------------------------------------------------------- the pinned channel


def _serve(credentials: grpc.ServerCredentials) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, f"127.0.0.1:{port}"


def _check(party: Identity, address: str) -> None:
    with party.channel(address) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_the_pinned_channel_reaches_the_server_and_no_other_certificate(
    deployment: Path,
) -> None:
    c1 = identity(deployment, "c1")
    server, address = _serve(identity(deployment, "server").server_credentials())
    try:
        _check(c1, address)  # the pinned leaf is accepted as the trust anchor
        c1.check_server(address)
    finally:
        server.stop(grace=0).wait()
    # a certificate from the same CA, with the server's name and serverAuth, is still not
    # the pinned one (what a stolen CA key, or a mis-issued certificate, would give)
    key = ec.generate_private_key(ec.SECP256R1())
    layout = DeploymentLayout(deployment)
    ca_key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    names = party_names("server", ["localhost", "127.0.0.1"], {})
    lookalike = party_certificate(
        "server",
        server=True,
        names=names,
        key=key,
        ca_key=ca_key,
        ca=_certificate(layout.ca_certificate),
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    impostors = {
        "lookalike": (key_pem, lookalike.public_bytes(serialization.Encoding.PEM)),
        "client c2": (
            (layout.party_dir("c2", "client") / "tls.key").read_bytes(),
            (layout.party_dir("c2", "client") / "tls.pem").read_bytes(),
        ),
    }
    for what, pair in impostors.items():
        server, address = _serve(grpc.ssl_server_credentials([pair]))
        try:
            with pytest.raises(grpc.RpcError) as refused:
                _check(c1, address)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, what
            with pytest.raises(ServerNotAuthentic, match="is not the roster's server"):
                c1.check_server(address)
        finally:
            server.stop(grace=0).wait()
