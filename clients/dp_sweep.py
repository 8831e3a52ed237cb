"""``secagg dp-sweep``: the privacy-utility table (test accuracy, mean +- sd over noise seeds).

For every DP mode (``local`` DP-SGD, ``distributed`` DP) and every target epsilon, the
federated training runs once per seed, in this process (or ``--jobs`` worker processes),
with the demo's in-process baselines (:func:`clients.demo.baselines.federated` and
:func:`~clients.demo.baselines.distributed`): the same trainers, samplers and noise as
the networked demo, with plaintext aggregation in place of the encryption (which the demo
shows changes nothing: the released models agree bit for bit in distributed mode). The
results go to ``OUT/sweep.json``, ``OUT/sweep.md`` and ``OUT/sweep.png``
(:mod:`clients.dp_sweep_report`).

Settings: the demo's split (5 clients, Dirichlet alpha 0.5, data seed 0), delta 1e-5,
every other setting the configuration's default for every epsilon (no per-epsilon and no
per-seed tuning): local DP-SGD 20 rounds, distributed DP 40 rounds with the noise of
``clients - 1`` honest contributors (the demo's one colluder). A run keyed by seed ``s``
uses ``noise_seed = s`` and ``model_seed = s``; the default seeds 1000-1009 were not
used to choose any setting (:data:`TUNING_SEEDS` were).

Security
--------
These are **measurement runs**: the noise is derived from the seed as the demo's
``--insecure-noise-seed`` derives it (:meth:`clients.dp_noise.RoundKey.insecure_seeded`),
so every run is reproducible from its seed and none of them is private. The epsilon in
the table is what the same configuration spends with fresh noise, under the unit
"add/remove one record of a client's dataset"; for distributed DP it assumes at most one
of the five contributors colludes with the adversary.
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from clients.dp_sweep_report import SeedResult, write_sweep
from secagg.errors import ConfigError

if TYPE_CHECKING:
    from clients.data import Federation
    from clients.dist_dp import DistributedDPConfig
    from clients.dp_trainer import DPConfig

MODES = ("local", "distributed")
DEFAULT_EPSILONS = (1.0, 3.0, 8.0)
#: Seeds the table reports by default (none of them was used to choose a setting).
DEFAULT_SEEDS = tuple(range(1000, 1010))
#: Seeds the DP settings were tuned on (never in a reported table).
TUNING_SEEDS = {"noise_seed": (100, 101), "model_seed": (0, 1)}


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """What every run of a sweep shares; ``rounds=None`` keeps each config's default."""

    clients: int = 5
    alpha: float = 0.5
    data_seed: int = 0
    delta: float = 1e-5
    rounds: int | None = None


@dataclass(frozen=True)
class Task:
    """One run: a mode, a target epsilon and the seed of its noise and initial model."""

    mode: str
    epsilon: float
    seed: int


def config_of(task: Task, settings: SweepSettings) -> DPConfig | DistributedDPConfig:
    """The DP configuration of ``task``: defaults apart from epsilon, delta and the seed."""
    from clients.demo import DEMO_COLLUDERS
    from clients.dist_dp import DistributedDPConfig
    from clients.dp_trainer import DPConfig

    config: DPConfig | DistributedDPConfig
    if task.mode == "local":
        config = DPConfig(
            target_epsilon=task.epsilon, target_delta=settings.delta, noise_seed=task.seed
        )
    elif task.mode == "distributed":
        config = DistributedDPConfig(
            target_epsilon=task.epsilon,
            target_delta=settings.delta,
            noise_seed=task.seed,
            honest_contributors=settings.clients - DEMO_COLLUDERS,
        )
    else:
        raise ConfigError(f"unknown DP mode {task.mode!r} (expected one of {MODES})")
    return config if settings.rounds is None else replace(config, rounds=settings.rounds)


@functools.lru_cache(maxsize=2)
def _federation(clients: int, alpha: float, seed: int) -> Federation:
    from clients.data import load_federation

    return load_federation(clients=clients, alpha=alpha, seed=seed)


