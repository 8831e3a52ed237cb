"""``secagg bench --scale``: one round of a real deployment per model size, on loopback.

For each size: ``secagg init`` a fresh deployment (``--rounds 1``, the model size's
derived timeouts and caps), ``secagg serve``, the key holders (``secagg keyholder``),
wait for the key ceremony, then the clients (``secagg client --trainer synthetic`` with
distinct seeds and weights; with ``--stagger`` each starts once the previous upload is
accepted), wait for round 1's release and the clients' exit, download the release as the
operator and compare it with the plaintext weighted mean recomputed here
(:mod:`secagg.bench.scale_model`), then stop the key holders and the server. Only the
command line is driven, so the benchmark survives changes of the internals.

Every party's exact peak RSS and CPU time come from ``wait4`` in a small reaper process
between the benchmark and the party (:mod:`secagg.bench.scale_processes` says why);
phases come from the processes' own log timestamps (:mod:`secagg.bench.scale_report`).

Notes
-----
Benchmark deployments only: the CA key and every party's keys sit in one temporary
directory, the key holders' passphrase is random per run, and the directory is deleted
afterwards unless ``--keep`` is given (a 100M-parameter run writes tens of GB).
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import grpc

from secagg.bench.command import DefaultCount, write_json
from secagg.bench.measure import log, machine_info
from secagg.bench.results import Json
from secagg.bench.scale_processes import Processes, ScaleRunFailed
from secagg.bench.scale_report import (
    ALLOWANCES,
    MAX_ABS_ERROR,
    accepted_uploads,
    fold_throughput,
    format_scale_report,
    memory_row,
    parse_log,
    phases,
    quorum_not_met,
)
from secagg.bench.scale_round import ScaleConfig, init_deployment, run_round
from secagg.errors import SecAggError
from secagg.params import Parameters

#: ``--large`` adds this size.
LARGE = 100_000_000
#: Defaults of ``--clients``, ``--keyholders`` and ``--threshold`` with ``--scale``.
SCALE_DEFAULTS = {"clients": 4, "keyholders": 3, "threshold": 2}


def _result(size: int, cfg: ScaleConfig, procs: Processes, error: float | None) -> Json:
    """One size's measurements from the reaped processes and their logs."""
    texts = procs.logs_by_party()
    server = parse_log("server", texts.get("server", ""))
    plan = cfg.client_plan()
    accepted = accepted_uploads(server)
    timings, missing = phases(
        server, {n: procs.parties[n].started for n, _, _ in plan if n in procs.parties}, accepted
    )
    uploads = {
        n: int(e.value)
        for n, _, _ in plan
        for e in parse_log(n, texts.get(n, ""))
        if e.kind == "uploaded" and e.value is not None
    }
    memory = []
    for party in procs.parties.values():
        if party.maxrss_kib is not None:
            row = memory_row(
                party.name, party.role, party.maxrss_kib, size, fork_floor_kib=party.fork_floor_kib
            )
            memory.append(
                {
                    **row,
                    "cpu_seconds": party.cpu_seconds,
                    "killed": party.killed,
                    "exit_code": party.exit_code,
                }
            )
    return {
        "parameters": size,
        "deployment": {
            "clients": cfg.clients,
            "keyholders": cfg.keyholders,
            "threshold": cfg.threshold,
            "stagger": cfg.stagger,
            "client_seeds_weights": {n: [s, w] for n, s, w in plan},
        },
        "memory": memory,
        "memory_pass": len(memory) == len(procs.parties) > 0 and all(row["pass"] for row in memory),
        "phases": timings,
        "missing_log_lines": missing,
        "fold_throughput": fold_throughput(server, size),
        "upload_bytes": uploads,
        "max_abs_error": error,
        "correct": error is not None and error <= MAX_ABS_ERROR,
        "quorum_not_met": quorum_not_met(texts.get("server", "")),
    }


