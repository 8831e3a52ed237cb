"""``secagg admin``: operator tools (they cannot bypass the key holders' policy).

``rotate-key`` opens the ceremony of the next key epoch: key holders run it while rounds
continue under the current key; the first round opened after every key holder endorsed
the new key uses it, and key holders then refuse decryption under the old one.

A server that cannot be reached within ``--connect-timeout`` seconds (refused, silent,
or a failed handshake) gets one line on stderr, ``secagg admin: cannot reach server at
ADDRESS: WHY``, and exit status :data:`~secagg.constants.EXIT_SERVER_UNREACHABLE`; a call
the server refuses gets one line and exit status 1. No traceback either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc

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
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=C.CONNECT_TIMEOUT_SECONDS,
        help="seconds the server may take to answer the first contact "
        f"(default {C.CONNECT_TIMEOUT_SECONDS:g})",
    )


def run(args: argparse.Namespace) -> int:
    """Print the result as JSON; exit 0 (see the module docstring for failures)."""
    conn = Connection(identity(args.deployment, "admin"))
    try:
        conn.probe(timeout=args.connect_timeout)
        return _act(conn, args)
    except grpc.RpcError as exc:
        timeout = None if conn.connected else args.connect_timeout  # the probe's, or a call's
        print(conn.failure_line(exc, timeout=timeout), file=sys.stderr)
        return conn.exit_status(exc)
    finally:
        conn.close()


def _act(conn: Connection, args: argparse.Namespace) -> int:
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
