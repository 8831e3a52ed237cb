"""``python -m secagg_flower_example.initial_model OUT [--seed N]``: round 1's model.

Writes the example's initial model as a ModelBlob for ``secagg init --initial-model OUT``
(the ServerApp starts from the same seed) and prints the model length to give
``secagg init --model-length``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .task import write_initial_model


def main() -> None:
    """Write the blob; print ``model length N``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="the run config's seed")
    args = parser.parse_args()
    print(f"model length {write_initial_model(args.out, args.seed)}")


if __name__ == "__main__":
    main()
