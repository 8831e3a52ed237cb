"""Networking helpers shared by the server, key holders and clients (gRPC over mTLS).

Kept apart from the cryptographic modules, which never import it.

Who is the server
-----------------
gRPC's Python API does not show a client the certificate its peer presented (the
``auth_context`` exists on the server side only), so a party cannot compare the server's
certificate with the roster after the fact. Instead every channel *pins* it: the only
trust anchor a party's channel has is the server certificate ``ca/server.pem``, read and
checked against the SHA-256 the roster records (:meth:`Identity.server_certificate`), and
the expected TLS name is the roster's server name. The TLS stack then accepts that
certificate only, in the very handshake that carries the RPCs; another party's
certificate fails it (wrong issuer, wrong name, and ``clientAuth`` instead of
``serverAuth``). A refused handshake reaches gRPC callers as a retryable ``UNAVAILABLE``;
:meth:`Identity.check_server` repeats the handshake with :mod:`ssl` to tell a server that
is down from one that is not the roster's, and raises :class:`ServerNotAuthentic` for the
latter. The server, in turn, names each caller by its verified certificate
(:func:`peer_name`).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg import constants as C
from secagg.errors import ConfigError, PermissionDenied, ServerNotAuthentic
from secagg.proto import service_pb2
from secagg.protocol.hosts import split_address
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Roster, load_roster
from secagg.protocol.tls_identity import certified_party


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

    def ca_pem(self) -> bytes:
        """The deployment CA certificate."""
        try:
            return DeploymentLayout(self.deployment).ca_certificate.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the CA certificate: {exc.strerror}") from None

    def server_certificate(self) -> bytes:
        """The roster's server certificate (PEM), checked against the roster's SHA-256.

        Raises
        ------
        ConfigError
            The file is missing, is not a certificate, or is not the one the roster names
            (or the roster names none).
        """
        return self._roster_server_certificate(DeploymentLayout(self.deployment).server_certificate)

    def _roster_server_certificate(self, path: Path) -> bytes:
        expected = self.roster.server_certificate_sha256
        try:
            pem = path.read_bytes()
            der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the certificate {path}: {exc}") from None
        if not expected or hashlib.sha256(der).digest() != expected:
            raise ConfigError(f"{path} is not the server certificate the roster names")
        return pem

    def server_credentials(self) -> grpc.ServerCredentials:
        """mTLS server credentials: client certificates are required and checked.

        Raises
        ------
        ConfigError
            This party's certificate is not the one the roster names as the server's.
        """
        certificate = self._roster_server_certificate(self.directory / "tls.pem")
        return grpc.ssl_server_credentials(
            [(self._read("tls.key"), certificate)],
            root_certificates=self.ca_pem(),
            require_client_auth=True,
        )

    def channel(self, address: str | None = None) -> grpc.Channel:
        """A secure channel to the server presenting this party's certificate.

        ``address`` (default: the roster's server address) is resolved through the
        roster's ``[hosts]``. The channel trusts the roster's server certificate only and
        expects the roster's server name (see the module docstring).

        Security
        --------
        The pinned certificate is not self-signed: gRPC's TLS stack (BoringSSL) accepts it
        as a trust anchor because it takes partial chains
        (``tests/protocol/test_certificates.py`` and the integration tests connect through
        it). A TLS stack that did not would refuse every connection: the pin fails
        closed. The roster's SHA-256 is checked when the file is read, so a substituted
        ``ca/server.pem`` is refused before any connection.
        """
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.server_certificate(),
            private_key=self._read("tls.key"),
            certificate_chain=self._read("tls.pem"),
        )
        return grpc.secure_channel(
            self.roster.server_target(address),
            creds,
            options=[("grpc.ssl_target_name_override", self.roster.server.name)],
        )

    def check_server(self, address: str | None = None, *, timeout: float = 5.0) -> None:
        """Repeat :meth:`channel`'s TLS handshake with :mod:`ssl`; raise if the peer is not
        the roster's server. Sends nothing but the handshake; returns quietly when the
        server cannot be reached or refuses this party (gRPC reports those itself).

        Raises
        ------
        ServerNotAuthentic
            The peer's certificate fails verification against the pinned server
            certificate and name, or its SHA-256 is not the roster's.

        Security
        --------
        A diagnosis, not the protection: the probe is a separate connection, so an
        attacker on the network could answer it and not the channel (or the reverse).
        What protects a party is the channel's own pinned handshake; the probe only turns
        its refusal into a clear error instead of minutes of retries. In TLS 1.3 the
        client verifies the server before it sends its own certificate, so an impostor
        learns nothing from the probe but that someone connected.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain, name, serverAuth
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the pinned leaf is the anchor
        context.load_verify_locations(cadata=self.server_certificate().decode("ascii"))
        context.load_cert_chain(self.directory / "tls.pem", self.directory / "tls.key")
        context.set_alpn_protocols(["h2"])
        host, port = split_address(self.roster.server_target(address))
        name = self.roster.server.name
        try:
            with (
                socket.create_connection((host, port), timeout=timeout) as raw,
                context.wrap_socket(raw, server_hostname=name) as tls,
            ):
                der = tls.getpeercert(binary_form=True) or b""
        except ssl.SSLCertVerificationError as exc:
            raise ServerNotAuthentic(
                f"the peer at {host}:{port} is not the roster's server {name!r}: "
                f"{exc.verify_message}; nothing was sent to it"
            ) from None
        except OSError:  # down, unreachable, or it refused our certificate
            return
        if hashlib.sha256(der).digest() != self.roster.server_certificate_sha256:
            raise ServerNotAuthentic(
                f"the peer at {host}:{port} presents another certificate than the roster's "
                f"server {name!r}; nothing was sent to it"
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
    """The party an authenticated caller's certificate names (None if it names none).

    The certificate must name its common name among its DNS names and carry
    ``clientAuth`` only (:func:`secagg.protocol.tls_identity.certified_party`); whether
    that name is a roster party, and in which role, the caller decides.
    """
    values = context.auth_context().get("x509_pem_cert")
    if not values:
        return None
    try:
        return certified_party(values[0])
    except PermissionDenied:
        return None


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
