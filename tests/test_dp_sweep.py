"""``secagg dp-sweep``: a tiny sweep (2 seeds, 2 rounds, one epsilon).

Checks the outputs' schema, that the means and sds are those of the per-seed values, and
that a seed's run is reproducible on its own. The default suite sweeps the distributed
mode only (seconds); local DP-SGD's accountant takes ~10 s per run to plan its noise, so
the sweep of both modes is marked slow. No accuracy is asserted: the real table (10
seeds, epsilon 1, 3, 8) is a measurement, reported in the README.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from clients.dist_dp import DistributedDPConfig
from clients.dp_sweep import SweepSettings, Task, config_of, run_one
from clients.dp_sweep_report import SCHEMA, mean_sd, validate_sweep
from clients.dp_trainer import DPConfig
from secagg.cli import main

SEEDS = [3, 4]
LABELS = {"local": "local DP-SGD", "distributed": "distributed DP"}


def _run_sweep(out: Path, modes: str) -> Path:
    argv = ["dp-sweep", "--out", str(out), "--eps", "1", "--seeds", "3,4", "--rounds", "2"]
    assert main([*argv, "--modes", modes]) == 0
    return out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run_sweep(tmp_path_factory.mktemp("sweep"), "distributed")


def _sweep(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "sweep.json").read_text())
    return data


def _check_entries(out: Path, modes: list[str]) -> dict[str, Any]:
    sweep = _sweep(out)
    validate_sweep(sweep)
    assert sweep["schema"] == SCHEMA
    assert [(e["mode"], e["epsilon"]) for e in sweep["results"]] == [(m, 1.0) for m in modes]
    for entry in sweep["results"]:
        assert [s["seed"] for s in entry["seeds"]] == SEEDS
        assert entry["rounds"] == 2 and entry["n"] == 2
        assert entry["settings"]["target_epsilon"] == 1.0
        assert entry["settings"]["target_delta"] == 1e-5
        assert "noise_seed" not in entry["settings"]  # per seed, not a shared setting
    return sweep


def test_sweep_json_follows_the_schema(sweep_dir: Path) -> None:
    sweep = _check_entries(sweep_dir, ["distributed"])
    assert sweep["settings"] == {
        "clients": 5,
        "alpha": 0.5,
        "data_seed": 0,
        "delta": 1e-5,
        "rounds": 2,
    }
    assert sweep["results"][0]["settings"]["honest_contributors"] == 4  # one of 5 colludes


@pytest.mark.slow
def test_a_sweep_of_both_modes_writes_an_entry_per_mode(tmp_path: Path) -> None:
    _check_entries(_run_sweep(tmp_path, "local,distributed"), ["local", "distributed"])


def test_the_configurations_are_the_defaults_but_for_epsilon_delta_and_seed() -> None:
    settings = SweepSettings()
    local = config_of(Task("local", 8.0, 1005), settings)
    assert local == DPConfig(target_epsilon=8.0, target_delta=1e-5, noise_seed=1005)
    distributed = config_of(Task("distributed", 1.0, 1005), settings)
    assert distributed == DistributedDPConfig(
        target_epsilon=1.0, target_delta=1e-5, noise_seed=1005, honest_contributors=4
    )


def test_means_and_sds_are_those_of_the_per_seed_accuracies(sweep_dir: Path) -> None:
    sweep = _sweep(sweep_dir)
    table = (sweep_dir / "sweep.md").read_text()
    for entry in sweep["results"]:
        accuracies = [s["accuracy"] for s in entry["seeds"]]
        assert entry["mean"] == statistics.fmean(accuracies)
        assert entry["sd"] == statistics.stdev(accuracies)
        label = f"{LABELS[entry['mode']]} (2 rounds)"
        row = f"| {label} | 1 | {entry['mean']:.3f} +- {entry['sd']:.3f} | 2 |"
        assert row in table
    tampered = json.loads(json.dumps(sweep))
    tampered["results"][0]["mean"] += 0.01
    with pytest.raises(ValueError, match="statistics"):
        validate_sweep(tampered)


def test_the_plot_is_a_png(sweep_dir: Path) -> None:
    assert (sweep_dir / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_seed_alone_reproduces_its_sweep_result(sweep_dir: Path) -> None:
    sweep = _sweep(sweep_dir)
    distributed = next(e for e in sweep["results"] if e["mode"] == "distributed")
    again = run_one(Task("distributed", 1.0, SEEDS[1]), SweepSettings(rounds=2))
    assert again.accuracy == distributed["seeds"][1]["accuracy"]


def test_sd_is_undefined_for_one_seed() -> None:
    assert mean_sd([0.5]) == (0.5, None)
    mean, sd = mean_sd([0.5, 0.7])
    assert mean == pytest.approx(0.6) and sd == pytest.approx(0.1414213562)
