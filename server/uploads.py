"""Accepting uploads: check the header, stream the chunks to disk, commit, then fold.

An upload goes through four stages, each done once:

1. :meth:`Uploads.precheck` (before any chunk is read): the header's ciphertext head is
   parsed (:meth:`~secagg.chunked.VectorHead.from_bytes`: header fields, chunk count,
   root), and the signed :class:`~secagg.protocol.statements.UploadStatement` is rebuilt
   over the head's digest, so the client's signature covers every chunk. The round's
   state, replay and duplicate guards, the client's ε against the largest it reported
   in an accepted upload (:func:`~secagg.protocol.policy.check_epsilon_progress`),
   :func:`~secagg.protocol.policy.check_upload` (the size cap on the head's payload
   bytes), the client's signature, and the head's key and length are checked.
2. :meth:`Uploads.receive` (no lock): each chunk is checked against the head as it
   arrives (size, digest, residues reduced, not transparent) and appended to a staged
   chunk file; a bad, reordered, duplicated, extra or missing chunk, or a dropped stream,
   removes the staged file and raises.
3. :meth:`Uploads.commit` (under the round lock, briefly): the state guards again
   (another upload may have committed meanwhile, the round may be closing), the weight
   budget, then the staged file is published under the signed digest and the audit
   entry and row are committed.
4. The committed upload is folded into the round's running aggregate
   (:class:`server.folding.Folds`), chunk by chunk, under the fold lock only.

Memory is O(one chunk) per stream; the only O(model) structure is the accumulator file.
A refused upload leaves no row, no file and no fold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from secagg.chunked import VectorHead
from secagg.errors import (
    DuplicateCiphertext,
    DuplicateUpload,
    InvalidCiphertext,
    PermissionDenied,
    PolicyViolation,
    ReplayDetected,
    WeightBudgetExceeded,
    WrongRound,
)
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import UploadEntry
from secagg.protocol.policy import check_epsilon_progress, check_upload
from secagg.protocol.statements import Signed, UploadStatement
from server.context import Context
from server.folding import Folds
from server.state import Upload, check_accepting

log = logging.getLogger("secagg.server")


@dataclass(frozen=True)
class Prechecked:
    """An upload whose header passed every check: the signed statement and the head."""

    signed: Signed[UploadStatement]
    head: VectorHead
    public_key: JointPublicKey


class Uploads:
    """The upload path; the current round's running aggregate is :attr:`folds`."""

    def __init__(self, ctx: Context, lock: threading.RLock) -> None:
        self.ctx = ctx
        self.lock = lock
        self.folds = Folds(ctx)
        self.closing = 0  # a round being closed (set under the lock): commits refused

    # ------------------------------------------------------------------ stage 1
    def precheck(
        self,
        client: str,
        header: pb.UploadHeader,
        key_of: Callable[[int], JointPublicKey],
    ) -> Prechecked:
        """Everything that can be checked before the chunks arrive.

        ``key_of`` gives a round's joint key (called under the lock once the round is
        known to be the collecting one).

        Raises
        ------
        PermissionDenied, PolicyViolation (and children), ReplayDetected, DuplicateUpload,
        WeightBudgetExceeded, SizeLimitExceeded, SignatureInvalid, InvalidCiphertext
        """
        if header.client_id != client:
            raise PermissionDenied("client_id does not match the authenticated certificate")
        head = VectorHead.from_bytes(header.head, self.ctx.params)
        signed = UploadStatement.from_header(self.ctx.roster.deployment_id, header, head.digest)
        s = signed.statement
        with self.lock:
            self._check_fresh(s)
            public_key = key_of(s.round)
        check_upload(self.ctx.policy, self.ctx.params, s, size=head.payload_bytes)
        signed.verify(self.ctx.roster)
        if head.public_key_id != public_key.id_bytes:
            raise InvalidCiphertext("ciphertext is not under the round's joint public key")
        if head.length != self.ctx.policy.model_length:
            raise InvalidCiphertext(
                f"vector length {head.length}; the deployment's model has "
                f"{self.ctx.policy.model_length} values"
            )
        return Prechecked(signed, head, public_key)

    def _check_fresh(self, s: UploadStatement) -> None:
        """The guards that depend on stored state (re-checked when committing)."""
        store = self.ctx.store
        withdrawn = store.withdrawal(s.client_id)
        if withdrawn is not None and withdrawn.statement.round <= s.round:
            raise PolicyViolation(f"{s.client_id} has withdrawn from the federation")
        if store.nonce_seen(s.client_id, s.nonce):
            raise ReplayDetected("this upload (client, nonce) was already received")
        check_accepting(
            store.current_round(), round_number=s.round, global_model_hash=s.global_model_hash
        )
        if store.has_upload(s.round, s.client_id):
            raise DuplicateUpload(
                f"{s.client_id} already has an accepted upload in round {s.round}"
            )
        same = s.ciphertext_hash
        copied = [u for u in store.uploads(s.round) if u.statement.ciphertext_hash == same]
        if copied:
            raise DuplicateCiphertext(
                f"this ciphertext was already uploaded in round {s.round} by "
                f"{copied[0].statement.client_id}"
            )
        check_epsilon_progress(store.max_epsilon(s.client_id), s)

    # ------------------------------------------------------------------ stage 2
    def receive(self, upload: Prechecked, payloads: Iterable[bytes]) -> Path:
        """Check each chunk as it arrives and stage it; returns the staged file.

        Raises
        ------
        InvalidCiphertext
            A chunk that does not match the head (corrupted, reordered, duplicated, from
            another vector), one too many, or too few (a truncated or dropped stream).
            The staged file is removed.
        """
        return self.ctx.blobs.receive(upload.head, payloads)

    # ------------------------------------------------------------------ stage 3
    def commit(self, upload: Prechecked, staged: Path) -> tuple[Upload, pb.UploadReceipt]:
        """Publish a received upload and record it; raises if a guard now fails.

        The staged file is published or removed, whatever happens.
        """
        signed = upload.signed
        s = signed.statement
        final = self.ctx.blobs.path(s.ciphertext_hash)
        published = False
        try:
            with self.lock:
                self._check_room(s)
                existed = final.exists()  # a ciphertext of an earlier round: keep it
                self.ctx.blobs.publish(staged, s.ciphertext_hash)
                published = not existed
                row = Upload(signed, self.ctx.clock())
                with self.ctx.store.transaction():
                    self.ctx.audit.record(UploadEntry.of(signed))
                    self.ctx.store.add_upload(row)
                published = False
                count = self.ctx.store.upload_count(s.round)
        finally:
            self.ctx.blobs.discard(staged)
            if published:  # the row did not commit: no file either
                final.unlink(missing_ok=True)
        log.info("round %d: accepted upload from %s (weight %d)", s.round, s.client_id, s.weight)
        receipt = pb.UploadReceipt(
            round=s.round, ciphertext_hash=s.ciphertext_hash, accepted_uploads=count
        )
        return row, receipt

    def _check_room(self, s: UploadStatement) -> None:
        self._check_fresh(s)
        if self.closing == s.round:
            raise WrongRound(f"round {s.round} is closing")
        total = sum(u.statement.weight for u in self.ctx.store.uploads(s.round))
        if total + s.weight > self.ctx.params.max_total_weight:
            raise WeightBudgetExceeded("this upload would exceed the round's weight budget")

    # ------------------------------------------------------------------ stage 4
    def fold(self, upload: Upload, public_key: JointPublicKey) -> None:
        """Fold a committed upload into the running aggregate (outside the round lock).

        A failure is logged, not raised: the upload stands, and closing the round
        rebuilds the aggregate from the stored uploads.
        """
        try:
            self.folds.fold(upload, public_key.id_bytes)
        except (OSError, InvalidCiphertext, PolicyViolation) as exc:
            log.error(
                "round %d: folding the upload from %s failed (rebuilt at the close): %s",
                upload.statement.round,
                upload.statement.client_id,
                exc,
            )
