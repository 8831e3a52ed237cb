"""Folding client uploads into a round's accumulator while the round collects.

While it has no task, the key holder asks the server which uploads the current round
accepted since it last looked (``GetAcceptedUploads``), checks each contribution's
client signature against the roster, streams the upload (``DownloadChunked``), and folds
it, chunk by chunk, into the round's :class:`~secagg.accumulator.ChunkedAggregator`, a
file in ``<state dir>/folds/``. When the round closes, the LOCK task finds the sum
nearly done: the work left is O(one upload), not O(clients x model)
(:func:`clients.keyholder.checks.recompute_aggregate`).

An accumulator is a cache, not a record: it lives as long as the agent (a restart
starts over from the task's list) and is removed once the round is past or endorsed
(:meth:`Folds.prune`, :meth:`Folds.drop`).

Security
--------
Nothing the server says is trusted. A listed contribution is folded only with a valid
client signature; the upload's head must have the signed ``ciphertext_hash`` as its
digest (it covers every chunk), be under a key this key holder holds a share of, and
every chunk is checked against the head as it is folded. What is locked or decrypted is
decided by the task's contributor set alone: an upload the server listed but the task
does not is never summed in (the fold is rebuilt), one the task lists but the server
did not is folded then. A lying list only wastes work.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from clients.connection import Connection
from clients.keyholder.aggregates import FOLDS_DIR, aggregate_path
from clients.keyholder.epochs import KeyShares
from secagg import constants as C
from secagg.accumulator import ChunkedAggregator
from secagg.chunked import VectorHead, checked_chunks
from secagg.errors import AggregateMismatch, InvalidCiphertext, InvalidKeyMaterial, SecAggError
from secagg.params import Parameters
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Roster
from secagg.protocol.statements import UploadStatement

log = logging.getLogger("secagg.keyholder")
_ROUND_FILE = re.compile(r"r(\d+)[.-]")


def served(conn: Connection, digest: bytes, error: type[SecAggError], what: str) -> Iterator[bytes]:
    """``conn.download_chunked(digest)``; a server that does not serve it raises ``error``."""
    try:
        yield from conn.download_chunked(digest)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise error(f"the server does not serve {what}") from None
        raise


@dataclass(frozen=True)
class FoldedUpload:
    """What a fold holds of one upload: who signed which ciphertext, with which weight."""

    client_id: str
    ciphertext_hash: bytes
    weight: int

    @classmethod
    def of(cls, upload: UploadStatement) -> FoldedUpload:
        """The signed fields of ``upload`` that the sum depends on."""
        return cls(upload.client_id, upload.ciphertext_hash, upload.weight)


def fold_upload(
    conn: Connection, params: Parameters, acc: ChunkedAggregator, upload: UploadStatement
) -> None:
    """Stream ``upload``'s ciphertext from the server and fold it into ``acc`` (with its weight).

    Raises
    ------
    AggregateMismatch
        The server does not serve it, or its head is not the ciphertext the client signed.
    InvalidKeyMaterial
        It is not under the accumulator's key.
    InvalidCiphertext
        A bad head, a length that is not the model's, a bad, missing or extra chunk
        (``acc`` is then broken).
    WeightBudgetExceeded
        Its weight does not fit (nothing folded).
    """
    who = f"{upload.client_id}'s upload"
    stream = served(conn, upload.ciphertext_hash, AggregateMismatch, who)
    first = next(stream, None)
    if first is None:
        raise AggregateMismatch(f"the server sent nothing of {who}")
    head = VectorHead.from_bytes(first, params)
    if head.digest != upload.ciphertext_hash:
        raise AggregateMismatch(f"{who} as served is not the ciphertext the client signed")
    if head.public_key_id != acc.public_key_id:
        raise InvalidKeyMaterial(f"{who} is not under the key the round is decrypted under")
    if head.length != acc.length:
        raise InvalidCiphertext(f"{who} has length {head.length}, the model {acc.length}")
    acc.add(checked_chunks(head, stream), upload.weight)


class RoundFold:
    """One round's accumulator (a file) and the uploads folded into it."""

    def __init__(
        self,
        path: Path,
        params: Parameters,
        *,
        round_number: int,
        public_key_id: bytes,
        length: int,
    ) -> None:
        self.path = path
        self.params = params
        self.round = round_number
        self.public_key_id = public_key_id
        self.length = length
        self.folded: set[FoldedUpload] = set()
        self.acc = self._accumulator()

    def _accumulator(self) -> ChunkedAggregator:
        return ChunkedAggregator(
            self.params, public_key_id=self.public_key_id, length=self.length, path=self.path
        )

    def fold(self, conn: Connection, upload: UploadStatement) -> None:
        """Fold ``upload`` unless it is in already; raises like :func:`fold_upload`.

        A fold that fails half-way empties this fold (a broken accumulator is never read).
        """
        key = FoldedUpload.of(upload)
        if key in self.folded:
            return
        try:
            fold_upload(conn, self.params, self.acc, upload)
        except BaseException:
            if self.acc.broken:
                self.reset()
            raise
        self.folded.add(key)

    def reset(self) -> None:
        """Start over from an empty sum."""
        self.acc.close()
        self.acc = self._accumulator()
        self.folded.clear()

    def close(self) -> None:
        """Remove the accumulator file."""
        self.acc.close()


