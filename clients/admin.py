"""``secagg admin``: operator tools (they cannot bypass the key holders' policy).

``rotate-key`` opens the ceremony of the next key epoch: key holders run it while rounds
continue under the current key; the first round opened after every key holder endorsed
the new key uses it, and key holders then refuse decryption under the old one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clients.connection import Connection
from secagg import constants as C
from secagg.proto import service_pb2 as pb
from secagg.rpc.transport import identity


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg admin`` (request-decryption, status, rotate-key)."""
    parser.add_argument("action", choices=["request-decryption", "status", "rotate-key"])
    parser.add_argument("deployment", type=Path)
    parser.add_argument("--round", type=int, default=0)
    parser.add_argument("--clients", nargs="*", default=[])


def run(args: argparse.Namespace) -> int:
    """Print the result as JSON; exit 0."""
    conn = Connection(identity(args.deployment, "admin"))
    if args.action == "rotate-key":
        rotated = conn.call(conn.stub.AdminRotateKey, pb.Empty())
        print(json.dumps({"ceremony_epoch": rotated.epoch}))
        return 0
    if args.action == "status":
        info = conn.call(conn.stub.GetRound, pb.Empty())
        print(
            json.dumps(
                {
                    "round": info.round,
                    "state": pb.RoundState.Name(info.state),
                    "accepted_uploads": info.accepted_uploads,
                    "status": info.status,
                }
            )
        )
        return 0
    result = conn.call(
        conn.stub.AdminRequestDecryption,
        pb.AdminDecryptionRequest(round=args.round, client_ids=args.clients),
        timeout=C.RPC_TIMEOUT_SECONDS + 5,
    )
    print(
        json.dumps(
            {
                "released": result.released,
                "refusals": [
                    {"keyholder": r.keyholder, "reason": r.reason} for r in result.refusals
                ],
            }
        )
    )
    return 0
