"""The round coordinator: one lock, the state machine, and the effect modules it drives.

:class:`RoundManager` is what the gRPC service and ``secagg serve`` talk to. It decides
nothing itself: :mod:`server.state` decides (pure functions), :mod:`server.uploads`,
:mod:`server.tasks` and :mod:`server.release` act, :mod:`server.store` persists and
:mod:`server.audit_trail` records. Every transition commits to the store before it takes
effect, so a restarted server resumes where it stopped (:meth:`RoundManager.recover`),
including a round whose partials were all stored but not yet released.

Each round uses the joint key of its key epoch (:mod:`server.epochs`); a rotation takes
effect at a round boundary. The server never holds key material. It asks a quorum of
live key holders for partial decryptions, combines them, signs the release and opens the
next round.

Notes
-----
One re-entrant lock serializes state changes. Parsing untrusted bytes (ciphertexts,
partials) and writing large blobs happen outside it; only checks against stored state
and commits are serialized.
"""

from __future__ import annotations

import hashlib
import logging
import threading

import numpy as np

from secagg.ciphertext import EncryptedVector
from secagg.encoding import F64
from secagg.errors import ConfigError, PermissionDenied, PolicyViolation
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import AggregateEntry, AggregateInput, RoundOpenEntry
from secagg.protocol.model_blob import encode_model
from secagg.protocol.statements import Signed, UploadStatement
from secagg.protocol.status import RoundStatus
from server.ceremony import Ceremony
from server.certify import Certificates
from server.context import Context
from server.epochs import KeyEpochs
from server.liveness import Liveness
from server.release import Releases
from server.state import Round, RoundState, active_clients, closed, open_round, review_collecting
from server.tasks import Tasks
from server.uploads import Uploads
from server.withdrawals import withdraw

log = logging.getLogger("secagg.server")