def run_size(size: int, cfg: ScaleConfig, directory: Path, *, keep: bool) -> Json:
    """Deploy, run and measure one round at ``size`` parameters (in ``directory``)."""
    started = time.monotonic()
    log(f"{size:,} parameters in {directory}")
    directory.mkdir(parents=True)
    procs = Processes(directory / "logs", secrets.token_urlsafe(24))
    deployment = directory / "deployment"
    error: float | None = None
    failure = None
    try:
        init_deployment(deployment, cfg, size, timeout=600 + size / 1e5)
        error = run_round(procs, deployment, cfg, size, directory / "released-model.bin")
    except (ScaleRunFailed, SecAggError, grpc.RpcError, ValueError, OSError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
        log(f"{size:,} parameters FAILED: {failure}")
        for name, text in procs.logs_by_party().items():
            print(f"----- {name} -----\n{text[-2000:]}", file=sys.stderr)
    finally:
        log("stopping the key holders and the server")
        procs.stop_all()
    result = _result(size, cfg, procs, error)
    result["error"] = failure
    result["wall_seconds"] = time.monotonic() - started
    result["kept_in"] = str(directory) if keep else None
    if not keep:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def _chosen(args: argparse.Namespace, name: str) -> int:
    """The option's value, or the scale default if the user left it at the bench default."""
    value = getattr(args, name)
    return SCALE_DEFAULTS[name] if isinstance(value, DefaultCount) else int(value)


def config_from(args: argparse.Namespace) -> ScaleConfig:
    """The deployment ``args`` ask for; raises ValueError for an impossible one."""
    cfg = ScaleConfig(
        clients=_chosen(args, "clients"),
        keyholders=_chosen(args, "keyholders"),
        threshold=_chosen(args, "threshold"),
        stagger=args.stagger,
        seed=args.seed,
    )
    limit = Parameters.default().max_keyholders
    if not 1 <= cfg.threshold <= cfg.keyholders <= limit:
        raise ValueError(f"need 1 <= threshold <= keyholders <= {limit}")
    return cfg


def sizes_from(args: argparse.Namespace) -> list[int]:
    """The model sizes to run, ascending (``--large`` adds 100,000,000)."""
    return sorted(set(args.scale_sizes) | ({LARGE} if args.large else set()))


def run(args: argparse.Namespace) -> int:
    """Run ``secagg bench --scale``; print the table, optionally write the JSON.

    Returns
    -------
    int
        0 when every size's round completed (failed verdicts are reported, not
        signalled), 1 if a run failed or the JSON could not be written, 2 for invalid
        options.
    """
    try:
        cfg = config_from(args)
    except ValueError as exc:
        print(f"secagg bench --scale: {exc}", file=sys.stderr)
        return 2
    sizes = sizes_from(args)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="secagg-scale-", dir=args.workdir))
    report: Json = {
        "benchmark": "secagg bench --scale",
        "schema_version": 1,
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
        "config": {
            "sizes": sizes,
            "clients": cfg.clients,
            "keyholders": cfg.keyholders,
            "threshold": cfg.threshold,
            "stagger": cfg.stagger,
            "seed": cfg.seed,
            "rounds": 1,
            "memory_allowances": {
                role: {"base_mib": base / (1 << 20), "bytes_per_param": per}
                for role, (base, per) in ALLOWANCES.items()
            },
            "max_abs_error": MAX_ABS_ERROR,
            "peak_rss": "ru_maxrss of os.wait4 on each process",
            "workdir": str(root),
            "keep": args.keep,
        },
        "machine": machine_info(),
    }
    try:
        report["results"] = [
            run_size(size, cfg, root / f"n{size}", keep=args.keep) for size in sizes
        ]
    finally:
        if args.keep:
            log(f"kept the deployments and logs in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(format_scale_report(report))
    written = write_json(args.json, report)
    return 1 if written or any(r["error"] for r in report["results"]) else 0
