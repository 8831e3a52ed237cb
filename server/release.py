"""Answers to decryption tasks: partials, refusals, and the signed release.

A partial streams in as a head and chunks. Its head is checked against its task
(aggregate, key holder, quorum: :func:`~secagg.chunked_threshold.check_partial_head`), its
signed :class:`~secagg.protocol.statements.PartialStatement` and the key holder's
co-signature of the audit checkpoint it was shown, all before any chunk is read
(:meth:`Releases.precheck`); each chunk is checked against the head as it arrives and
staged in a chunk file (:meth:`Releases.receive`), published under the partial's digest
when its record commits (:meth:`Releases.commit`). When every quorum of the round's
cross-checking family (:mod:`server.tasks`) has answered, each quorum's partials are
combined with the round's aggregate chunk by chunk, outside the round lock
(:func:`server.cross_check.decrypt_family`); only if all the models are byte-identical
is the model stored and proposed to the key holders for endorsement
(:mod:`server.certify`). Once ``t`` key holders endorsed it, the server signs a
:class:`~secagg.protocol.statements.ReleaseStatement` listing the checked quorums, the
release carries the endorsements, a checkpoint is signed, and the next round opens.
Otherwise :mod:`server.cross_check` records the disagreement and nothing is released.

A crash between the commit of the last partial and the release is repaired by
:meth:`Releases.finish_answered`, which the manager runs on start and on every tick.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from secagg.chunked import PartialHead
from secagg.chunked_threshold import check_partial_head
from secagg.errors import CrossCheckIncomplete, PermissionDenied, PolicyViolation, SecAggError
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import PartialEntry, RefusalEntry, ReleaseEntry, RoundOpenEntry
from secagg.protocol.quorums import check_cross_checked, flatten
from secagg.protocol.statements import (
    CheckpointStatement,
    PartialStatement,
    RefusalStatement,
    ReleaseStatement,
    Signed,
)
from secagg.protocol.status import RoundStatus
from server.certify import Candidate, Certificates
from server.context import Context
from server.cross_check import decrypt_family, partial_records, record_disagreement
from server.faults import FaultPoint
from server.retention import Retention
from server.state import (
    Round,
    RoundState,
    Task,
    TaskState,
    after_release,
    quorum_complete,
    released,
)
from server.store.base import PartialRecord, RefusalRecord
from server.tasks import Tasks

log = logging.getLogger("secagg.server")


@dataclass(frozen=True)
class Prechecked:
    """A partial whose head and signatures passed every check: its task, head and header."""

    task: Task
    head: PartialHead
    header: pb.PartialHeader


class Releases:
    """Accepts partials and refusals; releases a round when its quorum answered."""

    def __init__(self, ctx: Context, tasks: Tasks) -> None:
        self.ctx = ctx
        self.tasks = tasks
        self.certs: Certificates = tasks.certs  # the locks and endorsements of the rounds
        self._unfinishable: set[tuple[int, ...]] = set()  # families that failed to combine
        self.finishing: set[tuple[int, ...]] = set()  # families combined outside the lock now
        self.retention = Retention(ctx)  # prunes old rounds' ciphertexts after a release

    def precheck(self, keyholder: int, header: pb.PartialHeader) -> Prechecked:
        """Everything about a partial that can be checked before its chunks arrive (call
        under the lock).

        Raises
        ------
        PermissionDenied, PolicyViolation
            Not this key holder's, not an open task of its quorum, not answering it.
        InvalidPartialDecryption
            A head that does not parse or does not fit the task's aggregate.
        SignatureInvalid
            The partial's or the checkpoint's signature does not verify.
        """
        roster = self.ctx.roster
        if header.keyholder != keyholder:
            raise PermissionDenied("keyholder field does not match the authenticated certificate")
        task = self.tasks.open_task(header.task_id)
        if keyholder not in task.quorum:
            raise PermissionDenied(f"key holder {keyholder} is not in the task's quorum")
        head = PartialHead.from_bytes(header.head, self.ctx.params)
        if (
            head.aggregate_digest != task.aggregate_digest
            or head.keyholder_index != keyholder
            or tuple(head.quorum) != task.quorum
        ):
            raise PolicyViolation("partial does not answer this task")
        check_partial_head(self.ctx.parsed.aggregate(task.aggregate_hash), head)
        statement = PartialStatement(
            roster.deployment_id, task.round, keyholder, head.digest, task.aggregate_digest
        )
        Signed(statement, header.signature).verify(roster)
        checkpoint = CheckpointStatement(roster.deployment_id, task.log_size, task.log_head)
        Signed(checkpoint, header.checkpoint_signature).verify_by(
            roster.keyholder(keyholder), who=f"key holder {keyholder} (audit checkpoint)"
        )
        return Prechecked(task, head, header)

    def receive(self, partial: Prechecked, payloads: Iterable[bytes]) -> Path:
        """Check each chunk against the head as it arrives and stage it (no lock).

        Raises InvalidPartialDecryption (the staged file is removed).
        """
        return self.ctx.blobs.receive(partial.head, payloads)

    def commit(self, partial: Prechecked, staged: Path) -> list[Task]:
        """Publish and record a received partial (under the lock); the task family to
        finish now that it answered ([] while any quorum has not).

        The staged file is published or removed, whatever happens.
        """
        task, head, header = partial.task, partial.head, partial.header
        try:
            task = self.tasks.open_task(task.task_id)  # still open?
            self.ctx.blobs.publish(staged, head.digest)
        finally:
            self.ctx.blobs.discard(staged)
        keyholder = head.keyholder_index
        record = PartialRecord(task.task_id, keyholder, head.digest, head.digest, header.signature)
        with self.ctx.store.transaction():
            if self.ctx.store.add_answer(record):
                self.ctx.audit.record(
                    PartialEntry(
                        round=task.round,
                        task_id=task.task_id,
                        keyholder=keyholder,
                        aggregate_digest=task.aggregate_digest,
                        partial_digest=head.digest,
                        partial_hash=head.digest,
                        signature=header.signature,
                        checkpoint_size=task.log_size,
                        checkpoint_head=task.log_head,
                        checkpoint_signature=header.checkpoint_signature,
                    )
                )
        self.ctx.parsed.keep_partial(task.task_id, head)
        log.info("round %d: partial decryption from key holder %d", task.round, keyholder)
        family = self._answered_family(task)
        if family:
            self.ctx.faults.reach(FaultPoint.KILL_AFTER_LAST_PARTIAL)
            self.finishing.add(tuple(t.task_id for t in family))
        return family

    def refuse(self, keyholder: int, refusal: pb.Refusal) -> None:
        """Record a key holder's signed refusal of a task."""
        if refusal.keyholder != keyholder:
            raise PermissionDenied("keyholder field does not match the authenticated certificate")
        task = self.tasks.open_task(refusal.task_id)
        signed = RefusalStatement.from_proto(
            self.ctx.roster.deployment_id, refusal, round_number=task.round
        )
        signed.verify(self.ctx.roster)
        record = RefusalRecord(task.task_id, keyholder, refusal.reason, refusal.signature)
        with self.ctx.store.transaction():
            if self.ctx.store.add_answer(record):
                self.ctx.audit.record(
                    RefusalEntry(
                        task.round, task.task_id, keyholder, refusal.reason, refusal.signature
                    )
                )
        log.warning("round %d: key holder %d refused: %s", task.round, keyholder, refusal.reason)
        if not task.operator:
            self.ctx.set_status(task.round, RoundStatus.refused(keyholder, refusal.reason))

    # ------------------------------------------------------------------ finishing
    def finish_answered(self) -> None:
        """Finish every open task family whose quorums have all answered (recovery; idempotent).

        A crash after the commit of a family's last partial and before its release leaves
        the tasks open with all their partials stored, and nothing else would finish them:
        their key holders answered and are not asked again. The manager calls this on
        start and on every tick. Finished tasks are no longer open, so a second call finds
        nothing.

        Notes
        -----
        Partials that cannot be combined are reported once (the log, and the round's
        status for a regular family) and left alone, so one bad task neither fails every
        tick nor keeps key holders from polling.
        """
        for task in self.ctx.store.tasks(state=TaskState.OPEN):
            family = self._answered_family(task)
            ids = tuple(t.task_id for t in family)
            if not family or ids[0] != task.task_id:
                continue
            if ids in self._unfinishable or ids in self.finishing:
                continue
            proposed = self.certs.candidates.get(task.round)
            if proposed is not None and tuple(t.task_id for t in proposed.family) == ids:
                continue
            log.warning(
                "round %d: task %s has all its partials but was not finished; finishing it",
                task.round,
                ", ".join(map(str, ids)),
            )
            try:
                self.finish(family, decrypt_family(self.ctx, family, task.round))
            except SecAggError as exc:
                self._unfinishable.add(ids)
                log.error(
                    "round %d: task %s cannot be finished: %s",
                    task.round,
                    ", ".join(map(str, ids)),
                    exc,
                )
                if not task.operator:
                    self.ctx.set_status(task.round, RoundStatus.violation(exc))

    def _state(self, task: Task) -> TaskState | None:
        found = self.ctx.store.task(task.task_id)
        return None if found is None else found.state

    def _complete(self, task: Task) -> bool:
        records = self.ctx.store.answers(task.task_id, PartialRecord)
        return quorum_complete(task, {r.keyholder for r in records})

    def _answered_family(self, task: Task) -> list[Task]:
        """The tasks to finish together once ``task`` is answered, or [] while any is not.

        An operator task stands alone; a regular task belongs to the family of its
        round's open regular tasks (:mod:`server.tasks`), by task id.
        """
        if task.operator:
            return [task] if self._complete(task) else []
        family = [
            t
            for t in self.ctx.store.tasks(state=TaskState.OPEN, round_number=task.round)
            if not t.operator
        ]
        if not all(self._complete(t) for t in family):
            return []
        try:
            check_cross_checked([t.quorum for t in family], self.ctx.policy.threshold)
        except CrossCheckIncomplete:
            return []  # quorums kept after a key holder left wait for the rest (server.tasks)
        return family

    def finish(self, family: list[Task], models: list[bytes]) -> None:
        """Conclude a complete family given the model each quorum decrypted
        (:func:`~server.cross_check.decrypt_family`, computed outside the lock); release
        only if all agree.

        Security
        --------
        Call with the manager's lock held. Tasks no longer open (finished by another
        thread meanwhile) are left alone. An operator task only completes:
        a release needs the round's whole cross-checking family. Models that differ are
        recorded as evidence (:func:`server.cross_check.record_disagreement`) and nothing
        is released. The release, its audit entries, the completion of the round's tasks
        and the next round's opening are committed in one transaction, so a round is
        released at most once.
        """
        store, parsed = self.ctx.store, self.ctx.parsed
        cur = store.current_round()
        assert cur is not None
        first = family[0]
        if any(self._state(t) is not TaskState.OPEN for t in family):
            return
        official = (
            not first.operator
            and cur.number == first.round
            and cur.state is RoundState.DECRYPTING
            and cur.aggregate_digest == first.aggregate_digest
        )
        if not official:
            for task in family:
                store.set_task_state(task.task_id, TaskState.COMPLETED)
            parsed.forget(task_ids={t.task_id for t in family}, aggregate_hashes=set())
            return
        if len(set(models)) != 1:
            record_disagreement(self.ctx, family, models)
            return
        self._propose(cur, family, models[0])

    def _propose(self, cur: Round, family: list[Task], model: bytes) -> None:
        """Make the agreed model the round's candidate; release it if already endorsed."""
        model_hash = self.ctx.blobs.put(model)
        partials = []
        for task in family:
            records = partial_records(self.ctx, task)
            partials.append(
                pb.QuorumPartials(
                    quorum=list(task.quorum),
                    partial_hashes=[r.partial_hash for r in records],
                    partial_signatures=[r.signature for r in records],
                )
            )
        self.certs.candidates[cur.number] = Candidate(tuple(family), model_hash, tuple(partials))
        self.maybe_release(cur.number)

    def maybe_release(self, round_number: int) -> None:
        """Release the round's candidate once ``t`` key holders endorsed it (else wait)."""
        cur = self.ctx.store.current_round()
        candidate = self.certs.candidates.get(round_number)
        if cur is None or candidate is None or cur.number != round_number:
            return
        endorsements = [
            e for e in self.certs.endorsements(round_number) if e.model_hash == candidate.model_hash
        ]
        need = self.ctx.policy.threshold
        if len(endorsements) < need:
            self.ctx.set_status(round_number, RoundStatus.endorsing(len(endorsements), need))
            return
        self._release(cur, list(candidate.family), candidate.model_hash, endorsements)
        del self.certs.candidates[round_number]

    def _release(
        self, cur: Round, family: list[Task], model_hash: bytes, endorsements: list[pb.Endorsement]
    ) -> None:
        """Sign and commit the release of ``cur`` (its family agreed on the model, endorsed)."""
        store, parsed = self.ctx.store, self.ctx.parsed
        first = family[0]
        statement = ReleaseStatement(
            self.ctx.roster.deployment_id,
            cur.number,
            model_hash,
            first.aggregate_digest,
            first.quorum,
            tuple(r.partial_digest for r in partial_records(self.ctx, first)),
            flatten([t.quorum for t in family]),
        )
        signed = Signed.create(statement, self.ctx.signing_key)
        message = statement.to_proto(signed.signature)
        message.endorsements.extend(endorsements)
        release = message.SerializeToString()
        now = self.ctx.clock()
        following = after_release(cur, model_hash, policy=self.ctx.policy, now=now)
        done = store.tasks(state=TaskState.OPEN, round_number=cur.number)
        with store.transaction():
            size, head = self.ctx.audit.record(ReleaseEntry.of(signed, task_id=first.task_id))
            self.ctx.audit.checkpoint(size, head)
            for t in done:
                store.set_task_state(t.task_id, TaskState.COMPLETED)
            store.put_round(released(cur, release=release, model_hash=model_hash))
            if following.state is RoundState.COLLECTING:
                self.ctx.audit.record(RoundOpenEntry(following.number, model_hash))
            store.put_round(following)
        parsed.forget(
            task_ids={t.task_id for t in done},
            aggregate_hashes={t.aggregate_hash for t in done},
        )
        log.info(
            "round %d: released model %s after %d agreeing quorums",
            cur.number,
            model_hash.hex()[:16],
            len(family),
        )
        self.retention.after_release(cur.number)
