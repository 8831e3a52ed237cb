"""The ``secagg`` command line: ``params``, ``bench`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import sys

from . import constants as C
from .errors import SecAggError


def _params(args: argparse.Namespace) -> int:
    from .params import Parameters

    params = Parameters.calculate(
        value_bound=args.value_bound,
        max_total_weight=args.max_total_weight,
        precision=args.precision,
        statistical_security=args.statistical_security,
        max_keyholders=args.max_keyholders,
    )
    print(json.dumps(params.describe(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``secagg`` command."""
    from . import bench, demo_local

    parser = argparse.ArgumentParser(prog="secagg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("params", help="compute and print a parameter set")
    p.add_argument("--value-bound", type=float, default=C.DEFAULT_VALUE_BOUND)
    p.add_argument("--max-total-weight", type=int, default=C.DEFAULT_MAX_TOTAL_WEIGHT)
    p.add_argument("--precision", type=float, default=C.DEFAULT_PRECISION)
    p.add_argument("--statistical-security", type=int, default=C.DEFAULT_STATISTICAL_SECURITY)
    p.add_argument("--max-keyholders", type=int, default=C.DEFAULT_MAX_KEYHOLDERS)
    p.set_defaults(func=_params)

    b = sub.add_parser("bench", help="secagg vs TenSEAL CKKS (FLARE-style) vs plaintext")
    bench.add_arguments(b)
    b.set_defaults(func=bench.run)

    d = sub.add_parser("demo", help="in-process encrypted federated averaging on load_digits")
    demo_local.add_arguments(d)
    d.set_defaults(func=demo_local.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``secagg`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SecAggError as exc:
        print(f"secagg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
