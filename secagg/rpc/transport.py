"""Networking helpers shared by the server, key holders and clients (gRPC over mTLS).

Kept apart from the cryptographic modules, which never import it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from secagg import constants as C
from secagg.errors import ConfigError
from secagg.proto import service_pb2
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Roster, load_roster


@dataclass(frozen=True)
class Identity:
    """A party's own files: TLS key and certificate, signing key, directory."""

    name: str
    directory: Path
    deployment: Path
    roster: Roster

    def _read(self, name: str) -> bytes:
        path = self.directory / name
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None

    def signing_key(self) -> Ed25519PrivateKey:
        """The party's Ed25519 signing key."""
        key = serialization.load_pem_private_key(self._read("signing.key"), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{self.directory / 'signing.key'} is not an Ed25519 key")
        return key

    def exchange_key(self) -> X25519PrivateKey:
        """The key holder's X25519 key for receiving sealed shares."""
        key = serialization.load_pem_private_key(self._read("exchange.key"), password=None)
        if not isinstance(key, X25519PrivateKey):
            raise ConfigError(f"{self.directory / 'exchange.key'} is not an X25519 key")
        return key

    def ca_pem(self) -> bytes:
        """The deployment CA certificate."""
        try:
            return DeploymentLayout(self.deployment).ca_certificate.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the CA certificate: {exc.strerror}") from None

    def server_credentials(self) -> grpc.ServerCredentials:
        """mTLS server credentials: client certificates are required and checked."""
        return grpc.ssl_server_credentials(
            [(self._read("tls.key"), self._read("tls.pem"))],
            root_certificates=self.ca_pem(),
            require_client_auth=True,
        )

    def channel(self, address: str | None = None) -> grpc.Channel:
        """A secure channel to the server presenting this party's certificate."""
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem(),
            private_key=self._read("tls.key"),
            certificate_chain=self._read("tls.pem"),
        )
        return grpc.secure_channel(
            address or self.roster.server_address,
            creds,
            options=[("grpc.ssl_target_name_override", "localhost")],
        )


def identity(deployment: Path, name: str) -> Identity:
    """Load a party's identity from a deployment directory by its roster name."""
    deployment = Path(deployment)
    roster = load_roster(deployment)
    role = roster.role_of(name)
    if role is None:
        raise ConfigError(f"{name!r} is not in the roster")
    directory = DeploymentLayout(deployment).party_dir(name, role)
    if not directory.is_dir():
        raise ConfigError(f"{directory} does not exist: this machine has no files for {name}")
    return Identity(name, directory, deployment, roster)


def peer_name(context: grpc.ServicerContext) -> str | None:
    """Common name of the authenticated peer certificate (None if absent)."""
    values = context.auth_context().get("x509_common_name")
    return values[0].decode() if values else None


def chunks(data: bytes) -> Iterator[service_pb2.Chunk]:
    """Split a blob into transfer chunks."""
    for start in range(0, len(data), C.CHUNK_BYTES):
        yield service_pb2.Chunk(data=data[start : start + C.CHUNK_BYTES])


def join_chunks(parts: Iterable[service_pb2.Chunk], *, expected_size: int, sha256: bytes) -> bytes:
    """Reassemble chunks; raises ValueError on overflow, short data or a hash mismatch."""
    buf = bytearray()
    for part in parts:
        buf += part.data
        if len(buf) > expected_size:
            raise ValueError(f"more than the announced {expected_size} bytes")
    if len(buf) != expected_size:
        raise ValueError(f"received {len(buf)} of {expected_size} announced bytes")
    if hashlib.sha256(buf).digest() != sha256:
        raise ValueError("content hash does not match the announced hash")
    return bytes(buf)
