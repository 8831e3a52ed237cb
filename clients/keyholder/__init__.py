"""``secagg keyholder``: a key holder's agent (key ceremony, then policy-checked decryption).

The agent keeps its Shamir share encrypted at rest (:mod:`clients.keyholder.storage`),
runs the dealerless key ceremony through the server relay once
(:mod:`clients.keyholder.ceremony`), then polls the server for decryption tasks and
answers each with a signed partial decryption or a signed refusal
(:mod:`clients.keyholder.agent`) after the checks of :mod:`clients.keyholder.checks`:
signed contributions that pass the shared policy (at least ``min_contributors`` distinct
clients on one global model, no client above ``max_weight_share`` of the total weight,
every reported ε within budget), a closed round that was neither decrypted with another
aggregate nor released, and an aggregate equal to the recomputed weighted sum.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from clients.keyholder.agent import KeyHolder
from secagg.rpc.transport import identity

__all__ = ["KeyHolder", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg keyholder``."""
    parser.add_argument("deployment", type=Path)
    parser.add_argument("--index", type=int, required=True, help="key-holder index (1..n)")
    parser.add_argument("--passphrase-env", help="read the share passphrase from this variable")


def run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s kh{args.index} %(levelname)s %(message)s"
    )
    me = identity(args.deployment, f"kh{args.index}")
    passphrase = os.environ[args.passphrase_env].encode() if args.passphrase_env else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    KeyHolder(me, passphrase=passphrase, stop=stop).run()
    return 0
