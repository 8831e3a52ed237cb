"""Tests of ``secagg bench --scale``: options, RSS arithmetic, log parsing, the recomputed
model, process reaping; one slow end-to-end run with real processes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clients.trainer import SyntheticTrainer
from secagg import bench
from secagg.bench import scale
from secagg.bench.scale_model import fedavg_slices, max_error_from_fedavg, synthetic_update
from secagg.bench.scale_processes import Party, Processes, ScaleRunFailed, spawn
from secagg.bench.scale_report import (
    FOLD_LINE,
    MIB,
    accepted_uploads,
    fold_throughput,
    format_scale_report,
    memory_row,
    parse_log,
    phases,
    quorum_not_met,
)
from secagg.params import Parameters

SERVER_LOG = """\
2026-12-04 18:23:30,453 server INFO listening on 127.0.0.1:43173 (mTLS required)
2026-12-04 18:23:33,774 server INFO round 1: open, global model 5da974efd656c0cc
2026-12-04 18:23:35,066 server INFO round 1: accepted upload from c1 (weight 10)
2026-12-04 18:23:35,097 server INFO round 1: accepted upload from c2 (weight 20)
2026-12-04 18:23:35,129 server INFO round 1: closed with 2 uploads, aggregate f92ed79b5812077b
2026-12-04 18:23:35,351 server INFO round 1: key holder 1 locked (1 of 3)
2026-12-04 18:23:35,456 server INFO round 1: key holder 2 locked (2 of 3)
2026-12-04 18:23:35,718 server INFO round 1: decrypting done; 0 of 2 endorsements
2026-12-04 18:23:35,849 server INFO round 1: released model 2ed442bc941ebdc2 after 3 quorums
Traceback (most recent call last):
secagg.errors.PolicyViolation: QuorumNotMet: not enough key holders reachable
"""
CLIENT_LOG = "2026-12-04 18:23:35,067 c1 INFO c1: round 1 uploaded (1106018 bytes), 1 accepted\n"


def _stamp(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


# ------------------------------------------------------------------ options
def test_scale_options_and_their_defaults() -> None:
    args = _args("--scale")
    assert args.scale and args.scale_sizes == [1_000_000, 10_000_000]
    assert not (args.large or args.stagger or args.keep) and args.workdir is None
    cfg = scale.config_from(args)
    assert (cfg.clients, cfg.keyholders, cfg.threshold, cfg.stagger) == (4, 3, 2, False)
    assert scale.sizes_from(args) == [1_000_000, 10_000_000]
    # the in-process benchmark keeps its own defaults
    assert (args.clients, args.keyholders, args.threshold) == (10, 5, 3)


def test_explicit_counts_win_even_when_equal_to_the_bench_defaults() -> None:
    args = _args("--scale", "--clients", "10", "--keyholders", "5", "--threshold", "3")
    cfg = scale.config_from(args)
    assert (cfg.clients, cfg.keyholders, cfg.threshold) == (10, 5, 3)
    names = [name for name, _, _ in cfg.client_plan()]
    assert names == [f"c{i}" for i in range(1, 11)]
    assert len({seed for _, seed, _ in cfg.client_plan()}) == 10
    assert [weight for _, _, weight in cfg.client_plan()][:4] == [10, 20, 30, 40]
    many = scale.config_from(_args("--scale", "--clients", "1000"))
    cap = Parameters.default().max_total_weight // 1000  # secagg init's default largest weight
    assert max(weight for _, _, weight in many.client_plan()) == cap


def test_large_adds_100m_and_sizes_are_sorted_and_unique() -> None:
    args = _args("--scale", "--scale-sizes", "5000", "200", "5000", "--large", "--stagger")
    assert scale.sizes_from(args) == [200, 5000, 100_000_000]
    assert scale.config_from(args).stagger


def test_invalid_scale_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--scale", "--keyholders", "3", "--threshold", "4"]) == 2
    assert "threshold" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--scale", "--scale-sizes", "0"])


# ------------------------------------------------------------------ RSS arithmetic
@pytest.mark.parametrize(
    ("role", "base_mib", "per_param"),
    [("server", 512, 40), ("keyholder", 512, 40), ("client", 768, 24)],
)
def test_memory_verdict_at_the_allowance_boundary(role: str, base_mib: int, per_param: int) -> None:
    n = 1 << 20  # the allowance is a whole number of KiB
    at_limit_kib = (base_mib * MIB + per_param * n) // 1024
    row = memory_row("p", role, at_limit_kib, n)
    assert row["pass"] and row["bytes_per_param_over_base"] == pytest.approx(per_param)
    assert row["peak_rss_mib"] == pytest.approx(base_mib + per_param * n / MIB)
    over = memory_row("p", role, at_limit_kib + 1, n)
    assert not over["pass"]
    assert over["bytes_per_param_over_base"] == pytest.approx(per_param + 1024 / n)


def test_memory_below_the_base_passes_and_fork_floor_flags_inexact_readings() -> None:
    row = memory_row("c1", "client", 100 * 1024, 10, fork_floor_kib=100 * 1024)
    assert row["pass"] and row["bytes_per_param_over_base"] < 0
    assert not row["exact"]
    assert memory_row("c1", "client", 100 * 1024 + 1, 10, fork_floor_kib=100 * 1024)["exact"]


# ------------------------------------------------------------------ log parsing
def test_log_parser_reads_the_phases() -> None:
    server = parse_log("server", SERVER_LOG)
    accepted = accepted_uploads(server)
    assert set(accepted) == {"c1", "c2"}
    start = _stamp("2026-12-04 18:23:34")
    timings, missing = phases(server, {"c1": start, "c2": start}, accepted)
    assert timings["ceremony (server listening -> round open)"] == pytest.approx(3.321, abs=1e-6)
    assert timings["c1: process start -> upload accepted"] == pytest.approx(1.066, abs=1e-6)
    assert timings["first -> last upload accepted"] == pytest.approx(0.031, abs=1e-6)
    assert timings["last upload accepted -> round closed"] == pytest.approx(0.032, abs=1e-6)
    assert timings["round closed -> every key holder locked"] == pytest.approx(0.327, abs=1e-6)
    assert timings["decrypted -> released"] == pytest.approx(0.131, abs=1e-6)
    assert timings["first upload accepted -> release"] == pytest.approx(0.783, abs=1e-6)
    assert timings["round open -> release"] == pytest.approx(2.075, abs=1e-6)
    assert missing == []
    assert fold_throughput(server, 1000) is None  # today's server does not log it


def test_missing_lines_are_reported_not_invented() -> None:
    server = parse_log("server", SERVER_LOG.replace("released model", "something else"))
    timings, missing = phases(server, {}, accepted_uploads(server))
    assert timings["first upload accepted -> release"] is None
    assert "first upload accepted -> release" in missing
    assert "decrypted -> released" in missing


def test_fold_lines_give_the_in_service_throughput() -> None:
    line = "2026-12-04 18:23:35,066 server INFO " + FOLD_LINE
    text = line % (1, "c1", 0.5, 2.0, 3.0) + "\n" + line % (1, "c2", 0.25, 4.0, 5.0) + "\n"
    fold = fold_throughput(parse_log("server", text), 1_000_000)
    assert fold is not None
    assert fold["uploads"] == 2
    assert fold["parameters_per_second_min"] == pytest.approx(2e6)
    assert fold["parameters_per_second_median"] == pytest.approx(3e6)


def test_quorum_not_met_and_upload_sizes() -> None:
    assert quorum_not_met(SERVER_LOG) == [
        "secagg.errors.PolicyViolation: QuorumNotMet: not enough key holders reachable"
    ]
    (event,) = parse_log("c1", CLIENT_LOG)
    assert (event.kind, event.value) == ("uploaded", 1106018.0)


# ------------------------------------------------------------------ the expected model
def test_recomputation_equals_the_synthetic_trainer() -> None:
    global_model = np.random.default_rng(7).uniform(-3, 3, 1000)
    clients = [(11, 3), (12, 5), (13, 9)]
    updates = []
    for seed, weight in clients:
        vector, w = SyntheticTrainer(seed=seed, weight=weight).train(global_model, 2)
        assert w == weight
        np.testing.assert_array_equal(
            synthetic_update(global_model, seed=seed, round_number=2), vector
        )
        updates.append(vector)
    expected = np.average(np.stack(updates), axis=0, weights=[w for _, w in clients])
    sliced = np.concatenate(
        [part for _, part in fedavg_slices(global_model, clients, 2, slice_size=7)]
    )
    np.testing.assert_allclose(sliced, expected, rtol=0, atol=1e-12)
    assert max_error_from_fedavg(expected, global_model, clients, 2) < 1e-12
    assert max_error_from_fedavg(expected + 1e-3, global_model, clients, 2) == pytest.approx(1e-3)


# ------------------------------------------------------------------ processes
def _python(tmp_path: Path, name: str, code: str) -> Party:
    return spawn(name, "client", [sys.executable, "-c", code], tmp_path / f"{name}.log", {})


def test_peak_rss_comes_from_wait4(tmp_path: Path) -> None:
    party = _python(
        tmp_path, "alloc", "b = bytearray(300 << 20)\nb[::4096] = b'x' * len(b[::4096])"
    )
    assert party.wait_exit(60)
    assert party.exit_code == 0 and party.popen.returncode == 0
    assert party.maxrss_kib is not None and party.maxrss_kib * 1024 >= 300 * MIB
    assert party.fork_floor_kib < 64 * 1024 < party.maxrss_kib


def test_the_benchmarks_own_peak_is_not_charged_to_a_party(tmp_path: Path) -> None:
    # Linux charges a forked child its parent's high-water RSS, freed memory included:
    # without the reaper in between, this party would report at least 256 MiB.
    ballast = bytearray(256 << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    del ballast
    party = _python(tmp_path, "small", "pass")
    assert party.wait_exit(60) and party.exit_code == 0
    assert party.maxrss_kib is not None and party.maxrss_kib < 128 * 1024


def test_stop_terminates_then_kills(tmp_path: Path) -> None:
    sleeper = _python(tmp_path, "sleeper", "import time; time.sleep(60)")
    stubborn = _python(
        tmp_path,
        "stubborn",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)",
    )
    deadline = time.monotonic() + 30
    while "ready" not in stubborn.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    sleeper.stop(grace=10)
    assert (sleeper.exit_code, sleeper.killed) == (-15, False)
    stubborn.stop(grace=0.5)
    assert (stubborn.exit_code, stubborn.killed) == (-9, True)
    assert stubborn.maxrss_kib is not None


def test_check_tells_exits_apart(tmp_path: Path) -> None:
    procs = Processes(tmp_path / "logs", "unused")
    procs.parties["ok"] = _python(tmp_path, "ok", "pass")
    procs.parties["bad"] = _python(tmp_path, "bad", "raise SystemExit(3)")
    assert procs.parties["ok"].wait_exit(30)
    procs.check([], may_exit=["ok", "not-started"])
    with pytest.raises(ScaleRunFailed, match="ok exited with 0"):
        procs.check(["ok"])
    deadline = time.monotonic() + 30
    while procs.parties["bad"].running() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ScaleRunFailed, match="bad exited with 3"):
        procs.check([], may_exit=["bad"])


# ------------------------------------------------------------------ the printed report
def _result(**overrides: Any) -> dict[str, Any]:
    result = {
        "parameters": 1000,
        "deployment": {"clients": 1, "keyholders": 1, "threshold": 1, "stagger": True},
        "memory": [{**memory_row("server", "server", 600 * 1024, 1000), "exit_code": 0}],
        "phases": {"first upload accepted -> release": 1.5, "round open -> release": None},
        "missing_log_lines": ["round open -> release"],
        "fold_throughput": None,
        "upload_bytes": {"c1": 46_000},
        "max_abs_error": 1e-9,
        "correct": True,
        "quorum_not_met": [],
        "wall_seconds": 9.0,
        "error": None,
    }
    return {**result, **overrides}


def test_report_prints_verdicts_and_failures() -> None:
    report = {
        "machine": {"cpu_model": "cpu", "logical_cores": 2},
        "command": "secagg bench --scale",
        "results": [
            _result(),
            _result(parameters=2000, error="ScaleRunFailed: c1 exited\nlog", max_abs_error=None),
        ],
    }
    text = format_scale_report(report)
    assert "1,000 parameters: 1 clients (one after another)" in text
    assert "FAIL" in text.splitlines()[5]  # 600 MiB at 1000 parameters is over 512 MiB + 40 B/p
    assert "max abs error 1e-09" in text and "QuorumNotMet in the server log: 0: PASS" in text
    assert "not in the server log" in text and "round open -> release" in text
    assert "FAILED: ScaleRunFailed: c1 exited\n" in text and "\nlog" not in text
    assert "released model: not checked (no release)" in text
    assert text.count("600.0 MiB") == 2  # a failed run still shows its processes' peaks


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_scale_bench_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    argv = ["--scale", "--scale-sizes", "200000", "--json", str(out), "--workdir", str(tmp_path)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    for key in ("benchmark", "command", "config", "machine", "results"):
        assert key in report
    (result,) = report["results"]
    assert result["error"] is None and result["parameters"] == 200_000
    assert [row["party"] for row in result["memory"]] == [
        "server", "kh1", "kh2", "kh3", "c1", "c2", "c3", "c4"
    ]  # fmt: skip
    assert all(row["exit_code"] == 0 and not row["killed"] for row in result["memory"])
    assert result["correct"] and result["max_abs_error"] <= 1e-6
    assert result["quorum_not_met"] == []
    assert result["phases"]["first upload accepted -> release"] > 0
    assert set(result["upload_bytes"]) == {"c1", "c2", "c3", "c4"}
    assert not list(tmp_path.glob("secagg-scale-*")), "the work directory was not deleted"
