"""Round and decryption policy, end to end: deadline and minimum contributors, the weight
cap the server and the key holders enforce, and the operator's decryption request during a
round."""

from __future__ import annotations

import time

import numpy as np

from secagg.proto import service_pb2 as pb

from ._harness import Harness, max_error, weighted_mean


def test_deadline_closes_round_with_min_contributors(harness: Harness) -> None:
    """At the deadline a round waits for min_contributors, then closes with whoever sent."""
    dep = harness.create(rounds=1, round_timeout=6, min_contributors=2)
    info = harness.start_deployment(dep)
    assert info.deadline_unix > time.time()
    dep.client("c1", seed=1, weight=15)
    waiting = dep.wait_round(
        lambda i: i.status.startswith("waiting"),
        timeout=30,
        what="the deadline to pass with a single upload",
        alive=("server", "c1"),
    )
    assert time.time() >= info.deadline_unix
    assert waiting.state == pb.COLLECTING and waiting.accepted_uploads == 1, waiting
    assert waiting.status == "waiting: 1 of at least 2 contributors", waiting
    assert dep.get_release(1) is None
    dep.client("c2", seed=2, weight=45)  # the second contributor closes the round at once
    rel = dep.wait_release(1, timeout=60, alive=("server", "kh1", "kh2", "kh3"))
    err = dep.fedavg_error(rel, {"c1": (1, 15), "c2": (2, 45)}, 1)
    assert err < 1e-6, f"released model differs from the FedAvg of c1 and c2 by {err}"
    rows = dep.db_rows("SELECT client_id FROM uploads WHERE round=1 ORDER BY client_id")
    assert [r[0] for r in rows] == ["c1", "c2"]
    for name in ("c1", "c2"):
        assert dep.wait_exit(name, timeout=60) == 0


def test_weight_share_cap_is_enforced_by_keyholders(harness: Harness) -> None:
    """A client holding more than max_weight_share of the weight: the server does not ask
    for the decryption (the round keeps collecting, its status says why); an operator who
    asks anyway is refused by the key holders themselves, and nothing is released."""
    dep = harness.create(rounds=1, max_weight_share=0.5, round_timeout=300)
    harness.start_deployment(dep)
    weights = {"c1": 100, "c2": 10, "c3": 10, "c4": 10}
    for n, (name, weight) in enumerate(weights.items(), start=1):
        dep.client(name, seed=n, weight=weight)
    info = dep.wait_round(
        lambda i: i.status.startswith("PolicyViolation"),
        timeout=60,
        what="the server's policy check of the closing set",
        alive=("server", "kh1", "kh2", "kh3"),
    )
    assert info.state == pb.COLLECTING and info.accepted_uploads == 4, info
    assert info.status == (
        "PolicyViolation: WEIGHT_SHARE_EXCEEDED: a client holds 100/130 of the weight; cap 0.5"
    ), info
    assert info.status_reason == "WEIGHT_SHARE_EXCEEDED", info
    status = dep.admin_status()  # the operator sees the reason
    assert status["state"] == "COLLECTING", status
    assert status["status"].endswith("a client holds 100/130 of the weight; cap 0.5"), status
    assert dep.db_rows("SELECT COUNT(*) FROM tasks")[0][0] == 0  # nobody was asked
    # the key holders enforce the cap themselves: the operator's request is refused
    result = dep.admin_request_decryption(1, ["c1", "c2", "c3", "c4"])
    assert result["released"] is False, result
    assert result["refusals"], result
    assert all("cap 0.5" in r["reason"] for r in result["refusals"]), result
    time.sleep(2)
    assert dep.get_release(1) is None and dep.db_release(1) is None
    refusals = dep.db_rows("SELECT keyholder, reason FROM refusals")
    assert refusals and all("cap 0.5" in reason for _, reason in refusals), refusals
    info = dep.round_info()
    assert info is not None and info.state == pb.COLLECTING, info
    assert info.status.startswith("PolicyViolation: WEIGHT_SHARE_EXCEEDED"), info
    dep.assert_running("server", "kh1", "kh2", "kh3")


def test_admin_decryption_during_collection_does_not_block_the_round(harness: Harness) -> None:
    dep = harness.create(rounds=1, min_contributors=2, round_timeout=300)
    info = harness.start_deployment(dep)
    key = dep.public_key()
    rng = np.random.default_rng(3)
    vectors = {c: rng.uniform(-1.0, 1.0, dep.roster.policy.model_length) for c in ("c1", "c2")}
    for name, vector in vectors.items():
        header, blob = dep.build_upload(name, info, vector, weight=10, key=key)
        dep.upload(name, header, blob)
    result = dep.admin_request_decryption(1, ["c1", "c2"])
    assert result["released"] is False, result  # no release before the round closes
    for n, name in ((3, "c3"), (4, "c4")):
        dep.client(name, seed=n, weight=10)
    dep.wait_round(
        lambda i: (
            i.state != pb.COLLECTING
            and (i.state == pb.FINISHED or i.status.startswith("PolicyViolation"))
        ),
        timeout=60,
        what="the round's release or a refusal",
        alive=("server", "kh1", "kh2", "kh3"),
    )
    rel = dep.get_release(1)
    assert rel is not None, f"round 1 not released: {dep.admin_status()}"
    updates = [vectors["c1"], vectors["c2"], *(dep.recorded_update(c, 1) for c in ("c3", "c4"))]
    assert max_error(dep.model_of(rel), weighted_mean(updates, [10] * 4)) < 1e-6
