"""Decryption tasks: which quorums are asked to decrypt which aggregate.

A closed round is first locked (:mod:`server.certify`): no decryption task is planned
before enough key holders locked the round to its aggregate, and every task carries
their locks. A locked round gets one regular task per quorum of the cross-checking
family over the live key holders (:func:`secagg.protocol.quorums.quorum_family`): every
set of ``t - 1`` live key holders is left out of some quorum, so a wrong partial shows as
a disagreement between quorums (:mod:`server.cross_check`). That needs ``2t - 1`` live
key holders; with fewer the round waits (``QuorumNotMet``), since key holders endorse
only a fully cross-checked model (:func:`clients.keyholder.endorse.check_cross_checked`).
If a member of a quorum stops polling before it answered, its task is superseded and the
family is planned again over the key holders still live. The round's contributor set
passed :func:`~secagg.protocol.policy.check_decryption` before the round closed
(:func:`server.state.review_collecting`), so the server never asks for a decryption it
knows the key holders will refuse.

Notes
-----
Every quorum of the family is one more decryption of the aggregate by each of its
members, charged to each member's decryption budget (:mod:`clients.keyholder.budget`).

Operator tasks (:meth:`Tasks.operator_task`, the ``AdminRequestDecryption`` RPC) are
*not* checked against the policy by the server, on purpose: they are the in-band way to
show that the key holders enforce the policy themselves (each one runs
``check_decryption`` on the task before it answers, and refuses with the rule's reason).
An operator task never changes a round and never releases anything: a release needs the
round's whole cross-checking family. It carries the round's locks like any task, so key
holders decrypt nothing but the aggregate the round was locked to (``LOCK_MISSING``
otherwise).
"""

from __future__ import annotations

import dataclasses
import logging

from secagg.chunked import AggregateHead
from secagg.errors import CrossCheckIncomplete, PolicyViolation
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import DecryptionRequestEntry
from secagg.protocol.quorums import check_cross_checked, quorum_family
from secagg.protocol.statements import Signed, UploadStatement
from secagg.protocol.status import RoundStatus
from server.certify import Certificates
from server.context import Context
from server.liveness import Liveness
from server.state import Round, RoundState, Task, TaskState, Upload, choose_quorum, quorum_lost
from server.store.base import PartialRecord, RefusalRecord

log = logging.getLogger("secagg.server")


