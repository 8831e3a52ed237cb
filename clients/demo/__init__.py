"""``secagg demo``: the encrypted end-to-end demo with real processes.

Creates a deployment in ``OUT/deployment``, starts the server, the key holders (who run
the key ceremony) and the DP training clients as separate processes talking gRPC over
mutual TLS on loopback, follows the rounds (a progress bar and one table row per
released round), then computes the baselines in this process and writes
``summary.json``, PNG plots and ``report.html`` into ``OUT``. Every path inside the
deployment comes from its :class:`~secagg.protocol.layout.DeploymentLayout`.

Notes
-----
The demo seeds the clients' DP noise (``--insecure-noise-seed``) so that the plaintext
baseline sees identical noise; seeded noise gives no privacy, so a deployment never
does this. ``--in-process`` runs the older single-process library example instead.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clients.demo import baselines, progress, report
from clients.demo.processes import Processes, free_port
from secagg import constants as C
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Roster

#: Colluding clients the demo's distributed DP assumes (its noise counts the others).
DEMO_COLLUDERS = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg demo``."""
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--keyholders", type=int, default=3)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--rounds", type=int, help="rounds (default: 20 local, 40 distributed)")
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--min-contributors", type=int, help="default: 2 local, every client distributed"
    )
    parser.add_argument(
        "--dp",
        choices=["local", "distributed"],
        default="local",
        help="local DP-SGD (default) or distributed DP (see clients.dist_dp)",
    )
    parser.add_argument(
        "--budget-rounds",
        default="",
        help="per-client budget horizon, e.g. 'c5=8' (demo of a client running out)",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="run the single-process library example"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="the server serves Prometheus metrics on 127.0.0.1:PORT (see secagg serve)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0 on success."""
    distributed = args.dp == "distributed"
    if args.rounds is None:
        args.rounds = 40 if distributed else 20
    if args.min_contributors is None:
        args.min_contributors = args.clients if distributed else 2
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
    from clients.dist_dp import DistributedDPConfig
    from clients.dp_trainer import DPConfig, model_length

    started = time.monotonic()
    out: Path = args.out
    layout = DeploymentLayout(out / "deployment")
    if layout.root.exists():
        shutil.rmtree(layout.root)
    out.mkdir(parents=True, exist_ok=True)
    config = DPConfig(
        target_epsilon=args.epsilon,
        target_delta=args.delta,
        rounds=args.rounds,
        noise_seed=args.seed,
    )
    length = model_length(config.hidden)
    dist_config = (
        DistributedDPConfig(
            target_epsilon=args.epsilon,
            target_delta=args.delta,
            rounds=args.rounds,
            honest_contributors=args.min_contributors - DEMO_COLLUDERS,
            noise_seed=args.seed,
        )
        if distributed
        else None
    )
    initial = baselines.initial_vector(config.hidden, args.seed)
    roster = init_deployment(
        layout.root,
        clients=args.clients,
        keyholders=args.keyholders,
        threshold=args.threshold,
        min_contributors=args.min_contributors,
        rounds=args.rounds,
        round_timeout_seconds=600.0,
        model_length=length,
        server_address=f"127.0.0.1:{free_port()}",
        epsilon_budget=args.epsilon,
        require_dp=True,  # every networked demo client trains with DP; refuse any other
        initial_model=initial,
    )
    shutil.copyfile(layout.initial_model, out / "initial_model.bin")
    horizons = dict(item.split("=") for item in args.budget_rounds.split(",") if item)
    federation = load_federation(clients=args.clients, alpha=args.alpha, seed=args.seed)
    params = roster.params.describe()
    print(
        f"secagg demo: {args.clients} clients, {args.keyholders} key holders (t={args.threshold}), "
        f"{args.rounds} rounds, epsilon {args.epsilon:g} ({args.dp} DP); "
        f"model {length} parameters; "
        f"output in {out}"
    )
    procs = Processes(out / "logs")
    rows: list[dict[str, Any]] = []
    try:
        _start_parties(procs, args, layout, roster, horizons)
        rows = progress.follow(
            layout,
            roster.clients,
            federation,
            config.hidden,
            rounds=args.rounds,
            length=length,
            procs=procs,
            to_model=models_of(dist_config, roster, initial),
        )
    finally:
        procs.stop()
    final = progress.released_models(layout, length)
    if dist_config is not None:
        replay = models_of(dist_config, roster, initial)
        final = {r: replay(r, v) for r, v in sorted(final.items())}
    print(
        "baselines: plaintext aggregation with the same DP noise, federated without DP, centralized"
    )
    warnings.filterwarnings("ignore", module="opacus")
    names = [c.name for c in roster.clients]
    horizon_by_index = {names.index(n): int(r) for n, r in horizons.items()}
    if dist_config is not None:
        plain = baselines.distributed(federation, dist_config, roster.params, model_seed=args.seed)
    else:
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
            "dp_mode": args.dp,
            "model": f"MLP 64-{config.hidden}-10 ({length} parameters)",
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
        "withdrawn": progress.withdrawn(layout),
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


def models_of(
    config: Any, roster: Roster, initial: np.ndarray
) -> Callable[[int, np.ndarray], np.ndarray]:
    """Round -> the model after its release: the release itself under local DP; under
    distributed DP the model every client computes from the releases
    (:meth:`clients.dist_dp.DistributedDPTrainer.apply_release`), replayed here."""
    if config is None:
        return lambda _, release: release
    from clients.dist_dp import apply_release

    models: dict[int, np.ndarray] = {0: initial}

    def model(rnd: int, release: np.ndarray) -> np.ndarray:
        models[rnd] = apply_release(config, roster.params, models[rnd - 1], release, rnd)
        return models[rnd]

    return model


def _start_parties(
    procs: Processes,
    args: argparse.Namespace,
    layout: DeploymentLayout,
    roster: Roster,
    horizons: dict[str, str],
) -> None:
    """Start the server, then every key holder and every DP training client."""
    dep = str(layout.root)
    metrics = [] if args.metrics_port is None else ["--metrics-port", str(args.metrics_port)]
    procs.start("server", "serve", dep, *metrics)
    time.sleep(0.5)
    print(
        "secagg demo: the key holders seal their key shares under a generated passphrase "
        f"(demo only; a deployment sets {C.KEYHOLDER_PASSPHRASE_ENV} or --passphrase-file)"
    )
    passphrase = {C.KEYHOLDER_PASSPHRASE_ENV: secrets.token_urlsafe(32)}
    for i in range(1, args.keyholders + 1):
        procs.start(f"kh{i}", "keyholder", dep, "--index", str(i), env=passphrase)
    for c in roster.clients:
        extra = ["--budget-rounds", horizons[c.name]] if c.name in horizons else []
        procs.start(
            c.name,
            "client",
            dep,
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
            "--dp",
            args.dp,
            "--colluders",
            str(DEMO_COLLUDERS),
            *extra,
        )