def run_one(task: Task, settings: SweepSettings) -> SeedResult:
    """Train one federation from ``task.seed``; its final test accuracy (reproducible)."""
    from clients.demo import baselines
    from clients.dist_dp import DistributedDPConfig
    from secagg.params import Parameters

    warnings.filterwarnings("ignore", module="opacus")
    started = time.monotonic()
    federation = _federation(settings.clients, settings.alpha, settings.data_seed)
    config = config_of(task, settings)
    if isinstance(config, DistributedDPConfig):
        curve = baselines.distributed(
            federation, config, Parameters.default(), model_seed=task.seed
        )
    else:
        curve = baselines.federated(federation, config, model_seed=task.seed)
    return SeedResult(
        seed=task.seed,
        accuracy=curve.accuracy[-1],
        rounds=len(curve.accuracy),
        seconds=time.monotonic() - started,
    )


def _run_in_worker(task: Task, settings: SweepSettings) -> SeedResult:
    import torch

    torch.set_num_threads(1)  # one core per worker process
    return run_one(task, settings)


def sweep(tasks: list[Task], settings: SweepSettings, *, jobs: int = 1) -> dict[Task, SeedResult]:
    """Run every task (``jobs`` worker processes, spawned, when > 1); results by task."""
    results: dict[Task, SeedResult] = {}

    def done(task: Task, result: SeedResult) -> None:
        results[task] = result
        print(
            f"dp-sweep: {task.mode:11s} eps {task.epsilon:g} seed {task.seed}: "
            f"accuracy {result.accuracy:.3f} ({result.seconds:.0f}s) "
            f"[{len(results)}/{len(tasks)}]",
            flush=True,
        )

    if jobs <= 1:
        for task in tasks:
            done(task, run_one(task, settings))
        return results
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {task: pool.submit(_run_in_worker, task, settings) for task in tasks}
        for task, future in futures.items():
            done(task, future.result())
    return results


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _seeds(text: str) -> list[int]:
    """``1000-1009`` or ``1,2,5`` (or both, comma-separated)."""
    seeds: list[int] = []
    for item in filter(None, text.split(",")):
        low, _, high = item.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg dp-sweep``."""
    first, last = DEFAULT_SEEDS[0], DEFAULT_SEEDS[-1]
    parser.add_argument("--out", type=Path, default=Path("dp-sweep-out"), help="output directory")
    parser.add_argument("--eps", type=_floats, default=list(DEFAULT_EPSILONS), help="e.g. 1,3,8")
    parser.add_argument(
        "--seeds",
        type=_seeds,
        default=list(DEFAULT_SEEDS),
        help=f"noise and model seeds, e.g. {first}-{last} (the default; tuned on "
        f"noise seeds {TUNING_SEEDS['noise_seed']}, model seeds {TUNING_SEEDS['model_seed']})",
    )
    parser.add_argument(
        "--modes", type=lambda s: s.split(","), default=list(MODES), help="local,distributed"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--rounds", type=int, help="default: each configuration's own")
    parser.add_argument("--delta", type=float, default=1e-5)


def run(args: argparse.Namespace) -> int:
    """Run the sweep and write its table; returns 0."""
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.seeds or not args.eps:
        raise ConfigError(f"dp-sweep needs modes from {MODES}, seeds and epsilons ({unknown})")
    settings = SweepSettings(delta=args.delta, rounds=args.rounds)
    tasks = [Task(m, e, s) for m in args.modes for e in args.eps for s in args.seeds]
    print(
        f"secagg dp-sweep: {len(tasks)} runs ({', '.join(args.modes)}; epsilon "
        f"{', '.join(f'{e:g}' for e in args.eps)}; {len(args.seeds)} seeds), "
        f"{args.jobs} job(s); seeded measurement runs, no privacy",
        flush=True,
    )
    started = time.monotonic()
    results = sweep(tasks, settings, jobs=args.jobs)
    configs = {(t.mode, t.epsilon): config_of(t, settings) for t in tasks}
    table = write_sweep(
        args.out,
        results={(t.mode, t.epsilon, t.seed): r for t, r in results.items()},
        configs=configs,
        settings=settings,
        tuning_seeds=TUNING_SEEDS,
        elapsed=time.monotonic() - started,
        jobs=args.jobs,
    )
    print(table)
    print(f"wrote {args.out / 'sweep.json'}, sweep.md, sweep.png")
    return 0
