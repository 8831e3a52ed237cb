"""The key holder's agent loop: the ceremony, then policy-checked tasks under the round's key.

The server asks three kinds of task (``DecryptionTask.kind``):

LOCK
    Check the round's contributor set (:func:`~clients.keyholder.checks.check_task`),
    recompute its aggregate from the listed uploads (most of them folded while the round
    collected, :mod:`clients.keyholder.fold`), refuse replayed ciphertexts, record
    the round as locked to this aggregate (durably) and sign a
    :class:`~secagg.protocol.statements.LockStatement`. One aggregate per round, ever.
DECRYPT
    The same checks, plus a lock certificate (:func:`secagg.protocol.certificates.check_locks`)
    and the key's decryption budget; then a partial decryption signed as a
    :class:`~secagg.protocol.statements.PartialStatement`, with a co-signature of the
    audit-log checkpoint the task shows, given only if that head extends the last one
    this key holder co-signed (:mod:`clients.keyholder.witness`, checked before anything
    is decrypted; refused with ``INCONSISTENT_LOG_HEAD``).
ENDORSE
    Combine every listed quorum's partials itself (:mod:`clients.keyholder.endorse`) and
    sign an :class:`~secagg.protocol.statements.EndorsementStatement` of the model.

A failed check gets a signed :class:`~secagg.protocol.statements.RefusalStatement` whose
reason is ``"<REASON_CODE>: <text>"``.

Key epochs: LOCK and DECRYPT use the share of the key the task names, after checking the
aggregate is under it; a key this key holder retired is refused (``KEY_RETIRED``), and
using a key retires every earlier one (:mod:`clients.keyholder.epochs`). A rotation the
server announces runs its ceremony in the background (:mod:`clients.keyholder.rotation`).

At most one partial per (round, aggregate, quorum) ever leaves a key holder: the
partial and its signature are stored (:mod:`clients.keyholder.record`) before they are
sent, and a repeated task gets the stored bytes back, never fresh flooding noise.

Security
--------
Nothing the server says about a round's state is consulted: one aggregate per round is
enforced by the lock certificate (any two certificates share an honest key holder),
and clients believe a model only with ``t`` endorsements.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import grpc

from clients.connection import Connection
from clients.keyholder.budget import DecryptionBudget
from clients.keyholder.ceremony import CeremonyRelay, run_ceremony
from clients.keyholder.checks import (
    Recomputed,
    check_not_decrypted,
    check_not_replayed,
    check_task,
    own_aggregate,
    recompute_aggregate,
)
from clients.keyholder.endorse import endorsed_model
from clients.keyholder.epochs import KeyShares
from clients.keyholder.fold import Folds
from clients.keyholder.partials import submit_partial, write_partial
from clients.keyholder.record import Decryption, DecryptionRecord, StoredAnswer
from clients.keyholder.rotation import Rotation
from clients.keyholder.storage import KeyHolderState
from clients.keyholder.witness import Witness
from secagg import constants as C
from secagg.errors import CeremonyAborted, InvalidKeyMaterial, SecAggError
from secagg.keys import JointPublicKey, KeyShare
from secagg.proto import service_pb2 as pb
from secagg.protocol.certificates import check_locks
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.policy import check_epsilon_progress
from secagg.protocol.statements import (
    EndorsementStatement,
    LockStatement,
    RefusalStatement,
    Signed,
    UploadStatement,
)
from secagg.rpc.transport import Identity

log = logging.getLogger("secagg.keyholder")


class KeyHolder:
    """One key holder's agent."""

    def __init__(
        self, me: Identity, *, passphrase: bytes | None = None, stop: threading.Event | None = None
    ) -> None:
        self.stop = stop or threading.Event()
        self.me = me
        self.roster = me.roster
        self.params = me.roster.params
        self.index = self.roster.keyholder_named(me.name).index
        self.signing_key = me.signing_key()
        layout = DeploymentLayout(me.deployment)
        self.state = KeyHolderState(
            layout.party_dir(me.name, "keyholder"),
            layout.state_dir(me.name, "keyholder"),
            passphrase=passphrase,
        )
        self.record = DecryptionRecord(self.state.state_dir)
        self.shares = KeyShares(self.state, self.params)
        self.rotation = Rotation(self.ceremony)
        self.witness = Witness(self.state.state_dir, self.roster, self.index)
        self.folds = Folds(self.state.state_dir, self.roster, self.shares)
        self.conn = Connection(me, stop=self.stop)

    def ceremony(self, epoch: int, stop: threading.Event) -> KeyShare:
        """Run the dealerless key generation of key epoch ``epoch`` through the server relay."""
        relay = CeremonyRelay(
            self.conn, self.roster, index=self.index, signing_key=self.signing_key, epoch=epoch
        )
        return run_ceremony(relay, keep=lambda share: self.shares.add(epoch, share), stop=stop)

    def budget(self, share: KeyShare) -> DecryptionBudget:
        """The decryption budget of a share (one per key epoch)."""
        epoch = self.shares.epoch_of(share.public_key_id)
        return DecryptionBudget(self.state.state_dir, self.params, epoch=epoch)

    # ------------------------------------------------------------ decryption tasks
    @contextmanager
    def alive(self) -> Iterator[None]:
        """Keep the server informed that this key holder is alive while the block runs."""
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(C.POLL_SECONDS * 3):
                with suppress(grpc.RpcError):
                    self.conn.stub.GetRound(pb.Empty(), timeout=C.RPC_TIMEOUT_SECONDS)

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            yield
        finally:
            done.set()
            beat.join()

    def handle(self, task: pb.DecryptionTask) -> None:
        """Answer one task, keeping the server informed that this key holder is alive."""
        with self.alive():
            try:
                self.answer(task)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                log.warning(
                    "key holder %d: task %d dropped: %s", self.index, task.task_id, exc.details()
                )

    def fold(self) -> bool:
        """Fold the next accepted upload of the current round, if any
        (:mod:`clients.keyholder.fold`); whether there was one. A failed call is left to
        the next step."""
        try:
            pending = self.folds.next_upload(self.conn)
            if pending is None:
                return False
            with self.alive():
                self.folds.fold(self.conn, pending)
        except grpc.RpcError as exc:
            log.debug("key holder %d: folding paused: %s", self.index, exc.code())
            return False
        return True

    def answer(self, task: pb.DecryptionTask, share: KeyShare | None = None) -> None:
        """Do the task (lock, decrypt or endorse), or refuse it with the failed check's reason.

        LOCK and DECRYPT use ``share``, by default the share of the key the task names
        (refused if that key is retired here). A DECRYPT task this key holder already
        answered (same round, aggregate and quorum) gets the stored partial, byte for
        byte; otherwise the partial is computed, recorded and stored durably, and only
        then sent.
        """
        try:
            if task.kind == pb.TASK_ENDORSE:
                self.endorse(task)
                return
            share = share or self.shares.select(task.public_key_id)
            if task.kind == pb.TASK_LOCK:
                self.lock(task, share)
            else:
                self.witness.check(task.log_size, task.log_head, task.consistency)
                self.send_partial(task, self.partial(task, share))
        except SecAggError as exc:
            self.refuse(task, f"{exc.reason}: {exc}")

    def partial(self, task: pb.DecryptionTask, share: KeyShare) -> StoredAnswer:
        """The partial to send for a DECRYPT task: the stored one, or a new one."""
        ready = self.checked(task, share)
        if isinstance(ready, StoredAnswer):
            log.info(
                "key holder %d: round %d answered before; resending the stored partial",
                self.index,
                task.round,
            )
            return ready
        return self.decrypt(task, share, ready)

    def checked(self, task: pb.DecryptionTask, share: KeyShare) -> StoredAnswer | Recomputed:
        """Every check of a DECRYPT task, in order (:mod:`clients.keyholder.checks`).

        Returns the stored answer of a task answered before, else the aggregate, not yet
        decrypted. An aggregate this key holder locked was recomputed then (and is used
        if its file is still kept); any other is recomputed now. Raises the checks' errors.
        """
        contributions, locked = self.checked_set(task)
        check_locks(self.roster, task.round, task.aggregate_digest, task.locks)
        decryption = Decryption(task.round, task.aggregate_digest)
        stored = self.record.answer(decryption, task.quorum)
        if stored is not None:
            return stored
        own = own_aggregate(self.folds, self.roster, task) if locked else None
        return own or self.recomputed(task, share, contributions)

    def checked_set(self, task: pb.DecryptionTask) -> tuple[list[UploadStatement], bool]:
        """The task's contributor set, once it passes the policy and the round is not
        locked to another aggregate here; and whether it is locked to this one already."""
        contributions = check_task(self.roster, task)
        locked = self.record.decrypted()
        check_not_decrypted(locked, task)
        for upload in contributions:
            check_epsilon_progress(self.record.epsilon_before(upload.client_id, task.round), upload)
        return contributions, locked.get(task.round) == task.aggregate_digest

    def recomputed(
        self, task: pb.DecryptionTask, share: KeyShare, contributions: list[UploadStatement]
    ) -> Recomputed:
        """The aggregate recomputed from the listed uploads, none of them replayed."""
        recomputed = recompute_aggregate(
            self.conn, self.folds, task, contributions, public_key_id=share.public_key_id
        )
        decryption = Decryption(task.round, task.aggregate_digest)
        check_not_replayed(
            self.record.seen_ciphertexts(), decryption, recomputed.ciphertext_digests
        )
        return recomputed

    def lock(self, task: pb.DecryptionTask, share: KeyShare) -> None:
        """Lock the round to the task's aggregate (durably), then send the signed lock.

        Security
        --------
        The record is fsync'd before the lock is signed: after a crash this key holder
        still refuses every other aggregate of the round.
        """
        contributions, locked = self.checked_set(task)
        if not locked:
            recomputed = self.recomputed(task, share, contributions)
            self.shares.use(share.public_key_id)
            decryption = Decryption(task.round, task.aggregate_digest)
            epsilons = {c.client_id: c.epsilon for c in contributions}
            self.record.remember(decryption, recomputed.ciphertext_digests, epsilons)
        lock = Signed.create(
            LockStatement(self.roster.deployment_id, task.round, self.index, task.aggregate_digest),
            self.signing_key,
        )
        self.conn.call(self.conn.stub.SubmitLock, lock.statement.to_proto(lock.signature))
        log.info("key holder %d: round %d locked to its aggregate", self.index, task.round)

    def endorse(self, task: pb.DecryptionTask) -> None:
        """Combine the task's partials, check them, and send a signed endorsement; the
        round's fold and own aggregate files go once it is sent."""
        path = self.folds.aggregate_path(task.round, task.aggregate_digest)
        endorsed = endorsed_model(self.conn, self.roster, task, path)
        endorsement = Signed.create(
            EndorsementStatement(
                self.roster.deployment_id,
                task.round,
                self.index,
                task.aggregate_digest,
                endorsed.model_hash,
                endorsed.checked_quorums,
            ),
            self.signing_key,
        )
        self.conn.call(
            self.conn.stub.SubmitEndorsement,
            endorsement.statement.to_proto(endorsement.signature),
        )
        self.folds.drop(task.round)
        log.info("key holder %d: round %d model endorsed", self.index, task.round)

    def refuse(self, task: pb.DecryptionTask, reason: str) -> None:
        """Sign and report a refusal."""
        log.warning("key holder %d refuses round %d: %s", self.index, task.round, reason)
        refusal = Signed.create(
            RefusalStatement(
                deployment_id=self.roster.deployment_id,
                round=task.round,
                keyholder=self.index,
                reason=reason,
            ),
            self.signing_key,
        )
        self.conn.call(
            self.conn.stub.RefuseTask,
            refusal.statement.to_proto(refusal.signature, task_id=task.task_id),
        )

    def decrypt(
        self, task: pb.DecryptionTask, share: KeyShare, recomputed: Recomputed
    ) -> StoredAnswer:
        """Partially decrypt and sign; record the decryption and keep the answer durably.

        Security
        --------
        The budget is charged before the partial is computed, and both records are
        fsync'd before this returns, hence before anything is sent: the ciphertexts count
        as decrypted from now on, and a retry gets these bytes.
        """
        aggregate = recomputed.head
        if aggregate.vector.public_key_id != share.public_key_id:
            raise InvalidKeyMaterial("the aggregate is not under the key the task names")
        self.shares.use(share.public_key_id)
        coefficients = aggregate.vector.ciphertexts * self.params.poly_modulus_degree
        self.budget(share).spend(coefficients)
        return write_partial(
            self.record,
            share,
            task,
            recomputed,
            deployment_id=self.roster.deployment_id,
            signing_key=self.signing_key,
        )

    def send_partial(self, task: pb.DecryptionTask, answer: StoredAnswer) -> None:
        """Stream a stored partial with its signature and a co-signature of the task's checkpoint.

        The partial is streamed from its chunk file, the same bytes on every retry
        (:mod:`clients.keyholder.partials`). The checkpoint co-signature is made for the
        task at hand (it witnesses the audit log head the task shows and reveals nothing
        of the decryption), after the head is checked against and kept as this key
        holder's witnessed head.
        """
        checkpoint_signature = self.witness.cosign(
            task.log_size, task.log_head, task.consistency, self.signing_key
        )
        header = pb.PartialHeader(
            task_id=task.task_id,
            round=task.round,
            keyholder=self.index,
            signature=answer.signature,
            checkpoint_signature=checkpoint_signature,
        )
        timeout = self.roster.policy.transfer_timeout_seconds
        submit_partial(self.conn, self.params, answer, header, timeout=timeout)
        log.info("key holder %d: partial decryption for round %d sent", self.index, task.round)

    # ------------------------------------------------------------ the loop
    def run(self) -> None:
        """Ceremony if needed, then answer tasks until stopped.

        Raises SystemExit(:data:`~secagg.constants.EXIT_CEREMONY_ABORTED`) after one
        error line naming the culprits if a key ceremony aborts, and
        SystemExit(:data:`~secagg.constants.EXIT_SERVER_UNREACHABLE`) after one line if the
        server stayed unreachable past a call's retries (1 for another refused call).
        """
        try:
            self._run()
        except CeremonyAborted as exc:
            log.error("key holder %d: key ceremony aborted (%s): %s", self.index, exc.reason, exc)
            raise SystemExit(C.EXIT_CEREMONY_ABORTED) from None
        except grpc.RpcError as exc:
            if self.stop.is_set():
                return
            log.error("%s", self.conn.failure_line(exc))  # one line, no traceback
            raise SystemExit(self.conn.exit_status(exc)) from None
        except InterruptedError:
            if not self.stop.is_set():
                raise
        finally:
            self.rotation.stop()

    def _run(self) -> None:
        stop = self.stop
        if self.shares.newest() is None:
            first = self.conn.call(self.conn.stub.GetDecryptionTask, pb.Empty())
            self.ceremony(first.ceremony_epoch or 1, stop)
        bundle_key = JointPublicKey.from_bytes(
            self.conn.call(self.conn.stub.GetPublicKey, pb.Empty()).public_key, self.params
        )
        self.shares.epoch_of(bundle_key.id_bytes)  # a key we hold a share of, not retired
        busy_until = 0.0
        while not stop.is_set():
            task = self.conn.call(self.conn.stub.GetDecryptionTask, pb.Empty())
            self.rotation.follow(task.ceremony_epoch, self.shares.newest_epoch())
            if task.pending:
                self.handle(task)
                busy_until = time.monotonic() + C.BUSY_WINDOW_SECONDS
            elif self.fold():
                continue  # more accepted uploads to fold: look for a task, then fold on
            else:  # the next step of a round comes soon after the last one
                busy = time.monotonic() < busy_until
                stop.wait(C.BUSY_POLL_SECONDS if busy else C.POLL_SECONDS)
