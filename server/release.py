"""Answers to decryption tasks: partials, refusals, and the signed release.

A partial is checked against its task (aggregate, key holder, quorum), its signed
:class:`~secagg.protocol.statements.PartialStatement` and the key holder's co-signature
of the audit checkpoint it was shown; the parsed partial stays in memory
(:class:`server.context.Parsed`) until the release. When the whole quorum has answered,
the partials are combined with the round's aggregate (still in memory), the model is
stored, the server signs a :class:`~secagg.protocol.statements.ReleaseStatement` and a
checkpoint, and the next round opens.

A crash between the commit of the last partial and the release is repaired by
:meth:`Releases.finish_answered`, which the manager runs on start and on every tick.
"""

from __future__ import annotations

import logging

from secagg.errors import PermissionDenied, PolicyViolation, SecAggError
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import PartialEntry, RefusalEntry, ReleaseEntry, RoundOpenEntry
from secagg.protocol.model_blob import encode_model
from secagg.protocol.statements import (
    CheckpointStatement,
    PartialStatement,
    RefusalStatement,
    ReleaseStatement,
    Signed,
)
from secagg.protocol.status import RoundStatus
from secagg.threshold import PartialDecryption, check_partial, combine
from server.context import Context
from server.faults import FaultPoint
from server.state import RoundState, Task, TaskState, after_release, quorum_complete, released
from server.store.base import PartialRecord, RefusalRecord
from server.tasks import Tasks

log = logging.getLogger("secagg.server")


