"""Accepting uploads: check the signed statement, parse the ciphertext, commit, aggregate.

An upload goes through three stages, each done once:

1. :meth:`Uploads.precheck` (before any chunk is read): the header becomes a signed
   :class:`~secagg.protocol.statements.UploadStatement`; the round's state, replay and
   duplicate guards, the client's ε against the largest it reported in an accepted
   upload (:func:`~secagg.protocol.policy.check_epsilon_progress`, from the store, so
   durable across restarts), :func:`~secagg.protocol.policy.check_upload` and the
   client's signature are checked.
2. :meth:`Uploads.parse` (outside the server's lock): the ciphertext is parsed and must be
   under the round's joint key (:mod:`server.epochs`) and of the model's length. The
   bytes were hashed once, by :func:`~secagg.rpc.transport.join_chunks`, against the
   signed ``ciphertext_hash``.
3. :meth:`Uploads.commit` (under the lock): the state guards again (another upload may
   have committed meanwhile), the weight budget, then blob, audit entry and row. The
   parsed vector is folded into the round's running aggregate.

Memory is O(model): uploads are folded into a streaming
:class:`~secagg.aggregate.Aggregator` as they arrive; after a restart it is rebuilt from
the stored uploads.
"""

from __future__ import annotations

import logging
import threading

from secagg.aggregate import Aggregator, EncryptedAggregate
from secagg.ciphertext import EncryptedVector
from secagg.errors import (
    DuplicateCiphertext,
    DuplicateUpload,
    InvalidCiphertext,
    PermissionDenied,
    PolicyViolation,
    ReplayDetected,
    WeightBudgetExceeded,
)
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import UploadEntry
from secagg.protocol.policy import check_epsilon_progress, check_upload
from secagg.protocol.statements import Signed, UploadStatement
from server.context import Context
from server.state import Upload, check_accepting

log = logging.getLogger("secagg.server")


class Uploads:
    """The upload path and the current round's running aggregate."""

    def __init__(self, ctx: Context, lock: threading.RLock) -> None:
        self.ctx = ctx
        self.lock = lock
        self._aggregator: Aggregator | None = None
        self._round = 0

    # ------------------------------------------------------------------ stage 1
    def precheck(self, client: str, header: pb.UploadHeader) -> Signed[UploadStatement]:
        """Everything that can be checked before the ciphertext arrives; the signed statement.

        Raises
        ------
        PermissionDenied, PolicyViolation (and children), ReplayDetected, DuplicateUpload,
        WeightBudgetExceeded, SizeLimitExceeded, SignatureInvalid
        """
        if header.client_id != client:
            raise PermissionDenied("client_id does not match the authenticated certificate")
        signed = UploadStatement.from_header(self.ctx.roster.deployment_id, header)
        with self.lock:
            self._check_fresh(signed.statement)
        check_upload(
            self.ctx.policy, self.ctx.params, signed.statement, size=header.blob.total_size
        )
        signed.verify(self.ctx.roster)
        return signed

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
    def parse(self, blob: bytes, public_key: JointPublicKey) -> EncryptedVector:
        """Parse and check a ciphertext (call outside the lock); raises InvalidCiphertext."""
        policy = self.ctx.policy
        vector = EncryptedVector.from_bytes(
            blob, self.ctx.params, max_bytes=policy.max_upload_bytes
        )
        if vector.public_key_id != public_key.id_bytes:
            raise InvalidCiphertext("ciphertext is not under the round's joint public key")
        if vector.length != policy.model_length:
            raise InvalidCiphertext(
                f"vector length {vector.length}; the deployment's model has "
                f"{policy.model_length} values"
            )
        return vector

    # ------------------------------------------------------------------ stage 3
    def commit(
        self,
        signed: Signed[UploadStatement],
        vector: EncryptedVector,
        blob: bytes,
        public_key: JointPublicKey,
    ) -> pb.UploadReceipt:
        """Durably accept a prechecked, parsed upload; raises if a guard now fails.

        Security
        --------
        ``blob`` must be the bytes whose SHA-256 was checked against
        ``signed.statement.ciphertext_hash`` (``join_chunks`` does it): the blob store
        trusts that digest instead of hashing again.
        """
        s = signed.statement
        with self.lock:
            self._check_room(s, public_key)
        self.ctx.blobs.put(blob, sha256=s.ciphertext_hash)  # fsynced before the row commits
        with self.lock:
            aggregator = self._check_room(s, public_key)
            with self.ctx.store.transaction():
                self.ctx.audit.record(UploadEntry.of(signed))
                self.ctx.store.add_upload(Upload(signed, self.ctx.clock()))
            aggregator.add(vector, s.weight)
            count = self.ctx.store.upload_count(s.round)
        log.info("round %d: accepted upload from %s (weight %d)", s.round, s.client_id, s.weight)
        return pb.UploadReceipt(
            round=s.round, ciphertext_hash=s.ciphertext_hash, accepted_uploads=count
        )

    def _check_room(self, s: UploadStatement, public_key: JointPublicKey) -> Aggregator:
        self._check_fresh(s)
        aggregator = self.aggregator(s.round, public_key)
        if aggregator.total_weight + s.weight > self.ctx.params.max_total_weight:
            raise WeightBudgetExceeded("this upload would exceed the round's weight budget")
        return aggregator

    # ------------------------------------------------------------------ aggregate
    def aggregator(self, round_number: int, public_key: JointPublicKey) -> Aggregator:
        """The running aggregate of a collecting round (rebuilt from the store if needed)."""
        with self.lock:
            if self._aggregator is None or self._round != round_number:
                self._aggregator = self._rebuild(round_number, public_key)
                self._round = round_number
            return self._aggregator

    def _rebuild(self, round_number: int, public_key: JointPublicKey) -> Aggregator:
        params, policy = self.ctx.params, self.ctx.policy
        agg = Aggregator(params, public_key_id=public_key.id_bytes, length=policy.model_length)
        uploads = self.ctx.store.uploads(round_number)
        for u in uploads:
            blob = self.ctx.blobs.get(u.statement.ciphertext_hash)
            agg.add(EncryptedVector.from_bytes(blob, params), u.statement.weight)
        if uploads:
            log.info("round %d: rebuilt the aggregate from %d uploads", round_number, len(uploads))
        return agg

    def take_aggregate(self, round_number: int, public_key: JointPublicKey) -> EncryptedAggregate:
        """The closing round's aggregate; the running aggregator is released."""
        with self.lock:
            aggregator = self.aggregator(round_number, public_key)
            if aggregator.contributors != self.ctx.store.upload_count(round_number):
                aggregator = self._rebuild(round_number, public_key)
            self._aggregator, self._round = None, 0
            return aggregator.result()
