"""Deployment bootstrap: ``secagg init`` writes the CA, every party's keys and the roster.

``secagg init DIR`` (:func:`init_deployment`) writes a deployment directory::

    DIR/roster.toml                     public: parties, public keys, policy, parameters,
                                        the initial model's SHA-256
    DIR/initial_model.bin               public: round 1's global model (ModelBlob)
    DIR/ca/ca.pem, ca.key               the deployment CA (keep ca.key offline)
    DIR/ca/server.pem                   public: the server's certificate (every party pins
                                        it; its SHA-256 is in the roster)
    DIR/server/                         tls.pem, tls.key, signing.key
    DIR/keyholders/kh<i>/               tls.pem, tls.key, signing.key
    DIR/clients/c<i>/                   tls.pem, tls.key, signing.key
    DIR/admin/                          tls.pem, tls.key (operator tools)

Key holders have no static exchange key: each key ceremony generates one in memory
(:mod:`clients.keyholder.ceremony`), so no file opens the shares a server keeps.
Private keys are written with mode 0600. In a real deployment each party receives only
its own directory plus ``roster.toml``, ``ca/ca.pem`` and ``ca/server.pem``.

Each certificate names its party and carries the right key usage
(:mod:`secagg.protocol.tls_identity`): ``hosts`` (``--host PARTY=NAME``) adds host names
or addresses to a party's certificate, ``resolve`` (``--resolve NAME=IP``) maps host names
to addresses in the roster's ``[hosts]`` table, so a deployment spread over several hosts
needs no DNS entries and no edited certificate. The server's certificate always names the
host of ``server_address``; without any ``--host server=...`` it also names ``localhost``
and ``127.0.0.1`` (the loopback deployments of the demo and the tests).

The roster itself (:class:`Roster`, :class:`Policy`, :func:`load_roster`) lives in
:mod:`secagg.protocol.roster`; where each file lives is :class:`DeploymentLayout`'s.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg import constants as C
from secagg.encoding import F64
from secagg.errors import ConfigError
from secagg.params import Parameters
from secagg.protocol.atomic_directory import atomic_directory
from secagg.protocol.hosts import check_host, host_table, split_address
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import encode_model
from secagg.protocol.roster import (
    ADMIN_NAME,
    Policy,
    Roster,
    check_weight_budget,
    load_roster,
)
from secagg.protocol.sizing import (
    round_timeout_for,
    smallest_upload_cap,
    transfer_timeout_for,
    upload_bytes,
)
from secagg.protocol.tls_identity import (
    LOOPBACK_NAMES,
    ca_certificate,
    fingerprint,
    party_certificate,
    party_names,
)

_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw


# ------------------------------------------------------------------------- writing


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _party_hosts(
    hosts: Sequence[tuple[str, str]], parties: Sequence[str], server_address: str
) -> dict[str, list[str]]:
    """Party name -> its configured host names/addresses (validated; see the module doc)."""
    table: dict[str, list[str]] = {name: [] for name in parties}
    for party, host in hosts:
        if party not in table:
            raise ConfigError(f"--host {party}={host}: {party!r} is not a party of this roster")
        table[party].append(check_host(host))
    server_host, _ = split_address(server_address)
    loopback = [] if table["server"] else list(LOOPBACK_NAMES)
    table["server"] += [*loopback, server_host]
    return table


def _sized(
    params: Parameters,
    model_length: int,
    *,
    max_upload_bytes: int | None,
    round_timeout_seconds: float | None,
    transfer_timeout_seconds: float | None,
) -> dict[str, Any]:
    """The policy's size-derived fields (:mod:`secagg.protocol.sizing`), explicit ones kept.

    Raises
    ------
    ConfigError
        ``max_upload_bytes`` is too small for one upload of the model (every upload
        would be refused).
    """
    size = upload_bytes(params, model_length)
    if max_upload_bytes is not None and max_upload_bytes < smallest_upload_cap(
        params, model_length
    ):
        raise ConfigError(
            f"--max-upload-bytes {max_upload_bytes} is below one upload of the model "
            f"({smallest_upload_cap(params, model_length)} bytes at least): every upload "
            "would be refused"
        )
    return {
        "max_upload_bytes": size if max_upload_bytes is None else max_upload_bytes,
        "round_timeout_seconds": round_timeout_for(size)
        if round_timeout_seconds is None
        else round_timeout_seconds,
        "transfer_timeout_seconds": transfer_timeout_for(size)
        if transfer_timeout_seconds is None
        else transfer_timeout_seconds,
    }


def init_deployment(
    directory: Path,
    *,
    clients: int,
    keyholders: int,
    threshold: int,
    min_contributors: int | None = None,
    max_weight_share: float = Policy.default_of("max_weight_share"),
    rounds: int = Policy.default_of("rounds"),
    round_timeout_seconds: float | None = None,
    transfer_timeout_seconds: float | None = None,
    model_length: int = Policy.default_of("model_length"),
    server_address: str = C.DEFAULT_SERVER_ADDRESS,
    max_upload_bytes: int | None = None,
    retain_rounds: int = Policy.default_of("retain_rounds"),
    epsilon_budget: float = Policy.default_of("epsilon_budget"),
    min_weight: int = Policy.default_of("min_weight"),
    max_client_weight: int | None = None,
    require_dp: bool = False,
    initial_model: F64 | None = None,
    hosts: Sequence[tuple[str, str]] = (),
    resolve: Sequence[tuple[str, str]] = (),
) -> Roster:
    """Write a new deployment directory and return its roster.

    Everything is validated before the first file is written, and the files are written
    into a temporary directory next to ``directory`` that is renamed into place at the
    end, so a refused or failed call leaves no half-written directory. ``initial_model``
    (default: zeros) becomes round 1's global model: written to
    :attr:`DeploymentLayout.initial_model` and fixed in the roster by its SHA-256, so no
    server can start the federation from a model of its choosing.
    ``max_client_weight`` (default: the parameter set's ``max_total_weight // clients``)
    caps one upload's weight so that all roster clients together always fit the
    round's weight budget; a larger cap is refused. ``max_upload_bytes``,
    ``round_timeout_seconds`` and ``transfer_timeout_seconds`` default to values derived
    from the model length (:mod:`secagg.protocol.sizing`); ``retain_rounds`` (0: keep
    all) bounds how many released rounds keep their ciphertext blobs. ``hosts`` are
    ``(party, host)`` pairs naming a party's hosts in its certificate, ``resolve``
    ``(host name, IP)`` pairs for the roster's ``[hosts]`` table (see the module docstring).

    Raises
    ------
    ConfigError
        If the directory already holds a deployment (or anything else), an argument is
        invalid, or the model is too large for one upload.
    """
    target = DeploymentLayout(Path(directory)).root
    if DeploymentLayout(target).roster.exists():
        raise ConfigError(f"{target} already holds a deployment")
    params = Parameters.default()
    if not 1 <= threshold <= keyholders <= params.max_keyholders:
        raise ConfigError(
            f"need 1 <= threshold <= keyholders <= {params.max_keyholders}, "
            f"got threshold={threshold}, keyholders={keyholders}"
        )
    if clients < 1:
        raise ConfigError("need at least one client")
    if not 1 <= model_length <= C.MAX_VECTOR_LENGTH:
        raise ConfigError(f"model_length must be in 1..{C.MAX_VECTOR_LENGTH}")
    client_cap = (
        params.max_total_weight // clients if max_client_weight is None else max_client_weight
    )
    policy = Policy(
        threshold=threshold,
        keyholders=keyholders,
        min_contributors=min_contributors if min_contributors is not None else min(2, clients),
        max_weight_share=max_weight_share,
        rounds=rounds,
        model_length=model_length,
        epsilon_budget=epsilon_budget,
        min_weight=min_weight,
        max_client_weight=client_cap,
        require_dp=require_dp,
        retain_rounds=retain_rounds,
        **_sized(
            params,
            model_length,
            max_upload_bytes=max_upload_bytes,
            round_timeout_seconds=round_timeout_seconds,
            transfer_timeout_seconds=transfer_timeout_seconds,
        ),
    )
    if policy.min_contributors > clients:
        raise ConfigError("min_contributors exceeds the number of clients")
    check_weight_budget(policy, params, clients=clients)
    model = np.zeros(model_length) if initial_model is None else np.asarray(initial_model)
    if model.shape != (model_length,) or not np.all(np.isfinite(model)):
        raise ConfigError(f"the initial model must be {model_length} finite values")
    initial_blob = encode_model(1, model)
    names = [f"kh{i}" for i in range(1, keyholders + 1)] + [f"c{i}" for i in range(1, clients + 1)]
    party_hosts = _party_hosts(hosts, ["server", ADMIN_NAME, *names], server_address)
    resolved = host_table(resolve)
    with atomic_directory(target) as tmp:
        _write(
            DeploymentLayout(tmp),
            policy=policy,
            params=params,
            clients=clients,
            initial_blob=initial_blob,
            party_hosts=party_hosts,
            resolved=resolved,
            server_address=server_address,
        )
    return load_roster(target)


def _write(
    layout: DeploymentLayout,
    *,
    policy: Policy,
    params: Parameters,
    clients: int,
    initial_blob: bytes,
    party_hosts: dict[str, list[str]],
    resolved: dict[str, str],
    server_address: str,
) -> None:
    """Generate the CA and every party's keys and write the deployment under ``layout``."""
    keyholders = policy.keyholders
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = ca_certificate(ca_key)
    _write_private(layout.ca_key, _pem_key(ca_key))
    layout.ca_certificate.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_fingerprint = b""

    def make(name: str, role: str) -> bytes:
        nonlocal server_fingerprint
        path = layout.party_dir(name, role)
        tls_key = ec.generate_private_key(ec.SECP256R1())
        cert = party_certificate(
            name,
            server=role == "server",
            names=party_names(name, party_hosts[name], resolved),
            key=tls_key,
            ca_key=ca_key,
            ca=ca_cert,
        )
        _write_private(path / "tls.key", _pem_key(tls_key))
        (path / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if role == "server":
            server_fingerprint = fingerprint(cert)
            layout.server_certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if role == "admin":
            return b""
        signing = Ed25519PrivateKey.generate()
        _write_private(path / "signing.key", _pem_key(signing))
        return signing.public_key().public_bytes(_RAW, _RAW_PUB)

    server_sig = make("server", "server")
    make(ADMIN_NAME, "admin")
    kh_entries = []
    for i in range(1, keyholders + 1):
        sig = make(f"kh{i}", "keyholder")
        kh_entries.append({"index": i, "name": f"kh{i}", "signing_public_key": sig.hex()})
    client_entries = []
    for i in range(1, clients + 1):
        sig = make(f"c{i}", "client")
        client_entries.append({"name": f"c{i}", "signing_public_key": sig.hex()})
    document: dict[str, Any] = {
        "deployment": {
            "id": secrets.token_hex(8),
            "server_address": server_address,
            "initial_model_sha256": hashlib.sha256(initial_blob).hexdigest(),
        },
        "parameters": {"id": params.id},
        "policy": policy.as_dict(),
        "server": {
            "name": "server",
            "signing_public_key": server_sig.hex(),
            "tls_certificate_sha256": server_fingerprint.hex(),
        },
        "keyholders": kh_entries,
        "clients": client_entries,
    }
    if resolved:
        document["hosts"] = resolved
    layout.initial_model.write_bytes(initial_blob)
    layout.roster.write_text(tomli_w.dumps(document))
