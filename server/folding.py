"""The collecting round's running aggregate: a file-backed accumulator folded upload by upload.

Every committed upload is folded, chunk by chunk from its stored chunk file, into a
:class:`~secagg.accumulator.ChunkedAggregator` whose file lives in the server's work
directory. Folds run under this module's own lock, never the round lock: uploads commit,
key holders poll and clients ask for the round while a fold runs. The accumulator knows
which uploads it holds (by ciphertext hash); closing the round (:meth:`Folds.finish`)
folds the committed uploads it misses, rebuilds from the stored uploads if it holds one
that is not committed (or a fold failed half-way), and writes the aggregate's chunk file
into the blob store under the aggregate's digest.

Notes
-----
The accumulator is a cache of the stored uploads, not a record: after a restart it is
rebuilt from them. Memory is O(one chunk); the file holds 8 bytes per residue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from secagg.accumulator import ChunkedAggregator
from secagg.chunked import AggregateHead
from secagg.protocol.stored_chunks import fold_stored
from server.context import Context
from server.state import Upload

log = logging.getLogger("secagg.server")


def publish_aggregate(ctx: Context, aggregator: ChunkedAggregator, tag: str) -> AggregateHead:
    """Write ``aggregator``'s sum into the blob store under the aggregate's digest."""
    staged = ctx.blobs.root / f"aggregate-{tag}.staged-{threading.get_ident()}"
    try:
        head = aggregator.write(staged)
        ctx.blobs.publish(staged, head.digest)
    finally:
        ctx.blobs.discard(staged)
    ctx.parsed.keep_aggregate(head.digest, head)
    return head


def aggregate_stored(
    ctx: Context, uploads: Sequence[Upload], public_key_id: bytes, tag: str
) -> AggregateHead:
    """The aggregate of stored uploads (an operator's request), written to the blob store."""
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    aggregator = ChunkedAggregator(
        ctx.params,
        public_key_id=public_key_id,
        length=ctx.policy.model_length,
        path=ctx.work_dir / f"accumulator-{tag}-{threading.get_ident()}",
    )
    try:
        for u in uploads:
            s = u.statement
            fold_stored(
                aggregator,
                ctx.blobs.path(s.ciphertext_hash),
                ctx.params,
                s.ciphertext_hash,
                s.weight,
            )
        return publish_aggregate(ctx, aggregator, tag)
    finally:
        aggregator.close()


class Folds:
    """The running aggregate of one collecting round at a time (thread-safe, own lock)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.lock = threading.Lock()  # the fold lock; never held with the round lock awaited
        self._acc: ChunkedAggregator | None = None
        self._round = 0
        self._folded: set[bytes] = set()
        self._closed_through = 0  # rounds <= this were closed: nothing more to fold

    def _path(self, round_number: int) -> Path:
        self.ctx.work_dir.mkdir(parents=True, exist_ok=True)
        return self.ctx.work_dir / f"accumulator-round-{round_number}"

    def _fresh(self, round_number: int, public_key_id: bytes) -> ChunkedAggregator:
        self._drop()
        self._acc = ChunkedAggregator(
            self.ctx.params,
            public_key_id=public_key_id,
            length=self.ctx.policy.model_length,
            path=self._path(round_number),
        )
        self._round = round_number
        return self._acc

    def _drop(self) -> None:
        if self._acc is not None:
            self._acc.close()
        self._acc, self._round, self._folded = None, 0, set()

    def _fold(self, acc: ChunkedAggregator, upload: Upload) -> None:
        s = upload.statement
        started, cpu = time.monotonic(), time.thread_time()
        path = self.ctx.blobs.path(s.ciphertext_hash)
        fold_stored(
            acc, path, self.ctx.params, s.ciphertext_hash, s.weight, checked_on_arrival=True
        )
        self._folded.add(s.ciphertext_hash)
        took, cpu = time.monotonic() - started, time.thread_time() - cpu
        length = self.ctx.policy.model_length
        log.info(
            "round %d: upload from %s folded in %.2f s (%.1fM params/s; %.1fM per CPU-second)",
            s.round,
            s.client_id,
            took,
            length / max(took, 1e-9) / 1e6,
            length / max(cpu, 1e-9) / 1e6,
        )

    def _current(self, round_number: int, public_key_id: bytes) -> ChunkedAggregator:
        acc = self._acc
        if acc is None or self._round != round_number or acc.broken:
            acc = self._fresh(round_number, public_key_id)
        return acc

    def fold(self, upload: Upload, public_key_id: bytes) -> None:
        """Fold a committed upload of the collecting round (no-op if already folded).

        A failed fold leaves the accumulator broken: :meth:`finish` rebuilds it.
        """
        s = upload.statement
        with self.lock:
            if s.round <= self._closed_through or (self._acc and self._round > s.round):
                return  # its round closed meanwhile
            acc = self._current(s.round, public_key_id)
            if s.ciphertext_hash not in self._folded:
                self._fold(acc, upload)

    def rebuild(self, round_number: int, public_key_id: bytes, uploads: Sequence[Upload]) -> None:
        """Start over from a round's stored uploads (after a restart)."""
        with self.lock:
            acc = self._fresh(round_number, public_key_id)
            for upload in uploads:
                self._fold(acc, upload)
        if uploads:
            log.info("round %d: rebuilt the aggregate from %d uploads", round_number, len(uploads))

    def finish(
        self, round_number: int, public_key_id: bytes, uploads: Sequence[Upload]
    ) -> AggregateHead:
        """The aggregate of exactly ``uploads`` (the round's committed set), written to the
        blob store under its digest; the accumulator is released.

        Raises what a fold raises (a stored upload missing or corrupted), and
        WeightBudgetExceeded for an empty set.
        """
        committed = {u.statement.ciphertext_hash for u in uploads}
        with self.lock:
            acc = self._current(round_number, public_key_id)
            if not self._folded <= committed:
                acc = self._fresh(round_number, public_key_id)
            try:
                for upload in uploads:
                    if upload.statement.ciphertext_hash not in self._folded:
                        self._fold(acc, upload)
                if acc.broken:
                    raise RuntimeError("the accumulator broke while it was completed")
                head = publish_aggregate(self.ctx, acc, f"round-{round_number}")
                self._closed_through = max(self._closed_through, round_number)
            finally:
                self._drop()
        return head

    def discard(self) -> None:
        """Drop the accumulator (its round ended without this server closing it)."""
        with self.lock:
            self._drop()
