"""Deployment bootstrap and the roster: who takes part, their public keys, and the policy.

``secagg init DIR`` (:func:`init_deployment`) writes a deployment directory::

    DIR/roster.toml                     public: parties, public keys, policy, parameters
    DIR/ca/ca.pem, ca.key               the deployment CA (keep ca.key offline)
    DIR/server/                         tls.pem, tls.key, signing.key
    DIR/keyholders/kh<i>/               tls.pem, tls.key, signing.key, exchange.key, storage.key
    DIR/clients/c<i>/                   tls.pem, tls.key, signing.key
    DIR/admin/                          tls.pem, tls.key (operator tools)

Private keys are written with mode 0600. In a real deployment each party receives only
its own directory plus ``roster.toml`` and ``ca/ca.pem``.

:func:`load_roster` validates every field and names the bad one in its error.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from . import constants as C
from .errors import ConfigError
from .params import Parameters

ROSTER_FILE = "roster.toml"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw


@dataclass(frozen=True)
class Policy:
    """Decryption and round policy, enforced by the server and by every key holder."""

    threshold: int
    keyholders: int
    min_contributors: int
    max_weight_share: float
    rounds: int
    round_timeout_seconds: float
    max_upload_bytes: int
    model_length: int
    epsilon_budget: float


@dataclass(frozen=True)
class Party:
    """One roster entry."""

    name: str
    role: str  # "server", "keyholder", "client", "admin"
    signing_public_key: bytes
    exchange_public_key: bytes = b""
    index: int = 0  # key holders: 1..n


@dataclass(frozen=True)
class Roster:
    """The validated contents of ``roster.toml``."""

    deployment_id: str
    server_address: str
    params: Parameters
    policy: Policy
    server: Party
    keyholders: tuple[Party, ...]
    clients: tuple[Party, ...]

    def keyholder(self, index: int) -> Party:
        """The key holder with this index (raises :class:`ConfigError`)."""
        for k in self.keyholders:
            if k.index == index:
                return k
        raise ConfigError(f"no key holder with index {index}")

    def client(self, name: str) -> Party:
        """The client with this name (raises :class:`ConfigError`)."""
        for c in self.clients:
            if c.name == name:
                return c
        raise ConfigError(f"no client named {name!r} in the roster")

    def role_of(self, name: str) -> str | None:
        """Role of a certificate common name, or None if unknown."""
        if name == self.server.name:
            return "server"
        if name == "admin":
            return "admin"
        if any(k.name == name for k in self.keyholders):
            return "keyholder"
        if any(c.name == name for c in self.clients):
            return "client"
        return None


# ------------------------------------------------------------------------- writing


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    *,
    is_ca: bool,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if not is_ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(common_name),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def init_deployment(
    directory: Path,
    *,
    clients: int,
    keyholders: int,
    threshold: int,
    min_contributors: int | None = None,
    max_weight_share: float = 1.0,
    rounds: int = 3,
    round_timeout_seconds: float = 60.0,
    model_length: int = 1000,
    server_address: str = "127.0.0.1:50051",
    max_upload_bytes: int | None = None,
    epsilon_budget: float = 3.0,
) -> Roster:
    """Write a new deployment directory and return its roster.

    Raises
    ------
    ConfigError
        If the directory already holds a deployment or an argument is invalid.
    """
    directory = Path(directory)
    if (directory / ROSTER_FILE).exists():
        raise ConfigError(f"{directory} already holds a deployment")
    params = Parameters.default()
    if not 1 <= threshold <= keyholders <= params.max_keyholders:
        raise ConfigError(
            f"need 1 <= threshold <= keyholders <= {params.max_keyholders}, "
            f"got threshold={threshold}, keyholders={keyholders}"
        )
    if clients < 1:
        raise ConfigError("need at least one client")
    ciphertexts = -(-model_length // params.poly_modulus_degree)
    full = ciphertexts * params.poly_modulus_degree * params.bytes_per_parameter
    cap = max_upload_bytes or int(full) + 64 * 1024  # envelope overhead is < 200 bytes
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("secagg-ca", ca_key, ca_key, None, is_ca=True)
    _write_private(directory / "ca" / "ca.key", _pem_key(ca_key))
    (directory / "ca" / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def party_dir(name: str, role_dir: str | None) -> Path:
        return directory / role_dir / name if role_dir else directory / name

    def make(name: str, role_dir: str | None, *, exchange: bool = False) -> tuple[bytes, bytes]:
        path = party_dir(name, role_dir)
        tls_key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, tls_key, ca_key, ca_cert.subject, is_ca=False)
        _write_private(path / "tls.key", _pem_key(tls_key))
        (path / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if name == "admin":
            return b"", b""
        signing = Ed25519PrivateKey.generate()
        _write_private(path / "signing.key", _pem_key(signing))
        ex_pub = b""
        if exchange:
            ex = X25519PrivateKey.generate()
            _write_private(path / "exchange.key", _pem_key(ex))
            _write_private(path / "storage.key", secrets.token_bytes(32))
            ex_pub = ex.public_key().public_bytes(_RAW, _RAW_PUB)
        return signing.public_key().public_bytes(_RAW, _RAW_PUB), ex_pub

    server_sig, _ = make("server", None)
    make("admin", None)
    kh_entries = []
    for i in range(1, keyholders + 1):
        sig, ex = make(f"kh{i}", "keyholders", exchange=True)
        kh_entries.append(
            {
                "index": i,
                "name": f"kh{i}",
                "signing_public_key": sig.hex(),
                "exchange_public_key": ex.hex(),
            }
        )
    client_entries = []
    for i in range(1, clients + 1):
        sig, _ = make(f"c{i}", "clients")
        client_entries.append({"name": f"c{i}", "signing_public_key": sig.hex()})
    document: dict[str, Any] = {
        "deployment": {"id": secrets.token_hex(8), "server_address": server_address},
        "parameters": {"id": params.id},
        "policy": {
            "threshold": threshold,
            "keyholders": keyholders,
            "min_contributors": min_contributors
            if min_contributors is not None
            else min(2, clients),
            "max_weight_share": max_weight_share,
            "rounds": rounds,
            "round_timeout_seconds": round_timeout_seconds,
            "max_upload_bytes": cap,
            "model_length": model_length,
            "epsilon_budget": epsilon_budget,
        },
        "server": {"name": "server", "signing_public_key": server_sig.hex()},
        "keyholders": kh_entries,
        "clients": client_entries,
    }
    (directory / ROSTER_FILE).write_text(tomli_w.dumps(document))
    return load_roster(directory)


# ------------------------------------------------------------------------- reading


class _Fields:
    """Typed access to a TOML table that names the bad field in every error."""

    def __init__(self, table: Any, where: str) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"roster.toml: {where} must be a table")
        self.table = table
        self.where = where

    def _get(self, key: str) -> Any:
        if key not in self.table:
            raise ConfigError(f"roster.toml: {self.where}.{key} is missing")
        return self.table[key]

    def integer(self, key: str, low: int, high: int) -> int:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ConfigError(
                f"roster.toml: {self.where}.{key} must be an integer in {low}..{high}"
            )
        return v

    def number(self, key: str, low: float, high: float) -> float:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
            raise ConfigError(
                f"roster.toml: {self.where}.{key} must be a number in [{low}, {high}]"
            )
        return float(v)

    def text(self, key: str, pattern: re.Pattern[str] | None = None) -> str:
        v = self._get(key)
        if not isinstance(v, str) or (pattern is not None and not pattern.fullmatch(v)):
            raise ConfigError(f"roster.toml: {self.where}.{key} is not a valid value")
        return v

    def key(self, key: str) -> bytes:
        v = self._get(key)
        try:
            raw = bytes.fromhex(v) if isinstance(v, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"roster.toml: {self.where}.{key} must be 32 bytes of hex")
        return raw


def load_roster(directory: Path) -> Roster:
    """Load and validate ``DIR/roster.toml``; raises :class:`ConfigError` naming the bad field."""
    path = Path(directory) / ROSTER_FILE
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run `secagg init` first") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    top = _Fields(doc, "(top level)")
    dep = _Fields(top._get("deployment"), "deployment")
    params = Parameters.default()
    pid = _Fields(top._get("parameters"), "parameters").text("id")
    if pid != params.id:
        raise ConfigError(
            f"roster.toml: parameters.id {pid} is not a parameter set this build knows"
        )
    pol = _Fields(top._get("policy"), "policy")
    keyholders = pol.integer("keyholders", 1, params.max_keyholders)
    policy = Policy(
        threshold=pol.integer("threshold", 1, keyholders),
        keyholders=keyholders,
        min_contributors=pol.integer("min_contributors", 1, 1_000_000),
        max_weight_share=pol.number("max_weight_share", 0.0, 1.0),
        rounds=pol.integer("rounds", 1, 1_000_000),
        round_timeout_seconds=pol.number("round_timeout_seconds", 0.1, 86_400.0),
        max_upload_bytes=pol.integer("max_upload_bytes", 1024, C.MAX_SERIALIZED_BYTES),
        model_length=pol.integer("model_length", 1, C.MAX_VECTOR_LENGTH),
        epsilon_budget=pol.number("epsilon_budget", 0.0, 1000.0),
    )
    srv = _Fields(top._get("server"), "server")
    server = Party(srv.text("name", _NAME), "server", srv.key("signing_public_key"))
    khs_raw = top._get("keyholders")
    if not isinstance(khs_raw, list) or len(khs_raw) != keyholders:
        raise ConfigError(f"roster.toml: keyholders must list exactly {keyholders} entries")
    khs = []
    for n, entry in enumerate(khs_raw):
        f = _Fields(entry, f"keyholders[{n}]")
        khs.append(
            Party(
                f.text("name", _NAME),
                "keyholder",
                f.key("signing_public_key"),
                f.key("exchange_public_key"),
                f.integer("index", 1, keyholders),
            )
        )
    if sorted(k.index for k in khs) != list(range(1, keyholders + 1)):
        raise ConfigError("roster.toml: keyholders[].index must be 1..n, each once")
    cl_raw = top._get("clients")
    if not isinstance(cl_raw, list) or not cl_raw:
        raise ConfigError("roster.toml: clients must be a non-empty list")
    clients = tuple(
        Party(
            (f := _Fields(e, f"clients[{n}]")).text("name", _NAME),
            "client",
            f.key("signing_public_key"),
        )
        for n, e in enumerate(cl_raw)
    )
    names = [server.name, "admin", *(k.name for k in khs), *(c.name for c in clients)]
    if len(set(names)) != len(names):
        raise ConfigError("roster.toml: party names must be unique (and not 'admin')")
    if policy.min_contributors > len(clients):
        raise ConfigError("roster.toml: policy.min_contributors exceeds the number of clients")
    return Roster(
        deployment_id=dep.text("id"),
        server_address=dep.text("server_address"),
        params=params,
        policy=policy,
        server=server,
        keyholders=tuple(khs),
        clients=clients,
    )
