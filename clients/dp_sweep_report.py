"""The outputs of ``secagg dp-sweep``: ``sweep.json``, ``sweep.md`` and ``sweep.png``.

``sweep.json`` (schema ``clients.dp_sweep/v1``) holds one entry per (mode, epsilon): the
final test accuracy of every seed, their mean and sample standard deviation (``sd`` is
``null`` below two seeds), the number of rounds and the DP configuration (apart from the
per-seed ``noise_seed``); plus the shared settings, the seeds used for tuning, the
machine and the wall time. ``sweep.md`` is the table (mode | epsilon | mean +- sd |
seeds) and ``sweep.png`` plots the mean accuracy against epsilon with +-sd error bars.

Notes
-----
The runs behind these numbers use seeded (predictable) noise: they measure utility and
are not private (:mod:`clients.dp_sweep`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clients.privacy_ledger import PRIVACY_UNIT

SCHEMA = "clients.dp_sweep/v1"
MODE_LABELS = {"local": "local DP-SGD", "distributed": "distributed DP"}
ENTRY_KEYS = ("mode", "epsilon", "rounds", "settings", "seeds", "mean", "sd", "n")
NOTE = (
    "Measurement runs: the noise of seed s is derived from s as the demo's "
    "--insecure-noise-seed derives it, so each run is reproducible and none is private; "
    "epsilon is what the configuration spends with fresh noise."
)


@dataclass(frozen=True)
class SeedResult:
    """The outcome of one seed's run."""

    seed: int
    accuracy: float
    rounds: int
    seconds: float


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for fewer than two values)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def machine() -> dict[str, Any]:
    """What the sweep ran on (for the report)."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def entries(
    results: dict[tuple[str, float, int], SeedResult], configs: dict[tuple[str, float], Any]
) -> list[dict[str, Any]]:
    """One entry per (mode, epsilon), seeds in increasing order."""
    out = []
    for (mode, epsilon), config in configs.items():
        seeds = sorted(
            (r for (m, e, _), r in results.items() if (m, e) == (mode, epsilon)),
            key=lambda r: r.seed,
        )
        mean, sd = mean_sd([r.accuracy for r in seeds])
        settings = asdict(config)
        settings.pop("noise_seed", None)  # per seed, below
        out.append(
            {
                "mode": mode,
                "epsilon": epsilon,
                "rounds": settings.get("rounds"),
                "settings": settings,
                "seeds": [
                    {"seed": r.seed, "accuracy": r.accuracy, "seconds": round(r.seconds, 1)}
                    for r in seeds
                ],
                "mean": mean,
                "sd": sd,
                "n": len(seeds),
            }
        )
    return out


def validate_sweep(sweep: dict[str, Any]) -> None:
    """Raise ValueError unless ``sweep`` follows the schema, statistics included."""
    problems = [] if sweep.get("schema") == SCHEMA else ["schema"]
    problems += [k for k in ("unit", "settings", "results", "elapsed_seconds") if k not in sweep]
    for entry in sweep.get("results", []):
        missing = [k for k in ENTRY_KEYS if k not in entry]
        if missing:
            problems += [f"results[].{k}" for k in missing]
            continue
        accuracies = [s["accuracy"] for s in entry["seeds"]]
        mean, sd = mean_sd(accuracies) if accuracies else (None, None)
        if entry["n"] != len(accuracies) or entry["mean"] != mean or entry["sd"] != sd:
            problems.append(f"results[{entry['mode']}, {entry['epsilon']}] statistics")
    if problems:
        raise ValueError("sweep.json misses or breaks: " + ", ".join(problems))


def table(sweep: dict[str, Any]) -> str:
    """The Markdown table of a sweep."""
    s = sweep["settings"]
    lines = [
        f"Test accuracy after the last round, mean +- sd over seeds; {s['clients']} clients "
        f"(Dirichlet alpha {s['alpha']}, data seed {s['data_seed']}), delta {s['delta']:g}, "
        f"unit: {PRIVACY_UNIT}.",
        "",
        "| mode | eps | mean +- sd | n seeds |",
        "| --- | --- | --- | --- |",
    ]
    for e in sweep["results"]:
        sd = "n/a" if e["sd"] is None else f"{e['sd']:.3f}"
        label = f"{MODE_LABELS.get(e['mode'], e['mode'])} ({e['rounds']} rounds)"
        lines.append(f"| {label} | {e['epsilon']:g} | {e['mean']:.3f} +- {sd} | {e['n']} |")
    seeds = sorted({x["seed"] for e in sweep["results"] for x in e["seeds"]})
    tuned = sweep["tuning_seeds"]
    lines += [
        "",
        f"Seeds (noise and initial model): {', '.join(map(str, seeds))}; the settings were "
        f"tuned on noise seeds {', '.join(map(str, tuned['noise_seed']))} and model seeds "
        f"{', '.join(map(str, tuned['model_seed']))}.",
    ]
    return "\n".join(lines) + "\n"


def plot(sweep: dict[str, Any], path: Path) -> None:
    """Mean accuracy against epsilon, one line per mode, +-sd error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in dict.fromkeys(e["mode"] for e in sweep["results"]):
        rows = sorted(
            (e for e in sweep["results"] if e["mode"] == mode), key=lambda e: e["epsilon"]
        )
        ax.errorbar(
            [e["epsilon"] for e in rows],
            [e["mean"] for e in rows],
            yerr=[e["sd"] or 0.0 for e in rows],
            marker="o",
            capsize=4,
            label=f"{MODE_LABELS.get(mode, mode)} (n={rows[0]['n']})",
        )
    ax.set_xscale("log")
    ax.minorticks_off()
    epsilons = sorted({e["epsilon"] for e in sweep["results"]})
    ax.set_xticks(epsilons, [f"{x:g}" for x in epsilons])
    ax.set(
        xlabel=f"epsilon (delta {sweep['settings']['delta']:g}, add/remove one record)",
        ylabel="test accuracy (mean +- sd)",
        title="Privacy-utility trade-off",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_sweep(
    out: Path,
    *,
    results: dict[tuple[str, float, int], SeedResult],
    configs: dict[tuple[str, float], Any],
    settings: Any,
    tuning_seeds: dict[str, Any],
    elapsed: float,
    jobs: int,
) -> str:
    """Validate and write sweep.json, sweep.md and sweep.png into ``out``; return the table."""
    sweep = {
        "schema": SCHEMA,
        "unit": PRIVACY_UNIT,
        "note": NOTE,
        "settings": asdict(settings),
        "tuning_seeds": tuning_seeds,
        "machine": machine(),
        "jobs": jobs,
        "elapsed_seconds": round(elapsed, 1),
        "results": entries(results, configs),
    }
    validate_sweep(sweep)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(sweep, indent=2))
    text = table(sweep)
    (out / "sweep.md").write_text(text)
    plot(sweep, out / "sweep.png")
    return text
