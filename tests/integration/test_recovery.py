"""The server SIGKILLed between the last partial's commit and the release (issue 10, item 7).

(Releases are endorsed by key holders, so the restarted server proposes round 1's
model and releases it as soon as t of them endorsed it.) The window is hit
deterministically with the server's test-only fault point
(``SECAGG_FAULT=kill-after-last-partial``, :mod:`server.faults`): the first server
process kills itself right after it committed the last partial of round 1's task. The
server is restarted with the same command and without the fault point; it must release
round 1 exactly once, with the FedAvg of the uploads, and the deployment must run to its
end with an audit log that ``secagg audit verify`` accepts.
"""

from __future__ import annotations

import signal

import pytest

from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_log import read_entries
from server.faults import FAULT_ENV, FaultPoint

from ._harness import Deployment, Harness, cli, wait_until

CLIENTS = {"c1": (1, 12), "c2": (2, 30), "c3": (3, 5), "c4": (4, 21)}  # name: (seed, weight)
ARMED = "TEST-ONLY FAULT POINT ARMED"


def _audit_types(dep: Deployment) -> list[str]:
    return [e.type for e in read_entries(dep.layout.audit_log)]


def _releases_per_round(dep: Deployment) -> dict[int, int]:
    counts: dict[int, int] = {}
    for entry in read_entries(dep.layout.audit_log):
        if entry.type == "release":
            counts[entry.data["round"]] = counts.get(entry.data["round"], 0) + 1
    return counts


def test_sigkill_between_the_last_partial_and_the_release(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = harness.create(rounds=2, round_timeout=300, model_length=5_000)
    with monkeypatch.context() as env:  # only the first server process gets the fault point
        env.setenv(FAULT_ENV, FaultPoint.KILL_AFTER_LAST_PARTIAL.value)
        first = dep.serve()
    for i in (1, 2, 3):
        dep.keyholder(i)
    dep.wait_collecting(1, timeout=90)
    assert ARMED in first.output()
    for name, (seed, weight) in CLIENTS.items():
        dep.client(name, seed=seed, weight=weight)

    # --- the server dies by its own SIGKILL once round 1's last partial is committed
    wait_until(lambda: not first.alive(), timeout=120, what="the fault point's SIGKILL",
               diagnostics=dep.log_tail)  # fmt: skip
    assert dep.stop("server") == -signal.SIGKILL
    types = _audit_types(dep)
    assert types[-2:] == ["partial", "partial"], types  # the window: committed, not released
    assert "release" not in types

    # --- restarted (same command, no fault point): before it serves, recovery combines
    # round 1's stored partials and proposes the model; the key holders endorse it
    second = dep.serve()
    info = dep.round_info()
    assert info is not None, info
    assert info.round >= 2 or "endorsements" in info.status, info
    rel1 = dep.wait_release(1, timeout=60, alive=("server", "kh1", "kh2", "kh3"))
    err = dep.fedavg_error(rel1, CLIENTS, 1)
    assert err < 1e-6, f"round 1's model differs from the FedAvg of its 4 uploads by {err}"
    assert ARMED not in second.output()
    assert "has all its partials but was not finished" in second.output()

    # --- the deployment runs on: round 2 with the same processes, then FINISHED
    rel2 = dep.wait_release(2, timeout=120, alive=("server", "kh1", "kh2", "kh3"))
    assert dep.fedavg_error(rel2, CLIENTS, 2) < 1e-6
    final = dep.wait_round(lambda i: i.state == pb.FINISHED, timeout=30, what="FINISHED")
    assert final.round == 3
    for name in CLIENTS:
        assert dep.wait_exit(name, timeout=60) == 0, dep.log_tail()
    rows = dep.db_rows("SELECT round, global_model_hash, release IS NOT NULL FROM rounds")
    assert [(int(r), bool(has)) for r, _, has in rows] == [(1, True), (2, True), (3, False)]
    assert bytes(rows[1][1]) == rel1.model_hash and bytes(rows[2][1]) == rel2.model_hash
    assert dep.get_release(1) == rel1  # released once: the same release before and after
    assert _releases_per_round(dep) == {1: 1, 2: 1}
    verified = cli("audit", "verify", dep.directory, timeout=60)
    assert verified.returncode == 0, f"{verified.stdout}\n{verified.stderr}"
