"""The ``secagg`` command: the library's own commands plus those registered by others.

The library registers ``params``, ``init``, ``bench`` and ``audit``. Every other command
(``serve``, ``keyholder``, ``client``, ``admin``, ``demo``) is registered by the package
that implements it, through the ``secagg.commands`` entry-point group: the value names a
module with ``add_arguments(parser)``, ``run(args) -> int`` and a one-line docstring.
The library therefore never imports an application.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from secagg import bench, logging_setup
from secagg import constants as C
from secagg.errors import SecAggError
from secagg.protocol.hosts import assignment
from secagg.protocol.roster import Policy

COMMAND_GROUP = "secagg.commands"


def _params(args: argparse.Namespace) -> int:
    from secagg.params import Parameters

    params = Parameters.calculate(
        value_bound=args.value_bound,
        max_total_weight=args.max_total_weight,
        precision=args.precision,
        statistical_security=args.statistical_security,
        max_keyholders=args.max_keyholders,
        decryption_budget_bits=args.decryption_budget_bits,
    )
    print(json.dumps(params.describe(), indent=2))
    return 0


def _audit(args: argparse.Namespace) -> int:
    from secagg.protocol.audit_verify import main as verify_main

    return verify_main(args.directory, as_json=args.json, data=args.data, witnesses=args.witness)


#: ``init_deployment`` keyword <- ``secagg init`` option (argparse destination).
_INIT_OPTIONS = {
    "clients": "clients",
    "keyholders": "keyholders",
    "threshold": "threshold",
    "min_contributors": "min_contributors",
    "max_weight_share": "max_weight_share",
    "rounds": "rounds",
    "round_timeout_seconds": "round_timeout",
    "transfer_timeout_seconds": "transfer_timeout",
    "max_upload_bytes": "max_upload_bytes",
    "retain_rounds": "retain_rounds",
    "model_length": "model_length",
    "server_address": "address",
    "epsilon_budget": "epsilon_budget",
    "min_weight": "min_weight",
    "max_client_weight": "max_client_weight",
    "require_dp": "require_dp",
    "hosts": "host",
    "resolve": "resolve",
}


def _init(args: argparse.Namespace) -> int:
    from secagg.protocol.deployment import init_deployment
    from secagg.protocol.model_blob import decode_model

    options = {keyword: getattr(args, dest) for keyword, dest in _INIT_OPTIONS.items()}
    if args.initial_model is not None:
        _, options["initial_model"] = decode_model(
            args.initial_model.read_bytes(), length=args.model_length
        )
    roster = init_deployment(args.directory, **options)
    print(
        f"deployment {roster.deployment_id} in {args.directory}: {len(roster.clients)} clients, "
        f"{roster.policy.keyholders} key holders (threshold {roster.policy.threshold})"
    )
    return 0


def _library_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("params", help="compute and print a parameter set")
    p.add_argument("--value-bound", type=float, default=C.DEFAULT_VALUE_BOUND)
    p.add_argument("--max-total-weight", type=int, default=C.DEFAULT_MAX_TOTAL_WEIGHT)
    p.add_argument("--precision", type=float, default=C.DEFAULT_PRECISION)
    p.add_argument("--statistical-security", type=int, default=C.DEFAULT_STATISTICAL_SECURITY)
    p.add_argument("--max-keyholders", type=int, default=C.DEFAULT_MAX_KEYHOLDERS)
    p.add_argument(
        "--decryption-budget-bits",
        type=int,
        default=C.DEFAULT_DECRYPTION_BUDGET_BITS,
        help="a key share decrypts at most 2^BITS coefficients in its lifetime "
        "(the flooding grows by one bit per bit)",
    )
    p.set_defaults(func=_params)

    b = sub.add_parser("bench", help="secagg vs TenSEAL CKKS (FLARE-style) vs plaintext")
    bench.add_arguments(b)
    b.set_defaults(func=bench.run)

    i = sub.add_parser("init", help="create a deployment directory (CA, keys, roster)")
    i.add_argument("directory", type=Path)
    i.add_argument("--clients", type=int, required=True)
    i.add_argument("--keyholders", type=int, required=True)
    i.add_argument("--threshold", type=int, required=True)
    i.add_argument("--min-contributors", type=int, help="default: min(2, clients)")
    i.add_argument("--max-weight-share", type=float, default=Policy.default_of("max_weight_share"))
    i.add_argument("--rounds", type=int, default=Policy.default_of("rounds"))
    i.add_argument(
        "--round-timeout",
        type=float,
        help="seconds a round collects uploads; default: derived from the model size "
        f"({C.ROUND_SECONDS_PER_MB:g} s per MB of one upload, at least "
        f"{C.DEFAULT_ROUND_TIMEOUT_SECONDS:g})",
    )
    i.add_argument(
        "--transfer-timeout",
        type=float,
        help="deadline of one streaming transfer (s); default: derived from the model size "
        f"({C.TRANSFER_SECONDS_PER_MB:g} s per MB, at least {C.TRANSFER_TIMEOUT_SECONDS:g})",
    )
    i.add_argument(
        "--max-upload-bytes",
        type=int,
        help="largest upload the server accepts; default: one upload of the model's size",
    )
    i.add_argument(
        "--retain-rounds",
        type=int,
        default=Policy.default_of("retain_rounds"),
        help="keep the ciphertexts of the last N released rounds, delete older ones "
        "(audit verify then cannot recompute those rounds); 0 (default) keeps all",
    )
    i.add_argument("--model-length", type=int, default=Policy.default_of("model_length"))
    i.add_argument("--address", default=C.DEFAULT_SERVER_ADDRESS)
    i.add_argument(
        "--initial-model",
        type=Path,
        help="round 1's model (ModelBlob file); default zeros. Its SHA-256 goes in the roster",
    )
    i.add_argument(
        "--epsilon-budget",
        type=float,
        default=Policy.default_of("epsilon_budget"),
        help="largest epsilon a client may report",
    )
    i.add_argument(
        "--min-weight",
        type=int,
        default=Policy.default_of("min_weight"),
        help="smallest weight (sample count) one upload may carry",
    )
    i.add_argument(
        "--max-client-weight",
        type=int,
        help="largest weight one upload may carry; default: the weight budget // clients, "
        "so that all clients together always fit",
    )
    i.add_argument(
        "--require-dp",
        action="store_true",
        help="refuse uploads whose signed statement does not claim differential privacy",
    )
    i.add_argument(
        "--host",
        type=assignment,
        action="append",
        default=[],
        metavar="PARTY=NAME",
        help="also name NAME (a DNS name or an IP address) in PARTY's certificate; "
        "repeatable. Without --host server=..., the server's certificate names localhost",
    )
    i.add_argument(
        "--resolve",
        type=assignment,
        action="append",
        default=[],
        metavar="NAME=IP",
        help="every party reaches host NAME at IP (the roster's [hosts]; no DNS); repeatable",
    )
    i.set_defaults(func=_init)

    a = sub.add_parser("audit", help="verify a deployment's audit log offline")
    a.add_argument("action", choices=["verify"])
    a.add_argument("directory", type=Path, help="deployment directory, or a demo's output")
    a.add_argument("--data", type=Path, help="the server's state directory (serve --data)")
    a.add_argument("--json", action="store_true", help="machine-readable report")
    a.add_argument(
        "--witness",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a key holder's witness.json to hold the log to (repeatable; those in DIR are read)",
    )
    a.set_defaults(func=_audit)


def registered_commands() -> dict[str, ModuleType]:
    """Commands registered by installed packages (name -> implementing module)."""
    found: dict[str, ModuleType] = {}
    for ep in entry_points(group=COMMAND_GROUP):
        found[ep.name] = import_module(ep.value)
    return found


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``secagg`` command."""
    parser = argparse.ArgumentParser(prog="secagg", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _library_commands(sub)
    for name, module in sorted(registered_commands().items()):
        help_text = (module.__doc__ or name).strip().split("\n")[0]
        help_text = help_text.removeprefix(f"``secagg {name}``: ").rstrip(".")
        sp = sub.add_parser(name, help=help_text)
        module.add_arguments(sp)
        if name in logging_setup.COMMANDS:
            logging_setup.add_arguments(sp)  # --log-format (issue 14)
        sp.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``secagg`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in logging_setup.COMMANDS:
            logging_setup.configure_command(args, os.environ)  # the process's one log setup
        return int(args.func(args))
    except SecAggError as exc:
        print(f"secagg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