@dataclass(frozen=True)
class PendingFold:
    """An accepted upload (its client signature checked) not folded yet, and the key the
    server says its round is under."""

    round: int
    upload: UploadStatement
    public_key_id: bytes


@dataclass
class _Cursor:
    """How far the server's list of a round's accepted uploads was read."""

    round: int
    after: int = 0
    queue: list[PendingFold] = field(default_factory=list)


class Folds:
    """A key holder's round folds and own aggregate files (``<state dir>/folds``)."""

    def __init__(self, state_dir: Path, roster: Roster, shares: KeyShares) -> None:
        self.directory = state_dir / FOLDS_DIR
        self.directory.mkdir(mode=0o700, exist_ok=True)
        for stale in self.directory.glob("*.acc"):  # caches of a previous run
            stale.unlink()
        self.roster = roster
        self.shares = shares
        self.rounds: dict[int, RoundFold] = {}
        self._cursor: _Cursor | None = None

    def fold_for(self, round_number: int, public_key_id: bytes) -> RoundFold:
        """The round's fold under ``public_key_id`` (a new, empty one if it has none)."""
        fold = self.rounds.get(round_number)
        if fold is not None and fold.public_key_id != public_key_id:
            fold.close()
            fold = None
        if fold is None:
            fold = RoundFold(
                self.directory / f"r{round_number}.acc",
                self.roster.params,
                round_number=round_number,
                public_key_id=public_key_id,
                length=self.roster.policy.model_length,
            )
            self.rounds[round_number] = fold
        return fold

    def aggregate_path(self, round_number: int, digest: bytes) -> Path:
        """Where the own aggregate of ``round_number`` with ``digest`` is kept."""
        return aggregate_path(self.directory, round_number, digest)

    # ------------------------------------------------------------ during collection
    def next_upload(self, conn: Connection) -> PendingFold | None:
        """Learn the round, fetch newly accepted uploads; the next one to fold, if any.

        Two small calls; contributions without a valid client signature are logged and
        skipped. ``grpc.RpcError`` is the caller's.
        """
        info = conn.stub.GetRound(pb.Empty(), timeout=C.RPC_TIMEOUT_SECONDS)
        self.prune(info.round)
        if info.round < 1:
            return None
        cursor = self._cursor
        if cursor is None or cursor.round != info.round:
            cursor = self._cursor = _Cursor(info.round)
        if not cursor.queue and info.accepted_uploads != cursor.after:
            self._fetch(conn, cursor)
        return cursor.queue.pop(0) if cursor.queue else None

    def fold(self, conn: Connection, pending: PendingFold) -> None:
        """Fold one accepted upload into its round's fold; a failed check is logged and
        the upload skipped (the task folds what it needs). ``grpc.RpcError`` is the
        caller's."""
        try:
            self.shares.epoch_of(pending.public_key_id)  # a key it holds a share of, not retired
            self.fold_for(pending.round, pending.public_key_id).fold(conn, pending.upload)
        except SecAggError as exc:
            log.warning(
                "round %d: %s's upload not folded: %s", pending.round, pending.upload.client_id, exc
            )

    def _fetch(self, conn: Connection, cursor: _Cursor) -> None:
        accepted = conn.stub.GetAcceptedUploads(
            pb.UploadQuery(round=cursor.round, after=cursor.after),
            timeout=C.RPC_TIMEOUT_SECONDS,
        )
        if accepted.round != cursor.round:
            return
        for contribution in accepted.contributions:
            cursor.after += 1
            try:
                upload = UploadStatement.from_contribution(
                    self.roster.deployment_id, cursor.round, contribution
                ).verify(self.roster)
            except SecAggError as exc:
                log.warning("round %d: a listed upload is not folded: %s", cursor.round, exc)
                continue
            cursor.queue.append(PendingFold(cursor.round, upload, bytes(accepted.public_key_id)))

    # ------------------------------------------------------------ clean-up
    def retire_fold(self, round_number: int) -> None:
        """Remove a round's accumulator once its sum is in an own aggregate file (at 48
        bytes per parameter, the largest file a key holder has)."""
        fold = self.rounds.pop(round_number, None)
        if fold is not None:
            fold.close()
        if self._cursor is not None and self._cursor.round == round_number:
            self._cursor.queue.clear()  # folding them now would only start the sum again

    def drop(self, round_number: int) -> None:
        """Forget a round: its accumulator and own aggregate files go."""
        self.prune(round_number + 1, only=round_number)

    def prune(self, current_round: int, *, only: int | None = None) -> None:
        """Remove the folds and own aggregates of rounds before ``current_round``.

        The server's round number decides only what is cleaned up: a lie makes the key
        holder recompute, nothing more.
        """

        def past(round_number: int) -> bool:
            return round_number < current_round and only in (None, round_number)

        for round_number in [r for r in self.rounds if past(r)]:
            self.rounds.pop(round_number).close()
        for path in self.directory.glob("r*.aggregate"):
            found = _ROUND_FILE.match(path.name)
            if found and past(int(found.group(1))):
                path.unlink(missing_ok=True)
