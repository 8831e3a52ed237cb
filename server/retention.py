"""Blob retention: after a release, delete the ciphertexts of rounds older than the policy keeps.

``policy.retain_rounds = K`` (``secagg init --retain-rounds``; 0, the default, keeps
every round): once round ``R`` is released, the ciphertext blobs of every round ``<= R -
K`` are deleted: the chunk files of its uploads, of its aggregate, and of the aggregates
and partial decryptions of its decryption tasks (all named by their envelope digests).
Models (``global_model_hash``, released models) are never deleted: every party and the
verifier still read them. Database rows and audit entries stay; they name the deleted
blobs by hash.

Security
--------
Pruning removes evidence, not trust: ``secagg audit verify`` still checks every
signature of a pruned round, but can no longer recompute its aggregate or its model and
says so, naming the rounds. It cannot tell pruning from a server that withheld blobs;
auditors who want to recompute every round keep ``retain_rounds = 0`` or copy the blob
store before it is pruned. An operator decryption request for a pruned round fails (its
aggregate is gone).
"""

from __future__ import annotations

import logging

from server.context import Context
from server.store.base import PartialRecord

log = logging.getLogger("secagg.server")


class Retention:
    """Deletes the ciphertext blobs of rounds beyond ``policy.retain_rounds``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._pruned_through = 0  # rounds <= this were pruned by this process

    def ciphertext_hashes(self, round_number: int) -> set[bytes]:
        """Every ciphertext blob of a round: uploads, aggregate, task aggregates and partials."""
        store = self.ctx.store
        hashes = {u.statement.ciphertext_hash for u in store.uploads(round_number)}
        rnd = store.round(round_number)
        if rnd is not None and rnd.aggregate_hash is not None:
            hashes.add(rnd.aggregate_hash)
        for task in store.tasks(round_number=round_number):
            hashes.add(task.aggregate_hash)
            hashes.update(r.partial_hash for r in store.answers(task.task_id, PartialRecord))
        return hashes

    def after_release(self, released_round: int) -> None:
        """Prune every round ``<= released_round - retain_rounds`` not pruned yet (idempotent).

        Call after the release is committed. After a restart the first call re-scans the
        older rounds (deleting what a crash left behind).
        """
        keep = self.ctx.policy.retain_rounds
        if keep <= 0:
            return
        oldest_kept = released_round - keep + 1
        if self._pruned_through + 1 >= oldest_kept:
            return
        current = self.ctx.store.current_round()
        newest = max(released_round, current.number if current is not None else 0)
        kept: set[bytes] = set()  # content-addressed: a blob a kept round names stays
        for number in range(oldest_kept, newest + 1):
            kept |= self.ciphertext_hashes(number)
        for number in range(self._pruned_through + 1, oldest_kept):
            try:
                freed = [self.ctx.blobs.delete(h) for h in self.ciphertext_hashes(number) - kept]
            except OSError as exc:  # the release stands; the next release retries
                log.error("round %d: pruning its ciphertexts failed: %s", number, exc)
                return
            deleted = sum(1 for size in freed if size)
            if deleted:
                log.info(
                    "round %d: pruned %d ciphertext blobs (%d bytes; policy.retain_rounds = %d)",
                    number,
                    deleted,
                    sum(freed),
                    keep,
                )
            self._pruned_through = number
