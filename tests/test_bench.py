"""Tests of ``secagg bench`` at tiny sizes: structure and sanity of the report."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from secagg import bench

# Multiples of N = 8192 (and of CKKS's 4096 slots): no padding distorts bytes/param.
SIZES = (8192, 16384)
CLIENTS = 3


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "nested" / "dir" / "bench.json"
    argv = [
        "--sizes",
        *map(str, SIZES),
        "--clients",
        str(CLIENTS),
        "--repeats",
        "1",
        "--json",
        str(out),
    ]
    assert bench.main(argv) == 0
    loaded: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return loaded


def test_report_structure(report: dict[str, Any]) -> None:
    for key in ("command", "config", "machine", "threading", "keygen", "results", "verdicts"):
        assert key in report
    assert report["config"]["sizes"] == list(SIZES)
    assert report["config"]["clients"] == CLIENTS
    assert report["config"]["statistic"] == "median"
    for key in ("platform", "cpu_model", "logical_cores", "python", "tenseal", "numpy"):
        assert report["machine"][key]
    assert report["threading"]["tenseal_n_threads"] == 1
    assert [r["parameters"] for r in report["results"]] == list(SIZES)


def test_values_are_sane(report: dict[str, Any]) -> None:
    for result in report["results"]:
        assert len(result["weights"]) == CLIENTS
        assert all(1 <= w <= 1000 for w in result["weights"])
        for system in ("secagg", "ckks", "plaintext"):
            for name, phase in result[system]["phases"].items():
                assert phase["parameters_per_second"] > 0, (system, name)
                assert phase["seconds_median"] > 0, (system, name)
                assert len(phase["samples_seconds"]) >= 1
        secagg, ckks = result["secagg"], result["ckks"]
        assert 44 < secagg["bytes_per_parameter"] < 50
        assert ckks["bytes_per_parameter"] > secagg["bytes_per_parameter"]
        assert secagg["max_abs_error"]["weighted_mean"] < 1e-6
        assert ckks["max_abs_error"]["server_weighted"] < 1e-3
        assert ckks["max_abs_error"]["flare_default"] < 1e-3
        for phase in ("encrypt", "serialize", "parse", "aggregate", "combine"):
            assert phase in secagg["phases"]
        assert "partial_decrypt_per_keyholder" in secagg["phases"]
        for phase in ("encrypt", "aggregate_server_weighted", "aggregate_flare_default"):
            assert phase in ckks["phases"]
        ratios = result["ratios_secagg_over_ckks"]
        assert ratios["bytes_per_parameter"] == pytest.approx(
            secagg["bytes_per_parameter"] / ckks["bytes_per_parameter"]
        )
        assert all(v > 0 for v in ratios.values())


def test_partial_decryption_timed_per_keyholder(report: dict[str, Any]) -> None:
    threshold, repeats = report["config"]["threshold"], report["config"]["repeats"]
    for result in report["results"]:
        phase = result["secagg"]["phases"]["partial_decrypt_per_keyholder"]
        assert len(phase["samples_seconds"]) == threshold * repeats
        assert phase["parameters_per_run"] == result["parameters"]


def test_verdicts_at_largest_size(report: dict[str, Any]) -> None:
    verdicts = report["verdicts"]
    assert len(verdicts) == 5
    for verdict in verdicts:
        assert verdict["parameters"] == max(SIZES)
        assert isinstance(verdict["pass"], bool)
        assert verdict["value"] > 0


def test_table_printed(report: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    # The module fixture already ran; run a minimal bench again to capture its stdout.
    assert bench.main(["--sizes", "4096", "--clients", "2", "--repeats", "1", "--no-pin"]) == 0
    out = capsys.readouterr().out
    assert "WARNING" not in out  # TenSEAL's native warning is silenced
    assert "4,096 parameters x 2 clients" in out
    assert out.count("PASS") + out.count("FAIL") == 5


def test_cli_hooks_compose_with_a_subcommand_parser() -> None:
    parser = argparse.ArgumentParser(prog="secagg")
    sub = parser.add_subparsers(dest="command", required=True)
    bench.add_arguments(sub.add_parser("bench"))
    args = parser.parse_args(["bench", "--sizes", "10", "20", "--threshold", "2"])
    assert args.sizes == [10, 20]
    assert (args.clients, args.keyholders, args.threshold, args.repeats) == (10, 5, 2, 3)
    assert args.json is None and args.pin is True


def test_invalid_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--keyholders", "3", "--threshold", "4"]) == 2
    assert "threshold" in capsys.readouterr().err
    with pytest.raises(SystemExit) as excinfo:
        bench.main(["--sizes", "0"])
    assert excinfo.value.code == 2


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity API")
def test_affinity_is_restored() -> None:
    before = os.sched_getaffinity(0)
    assert bench.main(["--sizes", "64", "--clients", "1", "--repeats", "1"]) == 0
    assert os.sched_getaffinity(0) == before


def test_module_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    argv = ["--sizes", "64", "--clients", "2", "--repeats", "1", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "secagg.bench", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verdicts at 64 parameters" in proc.stdout
    assert "secagg.bench" in json.loads(out.read_text(encoding="utf-8"))["command"]
