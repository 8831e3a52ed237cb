"""The Flower server's view of ``secagg serve``: which round collects, and verified releases.

Flower round ``r`` is secagg round ``r``. ``secagg serve`` opens round 1 once the key
ceremony is done and round ``r + 1`` in the same transaction as the release of round
``r``; the strategy mixin waits for round ``r`` to collect before it sends train messages
(:meth:`ReleasedModels.wait_collecting`) and for its release before it aggregates
(:meth:`ReleasedModels.wait_release`). The roster's ``rounds`` bounds the Flower run.

Security
--------
A release is believed only after :func:`~secagg.protocol.certificates.verify_release`
(the server's signature and ``t`` key holders' endorsements of the round, aggregate and
model hash: at least one endorser is honest and combined the partials itself), and the
model only if its bytes hash to the endorsed ``model_hash`` (checked by the download)
and decode as round ``r + 1``'s model of the roster's length. The key holders decided
whether to decrypt by their own policy checks; the Flower server takes no part in that.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from clients.connection import Connection, verify_release
from secagg import constants as C
from secagg.encoding import F64
from secagg.errors import ReleaseTimeout, WrongRound
from secagg.proto import service_pb2 as pb
from secagg.protocol.model_blob import decode_model_in_place, model_blob_size
from secagg.protocol.roster import Roster
from secagg.protocol.statements import ReleaseStatement
from secagg.rpc.transport import identity

log = logging.getLogger("flwr.secagg")  # shown in Flower's own log streams
_REPORT_SECONDS = 10.0


@dataclass(frozen=True)
class VerifiedRelease:
    """A round's release after :meth:`ReleasedModels.wait_release` checked it: its
    endorsed statement and the model (the weighted mean) whose bytes hash to
    ``statement.model_hash``, the next round's global model."""

    statement: ReleaseStatement
    model: F64


class ReleasedModels:
    """Rounds and releases of one deployment, seen as ``party`` (default: the operator).

    Parameters
    ----------
    deployment
        The deployment directory (roster, CA, the party's keys).
    party
        The roster name whose certificate the connection presents.
    address
        Where to reach ``secagg serve`` (default: the roster's address).
    """

    def __init__(self, deployment: Path, party: str = "admin", address: str | None = None) -> None:
        me = identity(Path(deployment), party)
        self.roster: Roster = me.roster
        self.conn = Connection(me, address)

    def round_info(self) -> pb.RoundInfo:
        """``secagg serve``'s current round."""
        info: pb.RoundInfo = self.conn.call(self.conn.stub.GetRound, pb.Empty())
        return info

    def wait_collecting(self, round_number: int, *, timeout: float) -> pb.RoundInfo:
        """Round ``round_number`` once it collects uploads.

        Raises
        ------
        WrongRound
            The server is past that round (or finished): the Flower and secagg rounds
            no longer match.
        ReleaseTimeout
            The round did not open within ``timeout`` seconds (e.g. the key ceremony).
        """
        give_up = time.monotonic() + timeout
        while True:
            info = self.round_info()
            if info.round == round_number and info.state == pb.COLLECTING:
                return info
            if info.state == pb.FINISHED or info.round > round_number:
                raise WrongRound(
                    f"Flower round {round_number}: secagg serve is in round {info.round} "
                    f"({pb.RoundState.Name(info.state)}); the roster allows "
                    f"{self.roster.policy.rounds} rounds"
                )
            if time.monotonic() > give_up:
                raise ReleaseTimeout(f"round {round_number} did not open in {timeout:.0f} s")
            time.sleep(C.POLL_SECONDS)

    def wait_release(self, round_number: int, *, timeout: float) -> VerifiedRelease:
        """The release of ``round_number`` and its model (the weighted mean of its
        uploads), verified (see the module docstring).

        Raises
        ------
        ReleaseTimeout
            No release within ``timeout`` seconds (the round's status is in the message).
        SignatureInvalid, EndorsementMissing
            The release does not verify.
        WrongRound
            The release served (validly endorsed) is another round's.
        EncodingError
            The model does not decode as the round's successor model.
        """
        give_up = time.monotonic() + timeout
        report = time.monotonic() + _REPORT_SECONDS
        while True:
            release = self._release(round_number)
            if release is not None:
                break
            if time.monotonic() > report:
                log.info("round %d: waiting for the release: %s", round_number, self._status())
                report = time.monotonic() + _REPORT_SECONDS
            if time.monotonic() > give_up:
                raise ReleaseTimeout(
                    f"round {round_number} was not released in {timeout:.0f} s: {self._status()}"
                )
            time.sleep(C.POLL_SECONDS)
        statement = verify_release(release, self.roster)
        if statement.round != round_number:
            raise WrongRound(f"asked for round {round_number}'s release, got {statement.round}'s")
        length = self.roster.policy.model_length
        blob = self.conn.download(
            statement.model_hash, size=model_blob_size(round_number + 1, length)
        )
        model = decode_model_in_place(blob, round_number=round_number + 1, length=length)
        return VerifiedRelease(statement, model)

    def _release(self, round_number: int) -> pb.Release | None:
        try:
            release: pb.Release = self.conn.call(
                self.conn.stub.GetRelease, pb.ReleaseQuery(round=round_number)
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return release

    def _status(self) -> str:
        info = self.round_info()
        return f"round {info.round} {pb.RoundState.Name(info.state)}: {info.status}"
