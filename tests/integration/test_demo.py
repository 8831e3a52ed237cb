"""``secagg demo`` end to end: real server, key-holder and DP client processes over mTLS.

One module-scoped run (``demo``) is shared by the tests: 3 clients, 4 rounds, epsilon 3,
and c3's budget planned for only 2 rounds, so c3 withdraws at round 3 and the last two
rounds aggregate two clients. The tests check the demo's claims against the evidence it
leaves behind (the server's database and blobs, the clients' privacy state and logs)
rather than against the demo's own bookkeeping alone. The run takes about 45 seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _dp_reference import assert_ledger_matches

from clients.data import load_federation
from clients.demo import baselines
from clients.demo.report import validate_summary
from clients.dp_model import model_length
from secagg.chunk_file import ChunkFile
from secagg.chunked import VectorHead
from secagg.params import Parameters
from secagg.proto import service_pb2 as pb
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import decode_model

from ._harness import REPO, _env

CLIENTS = ("c1", "c2", "c3")
ROUNDS = 4
EPSILON = 3.0
TIMEOUT = 300.0


@dataclass
class DemoRun:
    out: Path
    returncode: int
    output: str
    summary: dict[str, Any]

    @property
    def layout(self) -> DeploymentLayout:
        return DeploymentLayout.find(self.out)

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with contextlib.closing(sqlite3.connect(self.layout.database)) as db:
            return db.execute(sql, args).fetchall()

    def privacy(self, client: str) -> dict[str, Any]:
        path = self.layout.state_dir(client, "client") / "privacy.json"
        state: dict[str, Any] = json.loads(path.read_text())
        return state

    def diagnostics(self) -> str:
        logs = sorted((self.out / "logs").glob("*.log"))
        return self.output + "".join(
            f"\n--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}" for p in logs
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    out = tmp_path_factory.mktemp("demo") / "out"
    args = ["--clients", "3", "--rounds", str(ROUNDS), "--budget-rounds", "c3=2", "--seed", "0"]
    # Own session: on a timeout the demo and every process it started are killed together.
    proc = subprocess.Popen(
        [sys.executable, "-m", "secagg.cli", "demo", "--out", str(out), *args],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"secagg demo did not finish within {TIMEOUT:.0f}s:\n{output}")
    finally:
        # Whatever the demo left running in its session (normally nothing) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    path = out / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    return DemoRun(out, proc.returncode, output, summary)


@pytest.fixture(scope="module")
def run(demo: DemoRun) -> DemoRun:
    """The demo run, after checking that it succeeded at all."""
    assert demo.returncode == 0, demo.diagnostics()
    assert demo.summary, demo.diagnostics()
    return demo


def test_demo_succeeds_and_writes_a_valid_summary(demo: DemoRun) -> None:
    assert demo.returncode == 0, demo.diagnostics()
    validate_summary(demo.summary)
    assert [r["round"] for r in demo.summary["rounds"]] == [1, 2, 3, 4]
    p = demo.summary["parameters"]
    assert (p["clients"], p["rounds"], p["epsilon_target"]) == (3, ROUNDS, EPSILON)
    for name in ("summary.json", "report.html", "accuracy.png", "epsilon.png", "cost.png"):
        assert (demo.out / name).stat().st_size > 0, name
    for name in ("server", "kh1", "kh2", "kh3", *CLIENTS):
        assert (demo.out / "logs" / f"{name}.log").exists(), name


def test_encryption_costs_no_accuracy(run: DemoRun) -> None:
    s = run.summary
    plain = s["baselines"]["plaintext_aggregation_dp"]
    assert 0 <= plain["max_abs_diff_vs_encrypted"] <= 1e-6
    assert plain["final_accuracy"] == s["final_accuracy"]
    assert plain["accuracy"] == [r["accuracy"] for r in s["rounds"]]
    # The model learned something: far above chance (0.1) on ten digits.
    assert s["final_accuracy"] > 0.5


def test_privacy_budget_is_kept_by_every_client(run: DemoRun) -> None:
    s = run.summary
    target = s["parameters"]["epsilon_target"]
    assert target == EPSILON
    for r in s["rounds"]:
        assert r["epsilon"], r
        for client, eps in r["epsilon"].items():
            assert 0 < eps <= target, (r["round"], client, eps)
    assert s["max_epsilon"] == max(e for r in s["rounds"] for e in r["epsilon"].values())
    # The summary reports what the clients' own accountants recorded.
    for client in CLIENTS:
        recorded = run.privacy(client)["epsilon"]
        reported = {
            str(r["round"]): r["epsilon"][client] for r in s["rounds"] if client in r["epsilon"]
        }
        assert reported == recorded, client
    assert set(run.privacy("c1")["epsilon"]) == {"1", "2", "3", "4"}


def test_c3_withdraws_when_its_budget_is_spent(run: DemoRun) -> None:
    s = run.summary
    assert set(s["withdrawn"]) == {"c3"}
    assert "privacy budget" in s["withdrawn"]["c3"]
    assert [r["clients_aggregated"] for r in s["rounds"]] == [3, 3, 2, 2]
    assert set(s["rounds"][2]["epsilon"]) == {"c1", "c2"}

    rows = run.query("SELECT client_id, round, reason FROM withdrawals")
    assert [(c, r) for c, r, _ in rows] == [("c3", 3)]
    assert rows[0][2] == s["withdrawn"]["c3"]
    assert "privacy budget exhausted" in rows[0][2]
    uploads = run.query("SELECT round, client_id FROM uploads ORDER BY round, client_id")
    assert uploads == [
        (1, "c1"),
        (1, "c2"),
        (1, "c3"),
        (2, "c1"),
        (2, "c2"),
        (2, "c3"),
        (3, "c1"),
        (3, "c2"),
        (4, "c1"),
        (4, "c2"),
    ]

    c3 = run.privacy("c3")
    assert c3["config"]["rounds"] == 2
    assert len(c3["history"]) == 3  # the noisy count, two rounds; the refused third spent nothing
    assert set(c3["epsilon"]) == {"1", "2"}
    assert all(0 < e <= EPSILON for e in c3["epsilon"].values())
    log = (run.out / "logs" / "c3.log").read_text(errors="replace")
    assert "withdrew from round 3" in log


def test_final_accuracy_is_that_of_the_released_model(run: DemoRun) -> None:
    (blob,) = run.query("SELECT release FROM rounds WHERE round=?", (ROUNDS,))[0]
    release = pb.Release.FromString(blob)
    assert release.round == ROUNDS
    data = (run.layout.blobs / release.model_hash.hex()).read_bytes()
    assert hashlib.sha256(data).digest() == release.model_hash
    length = model_length(128)
    _, vector = decode_model(data, length=length)
    federation = load_federation(clients=3, alpha=0.5, seed=0)
    accuracy, loss = baselines.test_metrics(federation, vector, 128)
    last = run.summary["rounds"][-1]
    assert run.summary["final_accuracy"] == last["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert last["loss"] == pytest.approx(loss, rel=1e-9)
    # The released model is not the initial one: training moved it.
    _, initial = decode_model((run.out / "initial_model.bin").read_bytes(), length=length)
    assert np.abs(vector - initial).max() > 1e-3

    page = (run.out / "report.html").read_text()
    assert f"<b>{run.summary['final_accuracy']:.3f}</b>" in page
    for name in ("accuracy.png", "epsilon.png", "cost.png"):
        assert f'src="{name}"' in page


def test_upload_bytes_are_the_rounds_ciphertext_sizes(run: DemoRun) -> None:
    """Per round: the summary's upload_bytes = the sizes of the ciphertexts the server holds
    for that round = the sizes the clients logged when they uploaded them."""
    logged: dict[int, int] = {}
    for client in CLIENTS:
        log = (run.out / "logs" / f"{client}.log").read_text(errors="replace")
        for rnd, size in re.findall(r": round (\d+) uploaded \((\d+) bytes\)", log):
            logged[int(rnd)] = logged.get(int(rnd), 0) + int(size)
    for r in run.summary["rounds"]:
        hashes = [
            h
            for (h,) in run.query(
                "SELECT ciphertext_hash FROM uploads WHERE round=?", (r["round"],)
            )
        ]
        assert len(hashes) == r["clients_aggregated"]
        stored = 0
        for h in hashes:
            with ChunkFile(run.layout.blobs / h.hex()) as f:  # the head names every chunk
                assert VectorHead.from_bytes(f.head_bytes, Parameters.default()).digest == h
            stored += (run.layout.blobs / h.hex()).stat().st_size
        assert r["upload_bytes"] == stored == logged[r["round"]], r["round"]
        assert r["upload_bytes"] > 100_000 * r["clients_aggregated"]  # ciphertexts, not models


def test_every_clients_epsilon_matches_an_independent_pld_accountant(run: DemoRun) -> None:
    """Acceptance 1 (issue 12): each client's epsilon after every round, recomputed by
    Google's dp-accounting PLD from the ledger in its privacy.json (the noisy count and
    each round's DP-SGD mechanism), matches what it reported within 2%; and what it
    reported is what the server logged from its signed upload."""
    for client in CLIENTS:
        state = run.privacy(client)
        assert state["unit"] == "add/remove one record of the client's local dataset"
        rows = assert_ledger_matches(state)
        logged = dict(run.query("SELECT round, epsilon FROM uploads WHERE client_id=?", (client,)))
        assert {rnd: reported for rnd, reported, _ in rows} == logged, client


def test_upload_weights_are_the_clients_noisy_counts(run: DemoRun) -> None:
    """Issue 12: the signed weight was the exact training-set size N, public and logged.
    Now every upload's weight is the client's noisy count, the same in every round."""
    federation = load_federation(clients=3, alpha=0.5, seed=0)
    for i, client in enumerate(CLIENTS):
        count = run.privacy(client)["noisy_count"]
        weights = {
            w for (w,) in run.query("SELECT weight FROM uploads WHERE client_id=?", (client,))
        }
        assert weights == {count}, client
        assert count != len(federation.clients[i].y_train), client  # seed 0's draws
