"""The ``secagg`` command: params, bench, demo, init, serve, keyholder, client, admin, audit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
    from . import bench, demo

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

    d = sub.add_parser("demo", help="encrypted end-to-end demo: real processes over mTLS")
    demo.add_arguments(d)
    d.set_defaults(func=demo.run)
    i = sub.add_parser("init", help="create a deployment directory (CA, keys, roster)")
    i.add_argument("directory", type=Path)
    i.add_argument("--clients", type=int, required=True)
    i.add_argument("--keyholders", type=int, required=True)
    i.add_argument("--threshold", type=int, required=True)
    i.add_argument("--min-contributors", type=int)
    i.add_argument("--max-weight-share", type=float, default=1.0)
    i.add_argument("--rounds", type=int, default=3)
    i.add_argument("--round-timeout", type=float, default=60.0)
    i.add_argument("--model-length", type=int, default=1000)
    i.add_argument("--address", default="127.0.0.1:50051")
    i.add_argument(
        "--epsilon-budget", type=float, default=3.0, help="largest epsilon a client may report"
    )
    i.set_defaults(func=_init)

    a = sub.add_parser("audit", help="verify a deployment's audit log offline")
    a.add_argument("action", choices=["verify"])
    a.add_argument("directory", type=Path, help="deployment directory, or a demo's output")
    a.add_argument("--json", action="store_true", help="machine-readable report")
    a.set_defaults(func=_audit)

    from clients import admin, client, keyholder
    from server import main as server_main

    for name, module, text in [
        ("serve", server_main, "run the aggregation server"),
        ("keyholder", keyholder, "run a key holder's agent"),
        ("client", client, "run a training client"),
        ("admin", admin, "operator tools"),
    ]:
        sp = sub.add_parser(name, help=text)
        module.add_arguments(sp)
        sp.set_defaults(func=module.run)
    return parser


def _audit(args: argparse.Namespace) -> int:
    from .audit_verify import main as verify_main

    return verify_main(args.directory, as_json=args.json)


def _init(args: argparse.Namespace) -> int:
    from .deployment import init_deployment

    roster = init_deployment(
        args.directory,
        clients=args.clients,
        keyholders=args.keyholders,
        threshold=args.threshold,
        min_contributors=args.min_contributors,
        max_weight_share=args.max_weight_share,
        rounds=args.rounds,
        round_timeout_seconds=args.round_timeout,
        model_length=args.model_length,
        server_address=args.address,
        epsilon_budget=args.epsilon_budget,
    )
    print(
        f"deployment {roster.deployment_id} in {args.directory}: {len(roster.clients)} clients, "
        f"{roster.policy.keyholders} key holders (threshold {roster.policy.threshold})"
    )
    return 0


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