class RoundManager:
    """All round state of one server; thread-safe (one lock)."""

    def __init__(
        self,
        ctx: Context,
        initial_model: F64 | None = None,
        *,
        roster_digest: bytes = b"",
        liveness: Liveness | None = None,
        public_key: JointPublicKey | None = None,
    ) -> None:
        """``public_key``: a joint key known in advance (in-process tests): no ceremony."""
        self.ctx = ctx
        self.lock = threading.RLock()
        self.roster = ctx.roster
        self.blobs = ctx.blobs
        self.roster_digest = roster_digest
        self.liveness = liveness or Liveness()
        self.ceremony = Ceremony(ctx.store, ctx.roster, ctx.audit)
        self.epochs = KeyEpochs(ctx, self.ceremony, self.lock, known_key=public_key)
        self.uploads = Uploads(ctx, self.lock)
        self.certs = Certificates(ctx)
        self.tasks = Tasks(ctx, self.liveness, self.certs)
        self.releases = Releases(ctx, self.tasks)
        length = ctx.policy.model_length
        self.initial_model = np.zeros(length) if initial_model is None else initial_model
        if self.initial_model.shape != (length,):
            raise PolicyViolation(f"initial model must have length {length}")
        digest = hashlib.sha256(encode_model(1, self.initial_model)).digest()
        if digest != ctx.roster.initial_model_hash:
            raise ConfigError("the initial model is not the one the roster fixes (its SHA-256)")

    # ------------------------------------------------------------------ queries
    @property
    def public_key(self) -> JointPublicKey | None:
        """The current round's joint public key (round 1's before any round opened)."""
        with self.lock:
            return self.epochs.key(self.epochs.current_epoch())

    def _key(self, round_number: int) -> JointPublicKey:
        """The joint key of a round (see :mod:`server.epochs`)."""
        pk = self.epochs.key_of_round(round_number)
        if pk is None:
            raise PolicyViolation("key ceremony in progress")
        return pk

    def post_ceremony_message(self, keyholder: int, msg: pb.CeremonyMessage) -> None:
        """Check and store a key holder's ceremony message (see :class:`Ceremony`)."""
        with self.lock:
            self.ceremony.post(keyholder, msg)
            self.tick()

    def round_info(self) -> pb.RoundInfo:
        """The current round as clients see it."""
        with self.lock:
            cur = self.ctx.store.current_round()
            pk = self.epochs.key_of_round(cur.number if cur else 1)
            pk_id = pk.id_bytes if pk else b""
            length = self.ctx.policy.model_length
            if cur is None:
                status = RoundStatus.ceremony()
                return pb.RoundInfo(
                    state=pb.CEREMONY, public_key_id=pk_id, status=str(status), model_length=length
                )
            return pb.RoundInfo(
                round=cur.number,
                state=int(cur.state),  # type: ignore[arg-type]
                global_model_hash=cur.global_model_hash,
                public_key_id=pk_id,
                deadline_unix=cur.deadline,
                accepted_uploads=self.ctx.store.upload_count(cur.number),
                status=str(cur.status),
                status_reason=cur.status.reason,
                model_length=length,
            )

    def release(self, round_number: int) -> pb.Release | None:
        """The signed release of a round, if any."""
        rnd = self.ctx.store.round(round_number)
        if rnd is None or rnd.release is None:
            return None
        return pb.Release.FromString(rnd.release)

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        """Rebuild in-memory state after a (re)start and finish what a crash interrupted.

        A task whose partials were all stored before the crash is combined and its round
        released here, before the server serves anything (:meth:`Releases.finish_answered`).
        """
        with self.lock:
            self.ctx.audit.start(self.roster_digest)
            cur = self.ctx.store.current_round()
            pk = self.epochs.key_of_round(cur.number) if cur else None
            if cur is not None and cur.state is RoundState.COLLECTING and pk is not None:
                self.uploads.aggregator(cur.number, pk)
            self.tick()

    def tick(self) -> None:
        """Advance the state machine (called periodically and after every event)."""
        with self.lock:
            self.releases.finish_answered()
            self.epochs.schedule()
            cur = self.ctx.store.current_round()
            if cur is None:
                self._open_first_round()
            elif cur.state is RoundState.COLLECTING:
                self.epochs.announce(cur.number)
                self._review(cur)
            elif cur.state is RoundState.DECRYPTING:
                self.tasks.ensure(cur)

    def _open_first_round(self) -> None:
        epoch = self.epochs.epoch_of_round(1)
        known = epoch == 1 and self.epochs.known_key is not None
        if self.epochs.key(epoch) is None or (not known and self.ceremony.bundle(epoch) is None):
            return
        model_hash = self.blobs.put(encode_model(1, self.initial_model))
        first = open_round(1, model_hash, policy=self.ctx.policy, now=self.ctx.clock())
        with self.ctx.store.transaction():
            self.epochs.announce(1)
            self.ctx.audit.record(RoundOpenEntry(1, model_hash))
            self.ctx.store.put_round(first)
        log.info("round 1: open, global model %s", model_hash.hex()[:16])

    def _review(self, cur: Round) -> None:
        store = self.ctx.store
        uploads = store.uploads(cur.number)
        withdrawn = [
            w.statement.client_id for w in store.withdrawals() if w.statement.round <= cur.number
        ]
        active = active_clients(
            [c.name for c in self.roster.clients],
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
            return
        aggregate = self.uploads.take_aggregate(cur.number, self._key(cur.number))
        agg_hash = self.blobs.put(aggregate.to_bytes())
        self.ctx.parsed.keep_aggregate(agg_hash, aggregate)
        decrypting = closed(
            cur, aggregate_hash=agg_hash, aggregate_digest=aggregate.digest, count=len(uploads)
        )
        inputs = tuple(
            AggregateInput(s.client_id, s.ciphertext_hash, s.weight)
            for s in (u.statement for u in uploads)
        )
        with store.transaction():
            self.ctx.audit.record(
                AggregateEntry(
                    cur.number, agg_hash, aggregate.digest, aggregate.total_weight, inputs
                )
            )
            store.put_round(decrypting)
        log.info(
            "round %d: closed with %d uploads, aggregate %s",
            cur.number,
            len(uploads),
            agg_hash.hex()[:16],
        )
        self.tasks.ensure(decrypting)

    # ------------------------------------------------------------------ clients
    def precheck_upload(self, client: str, header: pb.UploadHeader) -> Signed[UploadStatement]:
        """Checks before the ciphertext is received; the verified signed statement."""
        return self.uploads.precheck(client, header)

    def accept_upload(self, signed: Signed[UploadStatement], blob: bytes) -> pb.UploadReceipt:
        """Parse (outside the lock) and durably accept a prechecked upload under its round's key."""
        round_number = signed.statement.round
        with self.lock:
            pk = self._key(round_number)
            self.epochs.announce(round_number)
        vector: EncryptedVector = self.uploads.parse(blob, pk)
        receipt = self.uploads.commit(signed, vector, blob, pk)
        self.tick()
        return receipt

    def log_rejection(self, client: str, header: pb.UploadHeader | None, reason: str) -> None:
        """Record a refused upload in the audit log (best effort)."""
        self.ctx.audit.rejection(
            header.round if header else 0,
            client,
            header.blob.sha256 if header else b"",
            reason,
            header=header,
        )

    def withdraw(self, client: str, request: pb.Withdrawal) -> None:
        """Record a client's signed withdrawal from ``request.round`` on."""
        with self.lock:
            withdraw(self.ctx, client, request)
            self.tick()

    # ------------------------------------------------------------------ key holders
    def seen(self, keyholder: int) -> None:
        """Record that a key holder polled (liveness)."""
        self.liveness.seen(keyholder)

    def task_for(self, keyholder: int) -> pb.DecryptionTask:
        """The open task this key holder should answer, if any, with its round's key id and
        the epoch whose ceremony is open (how key holders learn of a rotation)."""
        self.seen(keyholder)
        with self.lock:
            self.tick()
            task = pb.DecryptionTask()
            task.CopyFrom(self.tasks.task_for(keyholder))
            key = self.epochs.key_of_round(task.round) if task.pending else None
            task.public_key_id = key.id_bytes if key else b""
            task.ceremony_epoch = self.ceremony.open_epoch()
            return task

    def submit_partial(self, keyholder: int, header: pb.PartialHeader, blob: bytes) -> str:
        """Check and store a signed partial; combine and release when the quorum is complete."""
        self.seen(keyholder)
        if header.keyholder != keyholder:
            raise PermissionDenied("keyholder field does not match the authenticated certificate")
        part = self.releases.parse(blob)
        with self.lock:
            status = self.releases.submit_partial(keyholder, header, part, blob)
            self.epochs.rotate_if_budget_low()
            return status

    def refuse(self, keyholder: int, refusal: pb.Refusal) -> None:
        """Record a key holder's signed refusal of a task (task 0: the round's lock or model)."""
        self.seen(keyholder)
        with self.lock:
            if refusal.task_id == 0:
                self.certs.refuse(keyholder, refusal)
            else:
                self.releases.refuse(keyholder, refusal)

    def submit_lock(self, keyholder: int, lock: pb.Lock) -> None:
        """Store a key holder's signed lock of the round; plan the decryption once locked."""
        self.seen(keyholder)
        with self.lock:
            self.certs.submit_lock(keyholder, lock)
            self.tick()

    def submit_endorsement(self, keyholder: int, endorsement: pb.Endorsement) -> None:
        """Store a key holder's endorsement of the round's model; release once ``t`` endorsed."""
        self.seen(keyholder)
        with self.lock:
            self.certs.submit_endorsement(keyholder, endorsement)
            self.releases.maybe_release(endorsement.round)

    # ------------------------------------------------------------------ operator
    def admin_task(self, round_number: int, clients: list[str]) -> int:
        """A decryption task over an explicit set of a round's uploads (see server.tasks)."""
        with self.lock:
            return self.tasks.operator_task(round_number, clients, self._key(round_number))

    def admin_result(self, task_id: int) -> tuple[list[pb.Refusal], bool, bool]:
        """(refusals, completed, released) of an operator task."""
        with self.lock:
            return self.tasks.operator_result(task_id)
