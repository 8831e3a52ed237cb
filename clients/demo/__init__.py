"""``secagg demo``: the encrypted end-to-end demo with real processes.

Creates a deployment in ``OUT/deployment``, starts the server, the key holders (who run
the key ceremony) and the DP training clients as separate processes talking gRPC over
mutual TLS on loopback, follows the rounds (a progress bar and one table row per
released round), then computes the baselines in this process and writes
``summary.json``, PNG plots and ``report.html`` into ``OUT``.

Notes
-----
The demo seeds the clients' DP noise (``--insecure-noise-seed``) so that the plaintext
baseline sees identical noise; seeded noise gives no privacy, so a deployment never
does this. ``--in-process`` runs the older single-process library example instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from secagg.protocol.deployment import init_deployment
from secagg.protocol.model_blob import decode_model, encode_model

from clients.demo import baselines, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg demo``."""
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--keyholders", type=int, default=3)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-contributors", type=int, default=2)
    parser.add_argument(
        "--budget-rounds",
        default="",
        help="per-client budget horizon, e.g. 'c5=8' (demo of a client running out)",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="run the single-process library example"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Processes:
    """The demo's child processes, with logs in ``OUT/logs``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the child)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "secagg.cli", *args], stdout=log, stderr=subprocess.STDOUT
        )

    def check(self) -> None:
        for name, p in self.procs.items():
            if p.poll() not in (None, 0):
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{tail}")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0 on success."""
    if args.in_process:
        from clients.demo import local as demo_local

        ns = argparse.Namespace(
            clients=args.clients,
            keyholders=args.keyholders,
            threshold=args.threshold,
            rounds=min(args.rounds, 5),
            alpha=args.alpha,
            seed=args.seed,
        )
        return demo_local.run(ns)
    from clients.data import load_federation
    from clients.dp_trainer import DPConfig, model_length

    started = time.monotonic()
    out: Path = args.out
    if (out / "deployment").exists():
        shutil.rmtree(out / "deployment")
    out.mkdir(parents=True, exist_ok=True)
    config = DPConfig(
        target_epsilon=args.epsilon,
        target_delta=args.delta,
        rounds=args.rounds,
        noise_seed=args.seed,
    )
    length = model_length(config.hidden)
    dep = out / "deployment"
    roster = init_deployment(
        dep,
        clients=args.clients,
        keyholders=args.keyholders,
        threshold=args.threshold,
        min_contributors=args.min_contributors,
        rounds=args.rounds,
        round_timeout_seconds=600.0,
        model_length=length,
        server_address=f"127.0.0.1:{_free_port()}",
        epsilon_budget=args.epsilon,
    )
    initial = baselines.initial_vector(config.hidden, args.seed)
    (out / "initial_model.bin").write_bytes(encode_model(1, initial))
    horizons = dict(item.split("=") for item in args.budget_rounds.split(",") if item)
    federation = load_federation(clients=args.clients, alpha=args.alpha, seed=args.seed)
    params = roster.params.describe()
    print(
        f"secagg demo: {args.clients} clients, {args.keyholders} key holders (t={args.threshold}), "
        f"{args.rounds} rounds, epsilon {args.epsilon:g}; model {length - 3} parameters; "
        f"output in {out}"
    )
    procs = _Processes(out / "logs")
    rows: list[dict[str, Any]] = []
    try:
        procs.start("server", "serve", str(dep), "--initial-model", str(out / "initial_model.bin"))
        time.sleep(0.5)
        for i in range(1, args.keyholders + 1):
            procs.start(f"kh{i}", "keyholder", str(dep), "--index", str(i))
        for c in roster.clients:
            extra = ["--budget-rounds", horizons[c.name]] if c.name in horizons else []
            procs.start(
                c.name,
                "client",
                str(dep),
                "--name",
                c.name,
                "--trainer",
                "dp",
                "--data-seed",
                str(args.seed),
                "--alpha",
                str(args.alpha),
                "--epsilon",
                str(args.epsilon),
                "--delta",
                str(args.delta),
                "--insecure-noise-seed",
                str(args.seed),
                *extra,
            )
        rows = _follow(dep, roster.clients, federation, config, args.rounds, procs)
    finally:
        procs.stop()
    final = _released_models(dep, length)
    print(
        "baselines: plaintext aggregation with the same DP noise, federated without DP, centralized"
    )
    warnings.filterwarnings("ignore", module="opacus")
    names = [c.name for c in roster.clients]
    horizon_by_index = {names.index(n): int(r) for n, r in horizons.items()}
    plain = baselines.federated(
        federation, config, model_seed=args.seed, budget_rounds=horizon_by_index
    )
    no_dp = baselines.federated(
        federation,
        DPConfig(rounds=args.rounds, dp=False, noise_seed=args.seed),
        model_seed=args.seed,
    )
    central = baselines.centralized(
        federation, rounds=args.rounds, hidden=config.hidden, seed=args.seed
    )
    encrypted_final = final[max(final)] if final else np.zeros(length)
    diff = float(np.abs(encrypted_final - plain.final).max()) if final else float("nan")
    summary: dict[str, Any] = {
        "schema": report.SCHEMA,
        "parameters": {
            "clients": args.clients,
            "keyholders": args.keyholders,
            "threshold": args.threshold,
            "rounds": args.rounds,
            "epsilon_target": args.epsilon,
            "delta": args.delta,
            "alpha": args.alpha,
            "seed": args.seed,
            "min_contributors": args.min_contributors,
            "model": f"MLP 64-{config.hidden}-10 ({length - 3} parameters)",
            "dp": {
                "accountant": config.accountant,
                "max_grad_norm": config.max_grad_norm,
                "batch_size": config.batch_size,
                "learning_rate": config.learning_rate,
                "lr_decay": config.lr_decay,
                "noise_seeded": True,
            },
            "he": params,
            "flooding_bits": params["flooding_bits"],
            "note": "The demo seeds the DP noise so the plaintext baseline sees the same noise; "
            "seeded noise gives no privacy and a deployment never does this.",
        },
        "rounds": rows,
        "final_accuracy": rows[-1]["accuracy"] if rows else 0.0,
        "max_epsilon": max((max(r["epsilon"].values(), default=0.0) for r in rows), default=0.0),
        "withdrawn": _withdrawn(dep),
        "baselines": {
            "plaintext_aggregation_dp": {
                "accuracy": plain.accuracy,
                "final_accuracy": plain.accuracy[-1],
                "max_abs_diff_vs_encrypted": diff,
            },
            "federated_no_dp": {"accuracy": no_dp.accuracy, "final_accuracy": no_dp.accuracy[-1]},
            "centralized_no_dp": {
                "accuracy": central.accuracy,
                "final_accuracy": central.accuracy[-1],
            },
        },
        "elapsed_seconds": time.monotonic() - started,
    }
    report.write(summary, out)
    print(
        f"final accuracy {summary['final_accuracy']:.3f} (plaintext aggregation "
        f"{plain.accuracy[-1]:.3f}, max model difference {diff:.1e}; "
        f"no DP {no_dp.accuracy[-1]:.3f}; "
        f"centralized {central.accuracy[-1]:.3f}); max epsilon {summary['max_epsilon']:.3f}"
    )
    print(
        f"wrote {out / 'summary.json'}, {out / 'report.html'} in {summary['elapsed_seconds']:.0f}s"
    )
    print(f"check the run offline: secagg audit verify {out}")
    return 0


def _released_models(dep: Path, length: int) -> dict[int, Any]:
    """Round -> released model vector, read from the server's store."""
    from secagg.proto import service_pb2 as pb

    db = dep / "server" / "data" / "state.db"
    if not db.exists():
        return {}
    out = {}
    with sqlite3.connect(db) as conn:
        for rnd, blob in conn.execute(
            "SELECT round, release FROM rounds WHERE release IS NOT NULL"
        ):
            rel = pb.Release.FromString(blob)
            data = (dep / "server" / "data" / "blobs" / rel.model_hash.hex()).read_bytes()
            out[int(rnd)] = decode_model(data, length=length)[1]
    return out


def _withdrawn(dep: Path) -> dict[str, str]:
    db = dep / "server" / "data" / "state.db"
    with sqlite3.connect(db) as conn:
        return {c: r for c, r in conn.execute("SELECT client_id, reason FROM withdrawals")}


def _round_stats(dep: Path, rnd: int) -> tuple[int, int]:
    """(contributors, upload bytes) of a round."""
    blobs = dep / "server" / "data" / "blobs"
    with sqlite3.connect(dep / "server" / "data" / "state.db") as conn:
        hashes = [
            h for (h,) in conn.execute("SELECT ciphertext_hash FROM uploads WHERE round=?", (rnd,))
        ]
    return len(hashes), sum((blobs / h.hex()).stat().st_size for h in hashes)


def _epsilons(dep: Path, clients: Any, rnd: int) -> dict[str, float]:
    out = {}
    for c in clients:
        path = dep / "clients" / c.name / "state" / "privacy.json"
        if path.exists():
            eps = json.loads(path.read_text()).get("epsilon", {})
            if str(rnd) in eps:
                out[c.name] = float(eps[str(rnd)])
    return out


def _follow(
    dep: Path, clients: Any, federation: Any, config: Any, rounds: int, procs: _Processes
) -> list[dict[str, Any]]:
    """Print progress until every round is released; return the per-round records."""
    print(
        f"{'round':>5} {'accuracy':>9} {'loss':>7} {'fed.val':>8} {'max eps':>8} {'clients':>8} "
        f"{'upload MB':>10} {'seconds':>8}"
    )
    rows: list[dict[str, Any]] = []
    last = time.monotonic()
    length = model_length_of(config)
    deadline = time.monotonic() + 3600
    while len(rows) < rounds and time.monotonic() < deadline:
        procs.check()
        models = _released_models(dep, length)
        for rnd in sorted(models):
            if rnd <= len(rows):
                continue
            vector = models[rnd]
            acc, loss = baselines.test_metrics(federation, vector, config.hidden)
            count, size = _round_stats(dep, rnd)
            now = time.monotonic()
            val = float(vector[-3] / vector[-2]) if vector[-2] > 0 else None
            epsilon = _epsilons(dep, clients, rnd)
            seconds = now - last
            row: dict[str, Any] = {
                "round": rnd,
                "accuracy": acc,
                "loss": loss,
                "federated_val_accuracy": val,
                "epsilon": epsilon,
                "clients_aggregated": count,
                "upload_bytes": size,
                "seconds": seconds,
            }
            last = now
            rows.append(row)
            val_s = f"{val:.3f}" if val is not None else "-"
            clear = "\r" + " " * 40 + "\r" if sys.stdout.isatty() else ""
            print(
                f"{clear}{rnd:>5} {acc:>9.3f} {loss:>7.3f} {val_s:>8} "
                f"{max(epsilon.values(), default=0):>8.3f} {count:>8} {size / 1e6:>10.2f} "
                f"{seconds:>8.1f}"
            )
        if sys.stdout.isatty():
            print(f"\r{_bar(len(rows), rounds)}", end="", flush=True)
        time.sleep(0.5)
    if sys.stdout.isatty():
        print()
    return rows


def model_length_of(config: Any) -> int:
    """Uploaded vector length for a DP config."""
    from clients.dp_trainer import model_length

    return model_length(config.hidden)
