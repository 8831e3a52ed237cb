"""The ``secagg`` command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys


def _secagg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secagg.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_params_prints_a_validated_set() -> None:
    out = _secagg("params", "--max-total-weight", "1024")
    assert out.returncode == 0, out.stderr
    described = json.loads(out.stdout)
    assert described["max_total_weight"] == 1024
    assert described["statistical_security_bits"] >= 40
    assert described["security_level_bits"] == 128


def test_params_that_cannot_be_met_fail_with_a_clear_error() -> None:
    out = _secagg("params", "--precision", "1e-30")
    assert out.returncode == 2
    assert "cannot reach precision" in out.stderr
    assert "Traceback" not in out.stderr


def test_in_process_demo_runs_encrypted_rounds_and_matches_plaintext() -> None:
    out = _secagg("demo", "--in-process", "--rounds", "2", "--clients", "3")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2"]
    for row in rows:
        assert 0.0 <= float(row[1]) <= 1.0
        assert float(row[2]) < 1e-7  # encrypted FedAvg equals plaintext FedAvg
