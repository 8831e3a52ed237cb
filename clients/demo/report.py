"""The demo's outputs: ``summary.json`` (schema ``clients.demo.summary/v2``), PNG plots and
``report.html`` (self-contained apart from the PNGs beside it, readable offline).

Schema v2 drops v1's ``rounds[].federated_val_accuracy``: clients no longer release
validation metrics (issue 12), and ε is stated under the unit "add/remove one record of
a client's local dataset".
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from clients.privacy_ledger import PRIVACY_UNIT

SCHEMA = "clients.demo.summary/v2"
REQUIRED_ROUND_KEYS = (
    "round",
    "accuracy",
    "loss",
    "epsilon",
    "clients_aggregated",
    "upload_bytes",
    "seconds",
)


def validate_summary(summary: dict[str, Any]) -> None:
    """Raise ValueError unless ``summary`` follows the documented schema."""
    problems = []
    if not isinstance(summary, dict):
        raise ValueError("summary.json must be a JSON object")
    for key, kind in (("parameters", dict), ("rounds", list), ("baselines", dict)):
        if key in summary and not isinstance(summary[key], kind):
            problems.append(f"{key} (must be a {kind.__name__})")
    if problems:
        raise ValueError("summary.json misses or breaks: " + ", ".join(problems))
    if summary.get("schema") != SCHEMA:
        problems.append("schema")
    for key in (
        "parameters",
        "rounds",
        "final_accuracy",
        "max_epsilon",
        "baselines",
        "elapsed_seconds",
    ):
        if key not in summary:
            problems.append(key)
    for r in summary.get("rounds", []):
        if not isinstance(r, dict):
            problems.append("rounds[] (must be objects)")
            continue
        problems += [f"rounds[].{k}" for k in REQUIRED_ROUND_KEYS if k not in r]
    for name in ("plaintext_aggregation_dp", "federated_no_dp", "centralized_no_dp"):
        base = summary.get("baselines", {}).get(name)
        if not isinstance(base, dict) or "accuracy" not in base or "final_accuracy" not in base:
            problems.append(f"baselines.{name}")
    if problems:
        raise ValueError("summary.json misses or breaks: " + ", ".join(sorted(set(problems))))


def _save(plt: Any, fig: Any, path: Path) -> str:
    """Lay out ``fig``, write it to ``path`` as a PNG, close it; return the file name."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot(summary: dict[str, Any], out: Path) -> list[str]:
    """Write the PNG plots; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r["round"] for r in summary["rounds"]]
    names = []
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(
        rounds, [r["accuracy"] for r in summary["rounds"]], "o-", label="encrypted, DP (secagg)"
    )
    labels = {
        "plaintext_aggregation_dp": "plaintext aggregation, DP",
        "federated_no_dp": "federated, no DP",
        "centralized_no_dp": "centralized, no DP",
    }
    for key, label in labels.items():
        acc = summary["baselines"][key]["accuracy"]
        ax.plot(range(1, len(acc) + 1), acc, "--", label=label)
    ax.set(xlabel="round", ylabel="test accuracy", title="Accuracy per round", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    names.append(_save(plt, fig, out / "accuracy.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    clients = sorted({c for r in summary["rounds"] for c in r["epsilon"]})
    for c in clients:
        pts = [(r["round"], r["epsilon"][c]) for r in summary["rounds"] if c in r["epsilon"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=c)
    target = summary["parameters"]["epsilon_target"]
    ax.axhline(target, color="red", linestyle=":", label=f"budget {target:g}")
    ax.set(
        xlabel="round",
        ylabel="epsilon spent",
        title=f"Privacy spent per client (add/remove one record, delta {summary['parameters']['delta']:g})",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    names.append(_save(plt, fig, out / "epsilon.png"))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.bar(rounds, [r["upload_bytes"] / 1e6 for r in summary["rounds"]])
    a1.set(xlabel="round", ylabel="MB uploaded", title="Encrypted upload volume")
    a2.bar(rounds, [r["seconds"] for r in summary["rounds"]], color="tab:orange")
    a2.set(xlabel="round", ylabel="seconds", title="Wall time per round")
    names.append(_save(plt, fig, out / "cost.png"))
    return names


def write(summary: dict[str, Any], out: Path) -> None:
    """Validate and write summary.json, the plots and report.html into ``out``."""
    validate_summary(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    images = plot(summary, out)
    p = summary["parameters"]
    base = summary["baselines"]
    rows = "".join(
        f"<tr><td>{r['round']}</td><td>{r['accuracy']:.3f}</td><td>{r['loss']:.3f}</td>"
        f"<td>{max(r['epsilon'].values(), default=0):.2f}</td><td>{r['clients_aggregated']}</td>"
        f"<td>{r['upload_bytes'] / 1e6:.2f}</td><td>{r['seconds']:.1f}</td></tr>"
        for r in summary["rounds"]
    )
    he = p["he"]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>secagg demo report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:2px 8px;text-align:right}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#f3f3f3}}</style></head><body>
<h1>secagg: encrypted federated learning with differential privacy</h1>
<p>{p["clients"]} clients, {p["keyholders"]} key holders (threshold {p["threshold"]}), {len(summary["rounds"])}
rounds on scikit-learn's handwritten digits (Dirichlet alpha {p["alpha"]}); DP-SGD with epsilon
{p["epsilon_target"]:g}, delta {p["delta"]:g} per client, unit: {html.escape(PRIVACY_UNIT)} (epsilon composes
DP-SGD and the noisy count each client uploads as its weight); BFV N={he["poly_modulus_degree"]}, {he["fractional_bits"]}
fractional bits, {he["flooding_bits"]}-bit flooding ({he["statistical_security_bits"]} bits statistical
security).</p>
<h2>Result</h2>
<ul><li>Final test accuracy, encrypted DP run: <b>{summary["final_accuracy"]:.3f}</b></li>
<li>Plaintext aggregation, same seeds and DP noise: {base["plaintext_aggregation_dp"]["final_accuracy"]:.3f}
(largest difference of the final models: {base["plaintext_aggregation_dp"].get("max_abs_diff_vs_encrypted", float("nan")):.2e})</li>
<li>Federated without DP: {base["federated_no_dp"]["final_accuracy"]:.3f};
centralized without DP: {base["centralized_no_dp"]["final_accuracy"]:.3f}</li>
<li>Largest epsilon spent by a client: {summary["max_epsilon"]:.3f} (budget {p["epsilon_target"]:g})</li>
<li>Withdrawn clients: {html.escape(json.dumps(summary.get("withdrawn", {})))}</li></ul>
{"".join(f'<p><img src="{n}" alt="{n}"></p>' for n in images)}
<h2>Rounds</h2><table><tr><th>round</th><th>accuracy</th><th>loss</th><th>max epsilon</th>
<th>clients</th><th>upload MB</th><th>seconds</th></tr>{rows}</table>
<p>{html.escape(p.get("note", ""))}</p></body></html>"""
    (out / "report.html").write_text(page)
