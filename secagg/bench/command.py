"""The ``secagg bench`` command: options, the run over sizes, the JSON report."""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from secagg.bench.measure import log, machine_info, one_core, timed
from secagg.bench.report import format_report, verdicts
from secagg.bench.results import Json, Phase, SizeResult
from secagg.bench.systems import (
    CKKS_COEFF_MOD_BIT_SIZES,
    CKKS_POLY_MODULUS_DEGREE,
    CKKS_SCALE_BITS,
    F64,
    bench_ckks,
    bench_plaintext,
    bench_secagg,
    ckks_context,
)
from secagg.dkg import dealerless_keygen
from secagg.errors import SecAggError
from secagg.keys import KeySet
from secagg.params import Parameters

VALUE_RANGE = 8.0
MAX_CLIENT_WEIGHT = 1000


def _client_data(seed: int, size: int, clients: int, max_weight: int) -> tuple[F64, list[int]]:
    rng = np.random.default_rng([seed, size])
    vectors = rng.uniform(-VALUE_RANGE, VALUE_RANGE, size=(clients, size))
    weights = [int(w) for w in rng.integers(1, max_weight + 1, size=clients)]
    return vectors, weights


def _bench_size(
    size: int, args: argparse.Namespace, keys: KeySet, secret_ctx: Any, max_weight: int
) -> SizeResult:
    vectors, weights = _client_data(args.seed, size, args.clients, max_weight)
    log(f"{size:,} parameters x {args.clients} clients: plaintext")
    plaintext, reference = bench_plaintext(vectors, weights, args.repeats)
    log(f"{size:,} parameters: secagg")
    secagg_result = bench_secagg(vectors, weights, keys, args.repeats, reference)
    gc.collect()
    log(f"{size:,} parameters: TenSEAL CKKS")
    ckks_result = bench_ckks(vectors, weights, secret_ctx, args.repeats, reference)
    gc.collect()
    return SizeResult(size, weights, secagg_result, ckks_result, plaintext)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


class DefaultCount(int):
    """A party count left at its default: ``--scale`` replaces it with its own default."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser`` (used by ``secagg bench``).

    Parameters
    ----------
    parser
        The parser (or sub-command parser) to extend.
    """
    parser.add_argument(
        "--sizes",
        type=_positive_int,
        nargs="+",
        default=[100_000, 1_000_000],
        metavar="N",
        help="vector lengths (model parameters) to measure (default: 100000 1000000)",
    )
    for flag, what, default, with_scale in (
        ("--clients", "clients", 10, 4),
        ("--keyholders", "key holders n", 5, 3),
        ("--threshold", "decryption threshold t", 3, 2),
    ):
        parser.add_argument(
            flag,
            type=_positive_int,
            default=DefaultCount(default),
            help=f"{what} (default: {default}; {with_scale} with --scale)",
        )
    parser.add_argument(
        "--repeats", type=_positive_int, default=3, help="runs per timed phase (default: 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random vectors")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the process to one CPU while measuring",
    )
    scale = parser.add_argument_group(
        "scale benchmark (--scale): real processes on loopback, one round per size"
    )
    scale.add_argument(
        "--scale",
        action="store_true",
        help="run `secagg init/serve/keyholder/client` and measure peak RSS and phase times",
    )
    scale.add_argument(
        "--scale-sizes",
        type=_positive_int,
        nargs="+",
        default=[1_000_000, 10_000_000],
        metavar="N",
        help="model sizes of --scale (default: 1000000 10000000)",
    )
    scale.add_argument("--large", action="store_true", help="--scale also at 100000000")
    scale.add_argument(
        "--stagger",
        action="store_true",
        help="start each client once the previous one's upload is accepted",
    )
    scale.add_argument(
        "--workdir", type=Path, metavar="DIR", help="where the deployments go (default: $TMPDIR)"
    )
    scale.add_argument(
        "--keep", action="store_true", help="keep the deployments and logs (tens of GB at 100M)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; print the table, optionally the JSON.

    Parameters
    ----------
    args
        Options from :func:`add_arguments`.

    Returns
    -------
    int
        0 on completion (failed targets are reported, not signalled), 2 for invalid
        options, 1 if secagg raised or the JSON could not be written.

    Notes
    -----
    Key generation runs every key holder in this process: benchmark keys, never real ones.
    With ``--scale``, :func:`secagg.bench.scale.run` runs instead (real processes).
    """
    if args.scale:
        from secagg.bench import scale  # imports gRPC only when asked for

        return scale.run(args)
    params = Parameters.default()
    if not 1 <= args.threshold <= args.keyholders <= params.max_keyholders:
        print(
            f"secagg bench: need 1 <= threshold <= keyholders <= {params.max_keyholders}",
            file=sys.stderr,
        )
        return 2
    max_weight = min(MAX_CLIENT_WEIGHT, params.max_total_weight // args.clients)
    if max_weight < 1:
        print("secagg bench: too many clients for the weight budget", file=sys.stderr)
        return 2
    sizes = sorted(set(args.sizes))
    report: Json = {
        "benchmark": "secagg bench",
        "schema_version": 1,
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
        "config": {
            "sizes": sizes,
            "clients": args.clients,
            "keyholders": args.keyholders,
            "threshold": args.threshold,
            "repeats": args.repeats,
            "seed": args.seed,
            "max_weight": max_weight,
            "value_range": [-VALUE_RANGE, VALUE_RANGE],
            "statistic": "median",
        },
        "machine": machine_info(),
        "secagg_parameters": params.describe(),
        "ckks_parameters": {
            "poly_modulus_degree": CKKS_POLY_MODULUS_DEGREE,
            "coeff_mod_bit_sizes": list(CKKS_COEFF_MOD_BIT_SIZES),
            "global_scale": f"2^{CKKS_SCALE_BITS}",
            "galois_keys": False,
            "slots_per_ciphertext": CKKS_POLY_MODULUS_DEGREE // 2,
        },
    }
    try:
        with one_core(args.pin) as threading_info:
            report["threading"] = threading_info
            log(f"key generation ({args.threshold}-of-{args.keyholders})")
            samples, keys = timed(
                lambda: dealerless_keygen(n=args.keyholders, t=args.threshold, params=params),
                args.repeats,
            )
            ckks_samples, secret_ctx = timed(ckks_context, args.repeats)
            report["keygen"] = {
                "secagg": Phase(tuple(samples), 1).to_json(),
                "ckks": Phase(tuple(ckks_samples), 1).to_json(),
            }
            results = [_bench_size(s, args, keys, secret_ctx, max_weight) for s in sizes]
    except SecAggError as exc:
        print(f"secagg bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    report["results"] = [r.to_json() for r in results]
    report["verdicts"] = verdicts(results[-1])
    print(format_report(report, results))
    return write_json(args.json, report)


def write_json(path: Path | None, report: Json) -> int:
    """Write ``report`` to ``path`` (``--json``; None: nothing); 0, or 1 if it failed."""
    if path is None:
        return 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"secagg bench: cannot write {path}: {exc}", file=sys.stderr)
        return 1
    log(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m secagg.bench``.

    Parameters
    ----------
    argv
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        The exit status (see :func:`run`).
    """
    parser = argparse.ArgumentParser(
        prog="secagg bench",
        description="Benchmark secagg against TenSEAL CKKS (NVIDIA FLARE style) and numpy.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
