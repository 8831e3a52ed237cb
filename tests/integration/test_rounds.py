"""A full run: 1 server, 3 key holders (t = 2), 4 clients, 3 rounds, over mTLS.

One module-scoped run (``finished_run``) is shared by the two tests here; the fixture
itself drives the run to the end, so neither test depends on the other having run. It
stops the key holders before the server: an agent whose server is gone keeps retrying for
up to two minutes before it looks at SIGTERM again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from clients.trainer import SyntheticTrainer
from secagg.errors import SignatureInvalid
from secagg.keys import KeyShare
from secagg.proto import core_pb2
from secagg.proto import service_pb2 as pb
from secagg.protocol.sealing import decrypt_at_rest

from ._harness import Deployment, Harness, max_error, weighted_mean
from ._processes import KEYHOLDER_PASSPHRASE

CLIENTS = {"c1": (11, 10), "c2": (22, 25), "c3": (33, 7), "c4": (44, 58)}  # name: (seed, weight)
ROUNDS = 3


@dataclass
class FinishedRun:
    harness: Harness
    dep: Deployment
    releases: dict[int, pb.Release]  # from GetRelease
    db_releases: dict[int, bytes]  # the rounds.release column
    global_hashes: dict[int, bytes]  # global_model_hash of each round (from the DB)
    data_while_running: dict[Path, bytes]  # every file of DIR/server/data before shutdown
    sealed_share_rows: int  # ENCRYPTED_SHARE ceremony messages the server relayed


@pytest.fixture(scope="module")
def finished_run(module_harness: Harness) -> FinishedRun:
    dep = module_harness.create(rounds=ROUNDS, model_length=20_000, round_timeout=300)
    info = module_harness.start_deployment(dep)
    assert info.round == 1 and info.accepted_uploads == 0
    releases = dep.run_to_finish(CLIENTS, ROUNDS, finish_timeout=30)
    db_releases = {}
    for r in range(1, ROUNDS + 1):
        blob = dep.db_release(r)
        assert blob is not None
        db_releases[r] = blob
    global_hashes = {
        int(r): bytes(h) for r, h in dep.db_rows("SELECT round, global_model_hash FROM rounds")
    }
    sealed = int(
        dep.db_rows("SELECT COUNT(*) FROM ceremony WHERE kind=?", (pb.ENCRYPTED_SHARE,))[0][0]
    )
    snapshot = {p: p.read_bytes() for p in dep.data.rglob("*") if p.is_file()}
    for name in ("kh1", "kh2", "kh3", "server"):  # key holders first (see module doc)
        assert dep.stop(name) == 0, f"{name} did not stop cleanly on SIGTERM\n{dep.log_tail()}"
    return FinishedRun(module_harness, dep, releases, db_releases, global_hashes, snapshot, sealed)


def test_three_rounds_over_mtls(finished_run: FinishedRun) -> None:
    dep = finished_run.dep
    roster = dep.roster
    length = roster.policy.model_length
    weights = [w for _, w in CLIENTS.values()]
    previous = np.zeros(length)  # round 1's global model: the initial (zero) model
    for r in range(1, ROUNDS + 1):
        rel = finished_run.releases[r]
        assert rel.round == r
        # GetRelease serves exactly what the database committed
        assert rel.SerializeToString() == finished_run.db_releases[r]
        # the round was trained from the model released after the previous round
        if r > 1:
            assert finished_run.global_hashes[r] == finished_run.releases[r - 1].model_hash
        # each client really trained from that model (SyntheticTrainer: 0.5*global + noise)
        updates = []
        for name, (seed, weight) in CLIENTS.items():
            update = dep.recorded_update(name, r)
            expected_update, _ = SyntheticTrainer(seed=seed, weight=weight).train(previous, r)
            assert max_error(update, expected_update) == 0.0, f"{name} round {r}"
            updates.append(update)
        model = dep.model_of(rel)
        expected = weighted_mean(updates, weights)
        err = max_error(model, expected)
        assert err < 1e-6, f"round {r}: released model differs from FedAvg by {err}"
        # the unweighted mean is far away: the weights were applied
        assert max_error(model, np.mean(np.stack(updates), axis=0)) > 1e-3
        # a quorum of t distinct roster key holders, one partial each
        assert len(set(rel.quorum)) == roster.policy.threshold
        assert set(rel.quorum) <= {k.index for k in roster.keyholders}
        assert len(rel.partial_digests) == len(rel.quorum)
        # signed by the roster's server key ...
        dep.verify_release(rel)
        # ... and the check is not vacuous: a release naming another model fails it
        forged = pb.Release()
        forged.CopyFrom(rel)
        forged.model_hash = hashlib.sha256(b"another model").digest()
        with pytest.raises(SignatureInvalid):
            dep.verify_release(forged)
        previous = model
    assert finished_run.global_hashes[ROUNDS + 1] == finished_run.releases[ROUNDS].model_hash


# ------------------------------------------------------------------- secrets at the server


def _windows(secret: bytes, count: int = 6, size: int = 32) -> list[bytes]:
    """``count`` evenly spread ``size``-byte windows of a secret."""
    step = max(1, (len(secret) - size) // (count - 1))
    return [secret[i : i + size] for i in range(0, len(secret) - size + 1, step)][:count]


def _needles(secret: bytes) -> list[bytes]:
    """A secret as raw bytes and as hex text (a log line would print hex)."""
    return [secret, secret.hex().encode(), secret.hex().upper().encode()]


def _found(haystacks: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, data in haystacks.items()
        for what, needle in needles.items()
        if needle in data
    ]


def _keyholder_secrets(dep: Deployment, index: int) -> tuple[bytes, dict[str, bytes]]:
    """(the decrypted share, named needles of every secret of key holder ``index``)."""
    kh_dir = dep.directory / "keyholders" / f"kh{index}"
    passphrase = KEYHOLDER_PASSPHRASE.encode()
    share_bytes = decrypt_at_rest(
        (kh_dir / "state" / "share.enc").read_bytes(), passphrase, is_passphrase=True
    )
    share = KeyShare.from_bytes(share_bytes, dep.roster.params)
    assert share.index == index
    assert share.to_bytes() == share_bytes
    message = core_pb2.KeyShare()
    message.ParseFromString(share_bytes)
    payload = bytes(message.payload)
    assert len(payload) > 10_000
    needles: dict[str, bytes] = {}
    for n, window in enumerate(_windows(payload)):
        for k, needle in enumerate(_needles(window)):
            needles[f"kh{index} share window {n} (form {k})"] = needle
    raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw
    assert not (kh_dir / "exchange.key").exists()  # each ceremony's exchange key: memory only
    for key_file in ("signing.key",):
        key = serialization.load_pem_private_key((kh_dir / key_file).read_bytes(), None)
        private = key.private_bytes(*raw, serialization.NoEncryption())
        assert len(private) == 32
        for k, needle in enumerate(_needles(private)):
            needles[f"kh{index} {key_file} (form {k})"] = needle
    for k, needle in enumerate(_needles(passphrase)):
        needles[f"kh{index} storage passphrase (form {k})"] = needle
    tls_pem = (kh_dir / "tls.key").read_bytes()
    needles[f"kh{index} tls.key PEM"] = tls_pem
    body = b"".join(line for line in tls_pem.splitlines() if not line.startswith(b"-----"))
    needles[f"kh{index} tls.key base64 body"] = body
    return share_bytes, needles


def test_no_secret_material_at_server(finished_run: FinishedRun) -> None:
    dep = finished_run.dep
    haystacks: dict[str, bytes] = {
        f"{p.relative_to(dep.data)} (while running)": data
        for p, data in finished_run.data_while_running.items()
    }
    for p in dep.data.rglob("*"):
        if p.is_file():
            haystacks[f"{p.relative_to(dep.data)} (after shutdown)"] = p.read_bytes()
    for proc in dep.history:
        if proc.name == "server":
            haystacks[f"server stdout (pid {proc.pid})"] = proc.stdout_path.read_bytes()
            haystacks[f"server stderr (pid {proc.pid})"] = proc.stderr_path.read_bytes()
    # the search covers what the server really stored: the database (with its WAL while
    # the server ran), the relayed ceremony messages, blobs and a non-empty log
    names = {name.split(" ")[0] for name in haystacks}
    assert {"state.db", "state.db-wal", "server.log"} <= names, sorted(names)
    assert sum(1 for n in names if n.startswith("blobs/")) >= 10
    assert b"released model" in haystacks["server.log (after shutdown)"]
    assert any(b"released model" in d for n, d in haystacks.items() if n.startswith("server std"))
    relayed = dep.roster.policy.keyholders * (dep.roster.policy.keyholders - 1)
    assert finished_run.sealed_share_rows == relayed  # it relayed every sealed share piece

    for index in range(1, dep.roster.policy.keyholders + 1):
        share_bytes, needles = _keyholder_secrets(dep, index)
        # sanity: the same search finds the share in the key holder's own decrypted share
        share_needles = {k: v for k, v in needles.items() if "share" in k and "(form 0)" in k}
        assert len(share_needles) == 6
        assert len(_found({"decrypted share": share_bytes}, share_needles)) == 6
        # ... and finds a key holder's key file in that key holder's directory
        kh_tls = (dep.directory / "keyholders" / f"kh{index}" / "tls.key").read_bytes()
        assert _found({"tls.key": kh_tls}, needles)
        leaks = _found(haystacks, needles)
        assert not leaks, f"secret material of key holder {index} at the server: {leaks}"
