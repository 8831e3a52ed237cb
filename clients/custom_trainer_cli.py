"""``python -m clients.custom_trainer MODULE:ATTRIBUTE``: size a deployment for a trainer.

Prints the length of the trainer's model vector (what ``secagg init --model-length``
takes) and its layout, and with ``--initial-model FILE`` writes round 1's model as a
``ModelBlob`` for ``secagg init --initial-model``. Exit status 2 and one line on stderr
if the trainer cannot be loaded or built.

Security
--------
Imports and runs the trainer's module, like ``secagg client --trainer``
(:func:`clients.custom_trainer.load_trainer`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clients.custom_trainer import load_trainer
from secagg.errors import SecAggError
from secagg.protocol.model_blob import encode_model


def main(argv: list[str] | None = None) -> int:
    """``python -m clients.custom_trainer MODULE:ATTRIBUTE``: the model length, the layout
    and (``--initial-model FILE``) round 1's model for ``secagg init --initial-model``."""
    parser = argparse.ArgumentParser(
        prog="python -m clients.custom_trainer", description=main.__doc__
    )
    parser.add_argument("trainer", help="MODULE:ATTRIBUTE of a CustomTrainer")
    parser.add_argument("--initial-model", type=Path, help="write round 1's model (ModelBlob)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the initial model")
    parser.add_argument("--length", action="store_true", help="print the model length only")
    args = parser.parse_args(argv)
    try:
        spec = load_trainer(args.trainer)
        vector = spec.model_vector()
        if args.initial_model is not None:
            args.initial_model.write_bytes(encode_model(1, spec.initial_model(args.seed)))
    except SecAggError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.length:
        print(vector.size)
        return 0
    print(f"{args.trainer}: model length {vector.size}\n{vector.describe()}")
    model = f" --initial-model {args.initial_model}" if args.initial_model else ""
    print(f"create a deployment for it: secagg init DIR --model-length {vector.size}{model} ...")
    return 0
