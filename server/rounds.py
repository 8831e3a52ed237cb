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
One re-entrant lock serializes state changes. Receiving and checking chunks, writing
chunk files, folding uploads into the running aggregate, writing the aggregate at the
close and combining partials happen outside it; only checks against stored state and
commits are serialized, so heartbeats (``GetRound``, ``GetDecryptionTask``) never wait
behind heavy work. Closing a round is two-phase: under the lock the round is marked
closing (no upload commits any more), the aggregate is completed and written without
the lock, and the close is committed under the lock again (:mod:`server.closing`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from secagg.chunked import VectorHead
from secagg.encoding import F64
from secagg.errors import ConfigError, PermissionDenied, PolicyViolation, SecAggError
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import RoundOpenEntry
from secagg.protocol.model_blob import encode_model
from secagg.protocol.status import RoundStatus
from server.ceremony import Ceremony
from server.certify import Certificates
from server.closing import Closing
from server.context import Context
from server.cross_check import decrypt_family
from server.epochs import KeyEpochs
from server.folding import aggregate_stored
from server.liveness import Liveness
from server.metrics import ServerMetrics
from server.release import Releases
from server.state import (
    RoundState,
    open_round,
)
from server.tasks import Tasks
from server.uploads import Prechecked, Uploads
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
        #: Whether event-driven ticks (RPC threads) complete a close themselves. ``serve``
        #: turns it off: its own loop closes, so no caller's RPC waits for the aggregate
        #: (a key holder blocked in one would miss heartbeats). In-process tests keep it.
        self.inline_close = True
        #: Set by ``serve``: a committed upload is folded on a worker thread and the
        #: client's receipt does not wait for it (the close folds whatever is missing).
        #: In-process tests keep folding in the caller's RPC, which they can observe.
        self.fold_worker: ThreadPoolExecutor | None = None
        self.roster = ctx.roster
        self.blobs = ctx.blobs
        self.roster_digest = roster_digest
        self.liveness = liveness or Liveness()
        self.metrics = ServerMetrics(lambda: len(self.liveness.live()))  # served by ``serve``
        self.ceremony = Ceremony(ctx.store, ctx.roster, ctx.audit)
        self.epochs = KeyEpochs(ctx, self.ceremony, self.lock, known_key=public_key)
        self.uploads = Uploads(ctx, self.lock)
        self.certs = Certificates(ctx)
        self.tasks = Tasks(ctx, self.liveness, self.certs)
        self.releases = Releases(ctx, self.tasks)
        self.closing = Closing(ctx, self.lock, self.uploads, self.tasks, self._key)
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
        self.event()

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
            self.metrics.track_budget(self.epochs)
            cur = self.ctx.store.current_round()
            pk = self.epochs.key_of_round(cur.number) if cur else None
            uploads = self.ctx.store.uploads(cur.number) if cur else []
        if cur is not None and cur.state is RoundState.COLLECTING and pk is not None:
            self.uploads.folds.rebuild(cur.number, pk.id_bytes, uploads)
        self.tick()

    def tick(self, *, close: bool = True) -> None:
        """Advance the state machine (called periodically and after every event).

        Call it without holding the lock: a round that must close is completed outside
        it (:meth:`server.closing.Closing.close`), unless ``close`` is false (it is then
        marked closing and the next tick with ``close`` completes it).
        """
        closing = None
        with self.lock:
            self.releases.finish_answered()
            self.epochs.schedule()
            cur = self.ctx.store.current_round()
            self.metrics.observe(cur)
            if cur is None:
                self._open_first_round()
            elif cur.state is RoundState.COLLECTING:
                self.epochs.announce(cur.number)
                closing = self.closing.review(cur)
            elif cur.state is RoundState.DECRYPTING:
                self.tasks.ensure(cur)
        if closing is not None:
            self.metrics.entered(closing, "closing")
        if closing is not None and close:
            self.closing.close(closing)

    def event(self) -> None:
        """The tick after an RPC's event (see :attr:`inline_close`)."""
        self.tick(close=self.inline_close)

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

    # ------------------------------------------------------------------ clients
    def _announced_key(self, round_number: int) -> JointPublicKey:
        """A round's joint key, announced (call under the lock)."""
        pk = self._key(round_number)
        self.epochs.announce(round_number)
        return pk

    def precheck_upload(self, client: str, header: pb.UploadHeader) -> Prechecked:
        """Checks before the chunks are received; the verified statement and the head."""
        return self.uploads.precheck(client, header, self._announced_key)

    def accept_upload(self, upload: Prechecked, payloads: Iterable[bytes]) -> pb.UploadReceipt:
        """Receive a prechecked upload's chunks (checked as they arrive), commit it, then
        fold it into the running aggregate (on :attr:`fold_worker` if set); only the
        commit holds the lock."""
        staged = self.uploads.receive(upload, payloads)
        row, receipt = self.uploads.commit(upload, staged)
        self.metrics.upload_accepted()
        if self.fold_worker is None:
            self.uploads.fold(row, upload.public_key)
        else:
            self.fold_worker.submit(self.uploads.fold, row, upload.public_key)
        self.event()
        return receipt

    def log_rejection(self, client: str, header: pb.UploadHeader | None, reason: str) -> None:
        """Record a refused upload in the audit log (best effort)."""
        digest = b""  # a head that does not parse makes no statement: logged unsigned
        if header is not None:
            with contextlib.suppress(SecAggError):
                digest = VectorHead.from_bytes(header.head, self.ctx.params).digest
        self.ctx.audit.rejection(
            header.round if header else 0, client, digest, reason, header=header
        )

    def accepted_uploads(self, round_number: int, after: int) -> pb.AcceptedUploads:
        """A round's accepted uploads in acceptance order from index ``after`` (key holders
        fold them while the round collects)."""
        with self.lock:
            rnd = self.ctx.store.round(round_number)
            uploads = self.ctx.store.accepted_uploads(round_number)[after:]
            key = self.epochs.key_of_round(round_number)
        return pb.AcceptedUploads(
            round=round_number,
            contributions=[u.statement.to_contribution(u.signed.signature) for u in uploads],
            public_key_id=key.id_bytes if key else b"",
            collecting=rnd is not None and rnd.state is RoundState.COLLECTING,
        )

    def withdraw(self, client: str, request: pb.Withdrawal) -> None:
        """Record a client's signed withdrawal from ``request.round`` on."""
        with self.lock:
            withdraw(self.ctx, client, request)
        self.event()

    # ------------------------------------------------------------------ key holders
    def seen(self, keyholder: int) -> None:
        """Record that a key holder polled (liveness)."""
        self.liveness.seen(keyholder)

    def task_for(self, keyholder: int) -> pb.DecryptionTask:
        """The open task this key holder should answer, if any, with its round's key id and
        the epoch whose ceremony is open (how key holders learn of a rotation)."""
        self.seen(keyholder)
        self.event()
        with self.lock:
            task = pb.DecryptionTask()
            task.CopyFrom(self.tasks.task_for(keyholder))
            key = self.epochs.key_of_round(task.round) if task.pending else None
            task.public_key_id = key.id_bytes if key else b""
            task.ceremony_epoch = self.ceremony.open_epoch()
            return task

    def submit_partial(
        self, keyholder: int, header: pb.PartialHeader, payloads: Iterable[bytes]
    ) -> str:
        """Check a signed partial's head, receive its chunks (checked as they arrive) and
        store it; combine and release when the family is complete.

        Only the checks against state and the commits hold the lock: the chunks are
        received, and the family's quorums combined, outside it.
        """
        self.seen(keyholder)
        if header.keyholder != keyholder:
            raise PermissionDenied("keyholder field does not match the authenticated certificate")
        with self.lock:
            partial = self.releases.precheck(keyholder, header)
        staged = self.releases.receive(partial, payloads)
        with self.lock:
            family = self.releases.commit(partial, staged)
        if family and not family[0].operator:
            self.metrics.entered(family[0].round, "releasing")
        if family:
            ids = tuple(t.task_id for t in family)
            try:
                models = decrypt_family(self.ctx, family, family[0].round)
                with self.lock:
                    self.releases.finish(family, models)
            finally:
                self.releases.finishing.discard(ids)
        with self.lock:
            self.epochs.rotate_if_budget_low()
            self.metrics.track_budget(self.epochs)
        return "accepted"

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
        self.event()

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
            chosen = self.tasks.operator_uploads(round_number, clients)
            key = self._key(round_number)
        aggregate = aggregate_stored(self.ctx, chosen, key.id_bytes, f"operator-{round_number}")
        with self.lock:
            return self.tasks.operator_task(round_number, chosen, aggregate)

    def admin_result(self, task_id: int) -> tuple[list[pb.Refusal], bool, bool]:
        """(refusals, completed, released) of an operator task."""
        with self.lock:
            return self.tasks.operator_result(task_id)
