"""Closing a round: the review that decides it, then the two-phase close.

Under the round lock a review marks the round closing (no upload commits any more); the
running aggregate is completed (folds waited for, missing uploads folded) and its chunk
file written without the lock; the close commits under the lock again. Heavy work never
holds the lock, so heartbeats never wait behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from secagg.chunked import AggregateHead
from secagg.errors import PolicyViolation
from secagg.keys import JointPublicKey
from secagg.protocol.audit_entries import AggregateEntry, AggregateInput
from server.context import Context
from server.state import Round, RoundState, Upload, active_clients, closed, review_collecting
from server.tasks import Tasks
from server.uploads import Uploads

log = logging.getLogger("secagg.server")


class Closing:
    """Decides when the collecting round closes, and closes it (see the module docstring)."""

    def __init__(
        self,
        ctx: Context,
        lock: threading.RLock,
        uploads: Uploads,
        tasks: Tasks,
        key_of: Callable[[int], JointPublicKey],
    ) -> None:
        self.ctx = ctx
        self.lock = lock
        self.uploads = uploads
        self.tasks = tasks
        self.key_of = key_of
        self._closer = threading.Lock()  # one thread completes a round's close at a time

    def review(self, cur: Round) -> int | None:
        """Set a collecting round's status; the round's number if it must close now
        (then marked closing: no upload commits any more)."""
        store = self.ctx.store
        uploads = store.uploads(cur.number)
        withdrawn = [
            w.statement.client_id for w in store.withdrawals() if w.statement.round <= cur.number
        ]
        active = active_clients(
            [c.name for c in self.ctx.roster.clients],
            withdrawn,
            [u.statement.client_id for u in uploads],
        )
        verdict = review_collecting(
            cur,
            [u.statement for u in uploads],
            active=active,
            policy=self.ctx.policy,
            params=self.ctx.params,
            initial_model_hash=self.ctx.roster.initial_model_hash,
            now=self.ctx.clock(),
        )
        if not verdict.close:
            self.ctx.set_status(cur.number, verdict.status)
            return None
        self.uploads.closing = cur.number
        return cur.number

    def close(self, number: int) -> None:
        """Complete and commit the close of round ``number`` (marked closing by a review).

        The running aggregate is completed (folds waited for, missing uploads folded) and
        its chunk file written without the round lock; the close commits under it. One
        thread closes at a time; another one that finds the close under way returns.
        """
        if not self._closer.acquire(blocking=False):
            return
        try:
            with self.lock:
                cur = self.ctx.store.current_round()
                if cur is None or cur.number != number or cur.state is not RoundState.COLLECTING:
                    return
                uploads = self.ctx.store.uploads(number)
                key = self.key_of(number)
            head = self.uploads.folds.finish(number, key.id_bytes, uploads)
            with self.lock:
                self._commit(number, head, uploads)
        finally:
            self.uploads.closing = 0
            self._closer.release()

    def _commit(self, number: int, head: AggregateHead, uploads: list[Upload]) -> None:
        """Record the aggregate and make the round DECRYPTING (under the lock)."""
        store = self.ctx.store
        cur = store.current_round()
        if cur is None or cur.number != number or cur.state is not RoundState.COLLECTING:
            return
        if [u.statement for u in store.uploads(number)] != [u.statement for u in uploads]:
            raise PolicyViolation(f"round {number}: uploads changed while it was closing")
        digest = head.digest
        self.ctx.parsed.keep_aggregate(digest, head)
        decrypting = closed(cur, aggregate_hash=digest, aggregate_digest=digest, count=len(uploads))
        inputs = tuple(
            AggregateInput(s.client_id, s.ciphertext_hash, s.weight)
            for s in (u.statement for u in uploads)
        )
        with store.transaction():
            self.ctx.audit.record(
                AggregateEntry(cur.number, digest, digest, head.total_weight, inputs)
            )
            store.put_round(decrypting)
        log.info(
            "round %d: closed with %d uploads, aggregate %s",
            cur.number,
            len(uploads),
            digest.hex()[:16],
        )
        self.tasks.ensure(decrypting)
