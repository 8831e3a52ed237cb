"""``secagg admin rotate-key`` during a run (real processes over mTLS, issue 11).

Round 1 opens under the key of epoch 1; the operator rotates the key; the key holders
run the ceremony of epoch 2 in the background while round 1 goes on under the old key.
Round 2 (the next round opened after every key holder endorsed the new key) uses the new
key: uploads under the old key are refused, uploads under the new one are released and
verified. The audit log holds both ceremonies and verifies (``secagg audit verify``), and
a decryption of round 1 requested afterwards is refused by every key holder: the old
key is retired.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from clients.client import verify_public_key_bundle
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb

from ._audit_support import load_entries, verify_cli
from ._harness import Deployment, Harness, max_error, weighted_mean
from ._processes import cli

CLIENTS = ("c1", "c2", "c3", "c4")
WEIGHTS = (10, 25, 7, 58)


def _round(dep: Deployment, rnd: int, key: JointPublicKey, seed: int) -> None:
    """Every client uploads under ``key``; the round's release is the weighted mean."""
    info = dep.wait_collecting(rnd, timeout=60)
    rng = np.random.default_rng(seed)
    vectors = [rng.uniform(-1.0, 1.0, dep.roster.policy.model_length) for _ in CLIENTS]
    for name, vector, weight in zip(CLIENTS, vectors, WEIGHTS, strict=True):
        header, blob = dep.build_upload(name, info, vector, weight=weight, key=key)
        dep.upload(name, header, blob)
    release = dep.wait_release(rnd, timeout=90)
    dep.verify_release(release)
    assert max_error(dep.model_of(release), weighted_mean(vectors, WEIGHTS)) < 1e-6


def _rotated_to(dep: Deployment) -> int:
    rows = dep.db_rows("SELECT first_round FROM key_epochs WHERE epoch = 2")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def test_rotate_key_during_a_run(harness: Harness) -> None:
    dep = harness.create(rounds=2, model_length=64, round_timeout=300)
    info = harness.start_deployment(dep)
    old = dep.public_key()
    assert info.public_key_id == old.id_bytes

    rotated = cli("admin", "rotate-key", dep.directory)
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout) == {"ceremony_epoch": 2}
    during = dep.wait_round(
        lambda i: _rotated_to(dep) == 2, timeout=90, what="the key of epoch 2 endorsed"
    )
    assert during.round == 1 and during.public_key_id == old.id_bytes  # round 1 keeps its key
    _round(dep, 1, old, seed=1)

    info = dep.wait_collecting(2, timeout=60)
    bundle = dep.stub("c1").GetPublicKey(pb.Empty(), timeout=10)
    new = verify_public_key_bundle(bundle, dep.roster)  # every key holder endorsed it
    assert info.public_key_id == new.id_bytes != old.id_bytes
    header, blob = dep.build_upload("c1", info, np.zeros(64), key=old)
    with pytest.raises(Exception, match="joint public key"):
        dep.upload("c1", header, blob)
    _round(dep, 2, new, seed=2)

    result = dep.admin_request_decryption(1, list(CLIENTS))
    assert result["released"] is False and result["refusals"], result
    assert all(r["reason"].startswith("KEY_RETIRED: ") for r in result["refusals"]), result

    entries = load_entries(dep.directory)
    epochs = {e["data"]["epoch"] for e in entries if e["type"] == "ceremony"}
    assert epochs == {1, 2}
    keys = [e["data"]["id"] for e in entries if e["type"] == "public_key"]
    assert keys == [old.id_bytes.hex(), new.id_bytes.hex()]
    verified = verify_cli(dep.directory)
    assert verified.returncode == 0, verified.stdout + verified.stderr
