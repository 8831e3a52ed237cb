"""The demo's outputs (``clients/demo/report.py``): the summary schema check and the files."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from clients.demo import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("accuracy.png", "epsilon.png", "cost.png")
ROUND_KEYS = (
    "round",
    "accuracy",
    "loss",
    "epsilon",
    "clients_aggregated",
    "upload_bytes",
    "seconds",
)
TOP_KEYS = ("parameters", "rounds", "final_accuracy", "max_epsilon", "baselines", "elapsed_seconds")
BASELINES = ("plaintext_aggregation_dp", "federated_no_dp", "centralized_no_dp")


def summary() -> dict[str, Any]:
    """A small summary as ``secagg demo`` writes it (2 clients, 2 rounds)."""
    return {
        "schema": "clients.demo.summary/v2",
        "parameters": {
            "clients": 2,
            "keyholders": 3,
            "threshold": 2,
            "rounds": 2,
            "epsilon_target": 3.0,
            "delta": 1e-5,
            "alpha": 0.5,
            "seed": 0,
            "min_contributors": 2,
            "model": "MLP 64-128-10 (9610 parameters)",
            "dp": {"accountant": "prv", "noise_seeded": True},
            "he": {
                "poly_modulus_degree": 8192,
                "fractional_bits": 26,
                "flooding_bits": 68,
                "statistical_security_bits": 40.39,
            },
            "flooding_bits": 68,
            "note": "seeded noise <b>gives no privacy</b>",
        },
        "rounds": [
            {
                "round": 1,
                "accuracy": 0.5,
                "loss": 1.8,
                "epsilon": {"c1": 1.5, "c2": 2.2},
                "clients_aggregated": 2,
                "upload_bytes": 983234,
                "seconds": 12.5,
            },
            {
                "round": 2,
                "accuracy": 0.6789,
                "loss": 1.4,
                "epsilon": {"c1": 2.9},
                "clients_aggregated": 1,
                "upload_bytes": 491617,
                "seconds": 1.5,
            },
        ],
        "final_accuracy": 0.6789,
        "max_epsilon": 2.9,
        "withdrawn": {"c2": "privacy budget exhausted: <script>alert(1)</script>"},
        "baselines": {
            "plaintext_aggregation_dp": {
                "accuracy": [0.5, 0.6789],
                "final_accuracy": 0.6789,
                "max_abs_diff_vs_encrypted": 4.5e-08,
            },
            "federated_no_dp": {"accuracy": [0.8, 0.9], "final_accuracy": 0.9},
            "centralized_no_dp": {"accuracy": [0.7, 0.85], "final_accuracy": 0.85},
        },
        "elapsed_seconds": 30.0,
    }


# --------------------------------------------------------------------- validate_summary


def test_schema_id() -> None:
    """v2: the per-round ``federated_val_accuracy`` of v1 is gone (no metrics released)."""
    assert report.SCHEMA == "clients.demo.summary/v2"
    assert "federated_val_accuracy" not in report.REQUIRED_ROUND_KEYS


def test_accepts_a_correct_summary() -> None:
    report.validate_summary(summary())
    minimal = summary()
    minimal["rounds"] = []  # a run that released nothing is still a valid summary
    del minimal["withdrawn"]
    report.validate_summary(minimal)


@pytest.mark.parametrize("schema", ["clients.demo.summary/v1", "", None])
def test_rejects_a_wrong_schema_id(schema: object) -> None:
    s = summary()
    s["schema"] = schema
    with pytest.raises(ValueError, match="schema"):
        report.validate_summary(s)


def test_rejects_a_missing_schema_id() -> None:
    s = summary()
    del s["schema"]
    with pytest.raises(ValueError, match="schema"):
        report.validate_summary(s)


@pytest.mark.parametrize("key", TOP_KEYS)
def test_rejects_a_missing_top_level_key(key: str) -> None:
    s = summary()
    del s[key]
    with pytest.raises(ValueError, match=key):
        report.validate_summary(s)


@pytest.mark.parametrize("key", ROUND_KEYS)
def test_rejects_a_round_record_missing_a_key(key: str) -> None:
    s = summary()
    del s["rounds"][1][key]
    with pytest.raises(ValueError, match=rf"rounds\[\]\.{key}\b"):
        report.validate_summary(s)


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("damage", ["missing", "no accuracy", "no final_accuracy", "not a dict"])
def test_rejects_a_missing_or_broken_baseline(name: str, damage: str) -> None:
    s = summary()
    if damage == "missing":
        del s["baselines"][name]
    elif damage == "no accuracy":
        del s["baselines"][name]["accuracy"]
    elif damage == "no final_accuracy":
        del s["baselines"][name]["final_accuracy"]
    else:
        s["baselines"][name] = [0.5, 0.6]
    with pytest.raises(ValueError, match=rf"baselines\.{name}"):
        report.validate_summary(s)


def test_names_every_problem_at_once() -> None:
    s = summary()
    s["schema"] = "other"
    del s["max_epsilon"]
    del s["rounds"][0]["loss"]
    with pytest.raises(ValueError) as info:
        report.validate_summary(s)
    for problem in ("schema", "max_epsilon", "rounds[].loss"):
        assert problem in str(info.value)


@pytest.mark.parametrize("key", ["parameters", "baselines", "rounds"])
def test_rejects_wrong_json_types_with_value_error(key: str) -> None:
    """Regression (fixed in cc4ebad): these raised AttributeError/TypeError before."""
    for wrong in (None, "x", 3):
        s = summary()
        s[key] = wrong
        with pytest.raises(ValueError, match=key):
            report.validate_summary(s)


def test_rejects_a_round_that_is_not_an_object() -> None:
    s = summary()
    s["rounds"].append([1, 0.5])
    with pytest.raises(ValueError, match=r"rounds\[\]"):
        report.validate_summary(s)


def test_rejects_a_summary_that_is_not_an_object() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        report.validate_summary([summary()])  # type: ignore[arg-type]


# --------------------------------------------------------------------- write


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    report.write(summary(), out)
    return out


def test_write_writes_the_summary_as_json(written: Path) -> None:
    assert json.loads((written / "summary.json").read_text()) == summary()


def test_write_writes_three_png_plots(written: Path) -> None:
    for name in PLOTS:
        data = (written / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert data[12:16] == b"IHDR", name
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 400 and height >= 300, (name, width, height)
        assert len(data) > 5_000, (name, len(data))
        assert data.endswith(b"IEND\xaeB`\x82"), name


def test_report_html_shows_results_and_plots(written: Path) -> None:
    page = (written / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    for name in PLOTS:
        assert f'<img src="{name}"' in page
    assert "<b>0.679</b>" in page  # final accuracy, encrypted run
    assert "4.50e-08" in page  # the plaintext-baseline model difference
    assert "2.900" in page  # largest epsilon
    assert page.count("<tr><td>") == 2  # one table row per round
    assert "unit: add/remove one record of the client&#x27;s local dataset" in page


def test_report_html_escapes_untrusted_text(written: Path) -> None:
    page = (written / "report.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page  # the withdrawal reason, as a client sent it
    assert "<b>gives no privacy</b>" not in page


def test_write_refuses_an_invalid_summary_and_writes_nothing(tmp_path: Path) -> None:
    s = copy.deepcopy(summary())
    del s["baselines"]["federated_no_dp"]
    with pytest.raises(ValueError, match="federated_no_dp"):
        report.write(s, tmp_path)
    assert list(tmp_path.iterdir()) == []
