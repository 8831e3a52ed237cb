"""Crashes: key holders killed (SIGKILL) mid-run, the server killed and restarted.

The rounds here are gated by the test: the round timeout is long, three clients are real
``secagg client`` processes, and the fourth contribution (c4) is uploaded by the test
itself (built like ``clients/client.py`` does) once the three others are in. So a round
closes exactly when the test decides, and the test knows every plaintext it must find in
the released model.
"""

from __future__ import annotations

import signal
import time

import numpy as np

from secagg.proto import service_pb2 as pb

from ._harness import Deployment, Harness, max_error, wait_until, weighted_mean

REAL = {"c1": (1, 12), "c2": (2, 30), "c3": (3, 5)}  # name: (seed, weight)
C4_WEIGHT = 21


class Gate:
    """The test's own client c4: it closes a round by sending the last upload."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.key = dep.public_key()
        self.rng = np.random.default_rng(404)
        self.vectors: dict[int, np.ndarray] = {}

    def close_round(self, info: pb.RoundInfo) -> None:
        vector = self.rng.uniform(-1.0, 1.0, self.dep.roster.policy.model_length)
        header, blob = self.dep.build_upload("c4", info, vector, weight=C4_WEIGHT, key=self.key)
        receipt = self.dep.upload("c4", header, blob)
        assert receipt.round == info.round and receipt.accepted_uploads == 4
        self.vectors[info.round] = vector

    def expected(self, rnd: int) -> np.ndarray:
        updates = [self.dep.recorded_update(name, rnd) for name in REAL]
        weights = [w for _, w in REAL.values()]
        return weighted_mean([*updates, self.vectors[rnd]], [*weights, C4_WEIGHT])


def _check_release(dep: Deployment, rel: pb.Release, expected: np.ndarray) -> None:
    dep.verify_release(rel)
    err = max_error(dep.model_of(rel), expected)
    assert err < 1e-6, f"round {rel.round}: released model differs from FedAvg by {err}"


def test_keyholder_failures(harness: Harness) -> None:
    # n = 4, t = 2: a round needs ceil((4 + 2) / 2) = 3 key holders to lock it, then 2
    # to decrypt; so one key holder may be down, two may not (a 3-of-2 deployment needs
    # all three at lock time: the liveness cost of not trusting the server).
    dep = harness.create(rounds=3, round_timeout=300, keyholders=4)
    harness.start_deployment(dep)
    gate = Gate(dep)
    for name, (seed, weight) in REAL.items():
        dep.client(name, seed=seed, weight=weight)
    everyone = ("server", "c1", "c2", "c3")

    # --- one key holder dies mid-run; it is in the quorum the server would pick first
    info = dep.wait_collecting(1, uploads=3, timeout=60)
    dep.kill("kh1")
    gate.close_round(info)
    rel1 = dep.wait_release(1, timeout=60, alive=(*everyone, "kh2", "kh3", "kh4"))
    assert list(rel1.quorum) == [2, 3]
    _check_release(dep, rel1, gate.expected(1))
    info = dep.wait_collecting(2, uploads=3, timeout=60)
    gate.close_round(info)
    rel2 = dep.wait_release(2, timeout=60, alive=(*everyone, "kh2", "kh3", "kh4"))
    assert list(rel2.quorum) == [2, 3]
    _check_release(dep, rel2, gate.expected(2))

    # --- a second one dies: 2 of 4 left, fewer than the 3 a lock needs
    info = dep.wait_collecting(3, uploads=3, timeout=60)
    dep.kill("kh2")
    gate.close_round(info)
    share_file = dep.directory / "keyholders" / "kh2" / "state" / "share.enc"
    share_before = share_file.read_bytes()

    def quorum_not_met() -> dict[str, object] | None:
        dep.assert_running(*everyone, "kh3", "kh4")
        status = dep.admin_status()  # the operator CLI
        return status if str(status["status"]).startswith("QuorumNotMet") else None

    status = wait_until(
        quorum_not_met, timeout=30, what="status QuorumNotMet", diagnostics=dep.log_tail
    )
    assert status["round"] == 3 and status["state"] == "DECRYPTING", status
    assert status["accepted_uploads"] == 4, status
    assert "3 must lock the round, threshold 2" in str(status["status"]), status
    # nothing is released while the quorum is missing, however long we wait
    for _ in range(10):
        assert dep.get_release(3) is None
        assert dep.db_release(3) is None
        info = dep.round_info()
        assert info is not None and info.state == pb.DECRYPTING and info.round == 3
        dep.assert_running(*everyone, "kh3", "kh4")
        time.sleep(0.3)
    assert dep.admin_status()["status"].startswith("QuorumNotMet")

    # --- the key holder comes back (same command): it reloads its share, no new ceremony
    ceremony_rows = dep.db_rows("SELECT COUNT(*) FROM ceremony")[0][0]
    restarted = dep.keyholder(2)
    rel3 = dep.wait_release(3, timeout=60, alive=("server", "kh2", "kh3", "kh4"))
    assert list(rel3.quorum) == [2, 3]
    _check_release(dep, rel3, gate.expected(3))
    assert share_file.read_bytes() == share_before
    assert dep.db_rows("SELECT COUNT(*) FROM ceremony")[0][0] == ceremony_rows
    assert "ceremony done" not in restarted.output()
    assert "partial decryption for round 3 sent" in restarted.output()
    final = dep.wait_round(lambda i: i.state == pb.FINISHED, timeout=30, what="FINISHED")
    assert final.round == 4
    for name in REAL:
        assert dep.wait_exit(name, timeout=60) == 0
    # every round was released exactly once, with the model the next round trained from
    rows = dep.db_rows("SELECT round, global_model_hash, release IS NOT NULL FROM rounds")
    released = [(int(r), bool(has)) for r, _, has in rows]
    assert released == [(1, True), (2, True), (3, True), (4, False)]
    assert bytes(rows[1][1]) == rel1.model_hash and bytes(rows[2][1]) == rel2.model_hash
    assert bytes(rows[3][1]) == rel3.model_hash


def test_server_sigkill_recovery(harness: Harness) -> None:
    """Uploads accepted before a SIGKILL are all counted after the restart, once each."""
    dep = harness.create(rounds=1, round_timeout=300)
    harness.start_deployment(dep)
    for i in (1, 2, 3):  # nothing can be decrypted from now on
        assert dep.stop(f"kh{i}") == 0
    clients = {"c1": (1, 12), "c2": (2, 30), "c3": (3, 5), "c4": (4, 21)}
    for name, (seed, weight) in clients.items():
        dep.client(name, seed=seed, weight=weight)
    dep.wait_round(
        lambda i: i.round == 1 and (i.accepted_uploads == 4 or i.state == pb.DECRYPTING),
        timeout=60,
        what="all 4 uploads of round 1",
        alive=("server", *clients),
    )
    before = sorted(
        (str(c), bytes(h), int(w))
        for c, h, w in dep.db_rows(
            "SELECT client_id, ciphertext_hash, weight FROM uploads WHERE round=1"
        )
    )
    assert [c for c, _, _ in before] == ["c1", "c2", "c3", "c4"]

    dep.kill("server")
    dep.assert_running(*clients)  # the clients wait for the server to come back
    dep.serve()  # same command, same state directory
    info = dep.wait_round(lambda i: i.round == 1, timeout=30, what="round 1 after restart")
    assert info.accepted_uploads == 4 and info.state == pb.DECRYPTING, info
    assert dep.get_release(1) is None
    for i in (1, 2, 3):
        dep.keyholder(i)
    rel = dep.wait_release(1, timeout=60, alive=("server", "kh1", "kh2", "kh3"))
    err = dep.fedavg_error(rel, clients, 1)
    assert err < 1e-6, f"released model differs from the FedAvg of the 4 uploads by {err}"
    after = sorted(
        (str(c), bytes(h), int(w))
        for c, h, w in dep.db_rows(
            "SELECT client_id, ciphertext_hash, weight FROM uploads WHERE round=1"
        )
    )
    assert after == before
    for name in clients:
        assert dep.wait_exit(name, timeout=60) == 0


def test_server_sigkill_while_collecting(harness: Harness) -> None:
    """A SIGKILL between uploads: the running aggregate is rebuilt from the stored uploads."""
    dep = harness.create(rounds=1, round_timeout=300)
    harness.start_deployment(dep)
    clients = {"c1": (1, 12), "c2": (2, 30), "c3": (3, 5), "c4": (4, 21)}
    for name in ("c1", "c2"):
        seed, weight = clients[name]
        dep.client(name, seed=seed, weight=weight)
    dep.wait_collecting(1, uploads=2, timeout=60)
    dep.kill("server")
    dep.serve()
    info = dep.wait_collecting(1, timeout=30)
    assert info.accepted_uploads == 2
    for name in ("c3", "c4"):
        seed, weight = clients[name]
        dep.client(name, seed=seed, weight=weight)
    rel = dep.wait_release(1, timeout=60, alive=("server", "kh1", "kh2", "kh3"))
    err = dep.fedavg_error(rel, clients, 1)
    assert err < 1e-6, f"released model differs from the FedAvg of the 4 uploads by {err}"
    assert dep.db_rows("SELECT COUNT(*) FROM uploads WHERE round=1")[0][0] == 4
    for name in clients:
        assert dep.wait_exit(name, timeout=60) == 0


def test_agents_stop_on_sigterm_while_server_down(harness: Harness) -> None:
    dep = harness.create(rounds=1, round_timeout=300)
    harness.start_deployment(dep)
    dep.client("c1", seed=1, weight=10)
    dep.wait_collecting(1, uploads=1, timeout=60)
    assert dep.stop("server") == 0
    time.sleep(1.0)  # the agents notice: their polls now fail with UNAVAILABLE
    for name in ("kh1", "c1"):
        dep.procs[name].signal(signal.SIGTERM)
    give_up = time.monotonic() + 5.0
    for name in ("kh1", "c1"):
        proc = dep.procs[name]
        while proc.alive() and time.monotonic() < give_up:
            time.sleep(0.1)
        assert not proc.alive(), f"{name} still runs 5 s after SIGTERM"
        assert proc.popen.returncode == 0, proc.output()[-2000:]