class Tasks:
    """Creates, supersedes and serves decryption tasks."""

    def __init__(self, ctx: Context, liveness: Liveness, certs: Certificates) -> None:
        self.ctx = ctx
        self.liveness = liveness
        self.certs = certs

    def create(
        self,
        round_number: int,
        aggregate_hash: bytes,
        aggregate_digest: bytes,
        contributions: tuple[Signed[UploadStatement], ...],
        *,
        quorum: tuple[int, ...],
        operator: bool,
    ) -> Task:
        """A new open task asking ``quorum``, logged as a decryption request."""
        draft = Task(
            0,
            round_number,
            aggregate_hash,
            aggregate_digest,
            contributions,
            quorum,
            operator,
            TaskState.OPEN,
            self.ctx.clock(),
        )
        with self.ctx.store.transaction():
            task = self.ctx.store.add_task(draft)
            size, head = self.ctx.audit.record(
                DecryptionRequestEntry(
                    round=round_number,
                    task_id=task.task_id,
                    quorum=quorum,
                    aggregate_hash=aggregate_hash,
                    aggregate_digest=aggregate_digest,
                    contributors=tuple(c.statement.client_id for c in contributions),
                    operator=operator,
                )
            )
            task = dataclasses.replace(task, log_size=size, log_head=head)
            self.ctx.store.put_task(task)
        return task

    def _not_met(self, round_number: int, live: int, *, cross_check: int = 0) -> None:
        policy = self.ctx.policy
        status = RoundStatus.quorum_not_met(
            live, policy.keyholders, policy.threshold, cross_check=cross_check
        )
        self.ctx.set_status(round_number, status)

    def ensure(self, rnd: Round) -> None:
        """Keep the cross-checking family of open regular tasks of a DECRYPTING round.

        The family is planned when the round has no open regular task, and again when a
        quorum is lost (a member stopped polling before it answered): quorums of the
        family over the key holders live now that no open task asks are added. A round
        whose quorums disagreed (a DISAGREED task) gets no task ever again.
        """
        store = self.ctx.store
        if store.tasks(state=TaskState.DISAGREED, round_number=rnd.number):
            return
        live = self.liveness.live()
        if not self.certs.locked(rnd):
            self._await_locks(rnd, live)
            return
        kept: list[Task] = []
        lost = False
        for task in store.tasks(state=TaskState.OPEN, round_number=rnd.number):
            if task.operator:
                continue
            answered = {p.keyholder for p in store.answers(task.task_id, PartialRecord)}
            if not quorum_lost(task, answered, live):
                kept.append(task)
                continue
            lost = True
            store.set_task_state(task.task_id, TaskState.SUPERSEDED)
            missing = [i for i in task.quorum if i not in answered]
            log.info(
                "round %d: key holders %s unreachable; choosing a new quorum", rnd.number, missing
            )
        asked = [t.quorum for t in kept]
        if asked and not lost and self._cross_checked(asked):
            return
        need = 2 * self.ctx.policy.threshold - 1  # every t - 1 left out of a quorum
        if len(live) < need:
            if lost or not kept:
                self._not_met(rnd.number, len(live), cross_check=need)
            return
        family = quorum_family(live, self.ctx.policy.threshold)
        assert rnd.aggregate_hash is not None and rnd.aggregate_digest is not None
        contributions = tuple(u.signed for u in store.uploads(rnd.number))
        for quorum in family.quorums:
            if quorum not in asked:
                self.create(
                    rnd.number,
                    rnd.aggregate_hash,
                    rnd.aggregate_digest,
                    contributions,
                    quorum=quorum,
                    operator=False,
                )
                asked.append(quorum)
        self.ctx.set_status(rnd.number, RoundStatus.cross_checking(asked))

    def _cross_checked(self, quorums: list[tuple[int, ...]]) -> bool:
        try:
            check_cross_checked(quorums, self.ctx.policy.threshold)
        except CrossCheckIncomplete:
            return False
        return True

    def _await_locks(self, rnd: Round, live: list[int]) -> None:
        if self.certs.lock_refused(rnd.number):
            return  # the refusal stays the status
        need, locked = self.certs.lock_size, len(self.certs.locks(rnd.number))
        if len(live) < need:
            policy = self.ctx.policy
            status = RoundStatus.quorum_not_met(
                len(live), policy.keyholders, policy.threshold, lock=need
            )
            self.ctx.set_status(rnd.number, status)
        else:
            self.ctx.set_status(rnd.number, RoundStatus.locking(locked, need))

    def task_for(self, keyholder: int) -> pb.DecryptionTask:
        """What this key holder should do now: lock the round, decrypt, or endorse.

        A DECRYPT task carries the proofs that its log head extends the heads this key
        holder may have co-signed (:meth:`server.audit_trail.AuditTrail.consistency_proofs`).
        """
        store = self.ctx.store
        cur = store.current_round()
        if cur is not None:
            lock = self.certs.lock_task(cur, keyholder)
            if lock is not None:
                return lock
        for task in store.tasks(state=TaskState.OPEN):
            if keyholder in task.quorum and keyholder not in store.answered(task.task_id):
                proto = task.to_proto()
                proto.locks.extend(self.certs.locks(task.round))
                proto.consistency.extend(
                    self.ctx.audit.consistency_proofs(keyholder, task.log_size)
                )
                return proto
        endorse = self.certs.endorse_task(cur, keyholder) if cur is not None else None
        return endorse or pb.DecryptionTask(pending=False)

    def open_task(self, task_id: int) -> Task:
        """An open task by id; raises PolicyViolation if unknown or no longer open."""
        task = self.ctx.store.task(task_id)
        if task is None:
            raise PolicyViolation(f"no decryption task {task_id}")
        if task.state is not TaskState.OPEN:
            raise PolicyViolation(f"decryption task {task_id} is no longer open")
        return task

    # ------------------------------------------------------------------ operator
    def operator_uploads(self, round_number: int, clients: list[str]) -> list[Upload]:
        """The uploads an operator task would aggregate (unchecked: see the module notes).

        Raises PolicyViolation for no such upload, or a partial set of a round being
        decrypted.
        """
        store = self.ctx.store
        everyone = store.uploads(round_number)
        chosen = [u for u in everyone if u.statement.client_id in clients]
        if not chosen:
            raise PolicyViolation(f"no uploads from {clients} in round {round_number}")
        rnd = store.round(round_number)
        if rnd is not None and rnd.state is RoundState.DECRYPTING and len(chosen) != len(everyone):
            raise PolicyViolation(
                f"round {round_number} is being decrypted; an operator request must name all "
                "its uploads"
            )
        return chosen

    def operator_task(
        self, round_number: int, chosen: list[Upload], aggregate: AggregateHead
    ) -> int:
        """A task over ``chosen`` uploads whose aggregate (written by
        :func:`server.folding.aggregate_stored`) is ``aggregate``; its id."""
        contributions = tuple(u.signed for u in chosen)
        live = self.liveness.live()
        quorum = choose_quorum(live, self.ctx.policy.threshold)
        if quorum is None:
            self._not_met(round_number, len(live))
            raise PolicyViolation("QuorumNotMet: not enough key holders reachable")
        digest = aggregate.digest
        task = self.create(
            round_number, digest, digest, contributions, quorum=quorum, operator=True
        )
        return task.task_id

    def operator_result(self, task_id: int) -> tuple[list[pb.Refusal], bool, bool]:
        """(refusals, completed, released) of an operator task."""
        store = self.ctx.store
        task = store.task(task_id)
        if task is None:
            raise PolicyViolation(f"no decryption task {task_id}")
        refusals = [
            pb.Refusal(task_id=task_id, keyholder=r.keyholder, reason=r.reason)
            for r in store.answers(task_id, RefusalRecord)
        ]
        rnd = store.round(task.round)
        released = rnd is not None and rnd.release is not None
        return refusals, task.state is TaskState.COMPLETED, released