class Releases:
    """Accepts partials and refusals; releases a round when its quorum answered."""

    def __init__(self, ctx: Context, tasks: Tasks) -> None:
        self.ctx = ctx
        self.tasks = tasks
        self._unfinishable: set[int] = set()  # task ids whose partials failed to combine

    def parse(self, blob: bytes) -> PartialDecryption:
        """Parse a partial (call outside the lock); raises InvalidPartialDecryption."""
        return PartialDecryption.from_bytes(blob, self.ctx.params)

    def submit_partial(
        self, keyholder: int, header: pb.PartialHeader, part: PartialDecryption, blob: bytes
    ) -> str:
        """Store a checked, signed partial; release if the quorum is complete.

        Security
        --------
        ``blob`` must be the bytes whose SHA-256 ``join_chunks`` checked against
        ``header.blob.sha256`` (the blob store trusts that digest).
        """
        roster = self.ctx.roster
        if header.keyholder != keyholder:
            raise PermissionDenied("keyholder field does not match the authenticated certificate")
        task = self.tasks.open_task(header.task_id)
        if keyholder not in task.quorum:
            raise PermissionDenied(f"key holder {keyholder} is not in the task's quorum")
        if (
            part.aggregate_digest != task.aggregate_digest
            or part.keyholder_index != keyholder
            or tuple(part.quorum) != task.quorum
        ):
            raise PolicyViolation("partial does not answer this task")
        check_partial(self.ctx.parsed.aggregate(task.aggregate_hash), part)
        statement = PartialStatement(
            roster.deployment_id, task.round, keyholder, part.digest, task.aggregate_digest
        )
        Signed(statement, header.signature).verify(roster)
        checkpoint = CheckpointStatement(roster.deployment_id, task.log_size, task.log_head)
        Signed(checkpoint, header.checkpoint_signature).verify_by(
            roster.keyholder(keyholder), who=f"key holder {keyholder} (audit checkpoint)"
        )
        part_hash = self.ctx.blobs.put(blob, sha256=header.blob.sha256)
        record = PartialRecord(task.task_id, keyholder, part_hash, part.digest, header.signature)
        with self.ctx.store.transaction():
            if self.ctx.store.add_answer(record):
                self.ctx.audit.record(
                    PartialEntry(
                        round=task.round,
                        task_id=task.task_id,
                        keyholder=keyholder,
                        aggregate_digest=task.aggregate_digest,
                        partial_digest=part.digest,
                        partial_hash=part_hash,
                        signature=header.signature,
                        checkpoint_size=task.log_size,
                        checkpoint_head=task.log_head,
                        checkpoint_signature=header.checkpoint_signature,
                    )
                )
        self.ctx.parsed.keep_partial(task.task_id, part)
        log.info("round %d: partial decryption from key holder %d", task.round, keyholder)
        if self._complete(task):
            self.ctx.faults.reach(FaultPoint.KILL_AFTER_LAST_PARTIAL)
            self._finish(task)
        return "accepted"

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
        """Finish every open task whose whole quorum has answered (recovery; idempotent).

        A crash after the commit of a task's last partial and before its release leaves
        the task open with all its partials stored, and nothing else would finish it: its
        key holders answered and are not asked again. The manager calls this on start and
        on every tick. A finished task is no longer open, so a second call finds nothing.

        Notes
        -----
        Partials that cannot be combined are reported once (the log, and the round's
        status for a regular task) and left alone, so one bad task neither fails every
        tick nor keeps key holders from polling.
        """
        store = self.ctx.store
        for task in store.tasks(state=TaskState.OPEN):
            if task.task_id in self._unfinishable or not self._complete(task):
                continue
            log.warning(
                "round %d: task %d has all its partials but was not finished; finishing it",
                task.round,
                task.task_id,
            )
            try:
                self._finish(task)
            except SecAggError as exc:
                self._unfinishable.add(task.task_id)
                log.error("round %d: task %d cannot be finished: %s", task.round, task.task_id, exc)
                if not task.operator:
                    self.ctx.set_status(task.round, RoundStatus.violation(exc))

    def _complete(self, task: Task) -> bool:
        records = self.ctx.store.answers(task.task_id, PartialRecord)
        return quorum_complete(task, {r.keyholder for r in records})

    def _finish(self, task: Task) -> None:
        """Combine a complete task's partials; release the round if the task decrypts it.

        Security
        --------
        Call with the manager's lock held, on an OPEN task. The release, its audit
        entries, the completion of the round's tasks and the next round's opening are
        committed in one transaction, so a round is released at most once: afterwards its
        tasks are no longer open, and a stale task finds another current round and only
        completes.
        """
        store, parsed = self.ctx.store, self.ctx.parsed
        records = store.answers(task.task_id, PartialRecord)
        cur = store.current_round()
        assert cur is not None
        official = (
            (not task.operator or cur.aggregate_digest == task.aggregate_digest)
            and cur.number == task.round
            and cur.state is RoundState.DECRYPTING
        )
        aggregate = parsed.aggregate(task.aggregate_hash)
        parts = [parsed.partial(task.task_id, r.keyholder, r.partial_hash) for r in records]
        model = combine(aggregate, parts)
        if not official:
            store.set_task_state(task.task_id, TaskState.COMPLETED)
            parsed.forget(task_ids={task.task_id}, aggregate_hashes=set())
            return
        model_hash = self.ctx.blobs.put(encode_model(cur.number + 1, model))
        statement = ReleaseStatement(
            self.ctx.roster.deployment_id,
            cur.number,
            model_hash,
            task.aggregate_digest,
            task.quorum,
            tuple(r.partial_digest for r in records),
        )
        signed = Signed.create(statement, self.ctx.signing_key)
        release = statement.to_proto(signed.signature).SerializeToString()
        now = self.ctx.clock()
        following = after_release(cur, model_hash, policy=self.ctx.policy, now=now)
        done = store.tasks(state=TaskState.OPEN, round_number=cur.number)
        with store.transaction():
            size, head = self.ctx.audit.record(ReleaseEntry.of(signed, task_id=task.task_id))
            self.ctx.audit.checkpoint(size, head)
            for t in done:
                store.set_task_state(t.task_id, TaskState.COMPLETED)
            store.put_round(released(cur, release=release, model_hash=model_hash))
            if following.state is RoundState.COLLECTING:
                self.ctx.audit.record(RoundOpenEntry(following.number, model_hash))
            store.put_round(following)
        parsed.forget(
            task_ids={t.task_id for t in done} | {task.task_id},
            aggregate_hashes={t.aggregate_hash for t in done},
        )
        log.info("round %d: released model %s", cur.number, model_hash.hex()[:16])
