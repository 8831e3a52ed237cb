"""The deployment's TLS certificates: each names its party and says what it may be used for.

``secagg init`` (:mod:`secagg.protocol.deployment`) issues, from the deployment CA, one
certificate per party:

* subject common name and first DNS subject alternative name: the party's roster name
  (``server``, ``kh1``, ``c1``, ``admin``), followed by the host names and addresses
  configured for it (``--host PARTY=NAME``; for a host name the roster maps, its address);
* extended key usage ``serverAuth`` for the server, ``clientAuth`` for every other party.

The roster records the SHA-256 of the server's certificate (:func:`fingerprint`); the
parties pin it (:mod:`secagg.rpc.transport`). :func:`certified_party` is the server's
check of a caller's certificate.

Security
--------
The TLS stack enforces the key usages: a client's certificate (``clientAuth`` only)
fails the server-purpose check of every connecting party, the server's certificate fails
the client-purpose check of the server. Names alone would not do: before these
certificates every leaf named ``localhost`` and any party's certificate authenticated as
"the server".
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from secagg.errors import PermissionDenied
from secagg.protocol.hosts import check_host, ip_address

#: Names the server's certificate carries when ``secagg init`` got no ``--host server=``.
LOOPBACK_NAMES = ("localhost", "127.0.0.1")
_VALIDITY = datetime.timedelta(days=365)
_CLOCK_SKEW = datetime.timedelta(minutes=5)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
    )


def _key_usage(*, certificates: bool) -> x509.KeyUsage:
    """A CA signs certificates (and CRLs) only; a leaf signs TLS handshakes only."""
    return x509.KeyUsage(
        digital_signature=not certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificates,
        crl_sign=certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """The deployment CA's self-signed certificate (signs certificates, nothing else)."""
    return (
        _builder(_name("secagg-ca"), _name("secagg-ca"), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificates=True), critical=True)
        .sign(key, hashes.SHA256())
    )


def party_names(
    name: str, hosts: Iterable[str], resolved: Mapping[str, str]
) -> list[x509.GeneralName]:
    """The subject alternative names of ``name``'s certificate.

    The party's roster name first, then each of ``hosts`` (a DNS name, or an IP address),
    and for each host name ``resolved`` maps, its address; each name once, in order.
    """
    ordered: list[str] = []
    for host in (name, *hosts):
        host = check_host(host)
        for value in (host, resolved.get(host)):
            if value is not None and value not in ordered:
                ordered.append(value)
    names: list[x509.GeneralName] = []
    for value in ordered:
        address = ip_address(value)
        names.append(x509.IPAddress(address) if address is not None else x509.DNSName(value))
    return names


def party_certificate(
    name: str,
    *,
    server: bool,
    names: list[x509.GeneralName],
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
) -> x509.Certificate:
    """A leaf certificate for party ``name`` carrying ``names`` (:func:`party_names`).

    ``server`` selects the extended key usage: ``serverAuth`` only for the server,
    ``clientAuth`` only for everyone else.
    """
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    return (
        _builder(_name(name), ca.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def fingerprint(certificate: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER encoding (what the roster records)."""
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest()


def certified_party(pem: bytes) -> str:
    """The roster name a caller's (CA-verified) certificate is issued to.

    Raises
    ------
    PermissionDenied
        The certificate cannot be parsed, has no common name, lacks ``clientAuth`` or
        carries ``serverAuth``, or its DNS names do not name its common name.

    Security
    --------
    Call it only on a certificate the TLS stack verified against the deployment CA (the
    server's ``auth_context``): it reads names, it checks no signature.
    """
    try:
        cert = x509.load_pem_x509_certificate(pem)
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        dns = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise PermissionDenied(
            f"the peer's certificate is not a party certificate: {exc}"
        ) from None
    name = str(common[0].value) if len(common) == 1 else ""
    if not name or name not in dns:
        raise PermissionDenied(f"the peer's certificate does not name its party {name!r}")
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages or ExtendedKeyUsageOID.SERVER_AUTH in usages:
        raise PermissionDenied(f"the certificate of {name!r} is not a client certificate")
    return name
