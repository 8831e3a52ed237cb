"""``secagg keyholder``: a key holder's agent (key ceremony, then policy-checked decryption).

The agent keeps its Shamir share encrypted at rest (:mod:`clients.keyholder.storage`),
runs the key ceremony of every key epoch the server opens (``secagg admin rotate-key``),
in the background after the first (:mod:`clients.keyholder.ceremony`,
:mod:`clients.keyholder.rotation`); an aborted ceremony exits with status 3, naming the
culprits. It polls the server for decryption tasks and answers each with a signed
partial decryption or a signed refusal (:mod:`clients.keyholder.agent`) after the checks
of :mod:`clients.keyholder.checks`.

What it enforces
----------------
* The shared policy on client-signed contributions: at least ``min_contributors``
  distinct clients on one global model (round 1: the roster's initial model), no
  ciphertext listed twice (by hash, and by content against re-encoded copies), every
  weight within ``min_weight..max_client_weight``, no client above ``max_weight_share``
  of the total weight, every reported ε within budget, a round within ``policy.rounds``.
* One aggregate per round, without trusting the server: it locks a round to one
  aggregate (durably) and decrypts only with a lock certificate of ``ceil((n + t) / 2)``
  key holders (:mod:`secagg.protocol.certificates`), which no two aggregates of a round
  can both have while at most ``t - 1`` key holders collude.
* Its own durable record (:mod:`clients.keyholder.record`): no ciphertext it already
  decrypted over in another round or aggregate (a replay); at most one partial per
  (round, aggregate, quorum) — a repeated task gets the stored bytes, never fresh
  flooding noise; a lifetime decryption budget per key share
  (:mod:`clients.keyholder.budget`).
* An aggregate equal to the weighted sum of the listed ciphertexts, recomputed here.
* Models it endorses: it combines every quorum's partials itself
  (:mod:`clients.keyholder.endorse`); clients accept only models ``t`` key holders
  endorsed.

What it does not
----------------
It cannot tell a well-formed ciphertext from a crafted one (no zero-knowledge proofs):
admit only trusted clients. Its record is only as good as its state directory.

Its share's passphrase is required: from ``SECAGG_KEYHOLDER_PASSPHRASE`` (or the variable
``--passphrase-env`` names) or ``--passphrase-file PATH`` outside the key holder's own
directory. ``--reseal-share`` converts a share an older version sealed under
``storage.key`` beside it, then exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from clients.keyholder.agent import KeyHolder
from clients.keyholder.storage import read_passphrase, reseal_from_key_file
from secagg import constants as C
from secagg.protocol.layout import DeploymentLayout
from secagg.rpc.transport import identity

__all__ = ["KeyHolder", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg keyholder``."""
    parser.add_argument("deployment", type=Path)
    parser.add_argument("--index", type=int, required=True, help="key-holder index (1..n)")
    parser.add_argument(
        "--passphrase-env",
        help=f"read the share passphrase from this variable (default {C.KEYHOLDER_PASSPHRASE_ENV})",
    )
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        help="read the share passphrase from this file (not inside the key holder's directory)",
    )
    parser.add_argument(
        "--reseal-share",
        action="store_true",
        help="re-seal a share an older version sealed under storage.key, delete it, and exit",
    )


def run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT."""
    me = identity(args.deployment, f"kh{args.index}")
    layout = DeploymentLayout(args.deployment)
    own_dirs = (layout.party_dir(me.name, "keyholder"), layout.state_dir(me.name, "keyholder"))
    passphrase = read_passphrase(
        environ=os.environ,
        env_var=args.passphrase_env,
        passphrase_file=args.passphrase_file,
        forbidden_dirs=own_dirs,
    )
    if args.reseal_share:
        reseal_from_key_file(*own_dirs, passphrase=passphrase)
        logging.info("key holder %d: share re-sealed under the passphrase", args.index)
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    KeyHolder(me, passphrase=passphrase, stop=stop).run()
    return 0
