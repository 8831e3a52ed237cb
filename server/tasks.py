"""Decryption tasks: which quorum is asked to decrypt which aggregate.

A closed round gets one regular task whose quorum is the first ``t`` live key holders;
if a member of that quorum stops polling before it answered, the task is superseded by
one with a new quorum. The round's contributor set passed
:func:`~secagg.protocol.policy.check_decryption` before the round closed
(:func:`server.state.review_collecting`), so the server never asks for a decryption it
knows the key holders will refuse.

Notes
-----
Operator tasks (:meth:`Tasks.operator_task`, the ``AdminRequestDecryption`` RPC) are
*not* checked against the policy by the server, on purpose: they are the in-band way to
show that the key holders enforce the policy themselves (each one runs
``check_decryption`` on the task before it answers, and refuses with the rule's reason).
An operator task never changes a round: its result is released only if it decrypts
exactly the aggregate the round closed over.
"""

from __future__ import annotations

import dataclasses
import logging

from secagg.aggregate import Aggregator
from secagg.ciphertext import EncryptedVector
from secagg.errors import PolicyViolation
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import DecryptionRequestEntry
from secagg.protocol.statements import Signed, UploadStatement
from secagg.protocol.status import RoundStatus
from server.context import Context
from server.liveness import Liveness
from server.state import Round, RoundState, Task, TaskState, choose_quorum, quorum_lost
from server.store.base import PartialRecord, RefusalRecord

log = logging.getLogger("secagg.server")


class Tasks:
    """Creates, supersedes and serves decryption tasks."""

    def __init__(self, ctx: Context, liveness: Liveness) -> None:
        self.ctx = ctx
        self.liveness = liveness

    def create(
        self,
        round_number: int,
        aggregate_hash: bytes,
        aggregate_digest: bytes,
        contributions: tuple[Signed[UploadStatement], ...],
        *,
        operator: bool,
    ) -> Task | None:
        """A new open task for the live quorum, or None (status QuorumNotMet) if too few."""
        policy = self.ctx.policy
        live = self.liveness.live()
        quorum = choose_quorum(live, policy.threshold)
        if quorum is None:
            self.ctx.set_status(
                round_number,
                RoundStatus.quorum_not_met(len(live), policy.keyholders, policy.threshold),
            )
            return None
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
        if not operator:
            self.ctx.set_status(round_number, RoundStatus.decrypting_with(quorum))
        return task

    def ensure(self, rnd: Round) -> None:
        """Keep one open regular task of a DECRYPTING round whose quorum is alive."""
        store = self.ctx.store
        live = self.liveness.live()
        for task in store.tasks(state=TaskState.OPEN, round_number=rnd.number):
            if task.operator:
                continue
            answered = {p.keyholder for p in store.answers(task.task_id, PartialRecord)}
            if not quorum_lost(task, answered, live):
                return
            store.set_task_state(task.task_id, TaskState.SUPERSEDED)
            missing = [i for i in task.quorum if i not in answered]
            log.info(
                "round %d: key holders %s unreachable; choosing a new quorum", rnd.number, missing
            )
        assert rnd.aggregate_hash is not None and rnd.aggregate_digest is not None
        contributions = tuple(u.signed for u in store.uploads(rnd.number))
        self.create(
            rnd.number, rnd.aggregate_hash, rnd.aggregate_digest, contributions, operator=False
        )

    def task_for(self, keyholder: int) -> pb.DecryptionTask:
        """The first open task this key holder is asked to answer and has not answered."""
        store = self.ctx.store
        for task in store.tasks(state=TaskState.OPEN):
            if keyholder in task.quorum and keyholder not in store.answered(task.task_id):
                return task.to_proto()
        return pb.DecryptionTask(pending=False)

    def open_task(self, task_id: int) -> Task:
        """An open task by id; raises PolicyViolation if unknown or no longer open."""
        task = self.ctx.store.task(task_id)
        if task is None:
            raise PolicyViolation(f"no decryption task {task_id}")
        if task.state is not TaskState.OPEN:
            raise PolicyViolation(f"decryption task {task_id} is no longer open")
        return task

    # ------------------------------------------------------------------ operator
    def operator_task(
        self, round_number: int, clients: list[str], public_key: JointPublicKey
    ) -> int:
        """A task over an explicit set of a round's uploads (unchecked: see the module notes)."""
        store, params = self.ctx.store, self.ctx.params
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
        agg = Aggregator(
            params, public_key_id=public_key.id_bytes, length=self.ctx.policy.model_length
        )
        for u in chosen:
            blob = self.ctx.blobs.get(u.statement.ciphertext_hash)
            agg.add(EncryptedVector.from_bytes(blob, params), u.statement.weight)
        aggregate = agg.result()
        agg_hash = self.ctx.blobs.put(aggregate.to_bytes())
        self.ctx.parsed.keep_aggregate(agg_hash, aggregate)
        contributions = tuple(u.signed for u in chosen)
        task = self.create(round_number, agg_hash, aggregate.digest, contributions, operator=True)
        if task is None:
            raise PolicyViolation("QuorumNotMet: not enough key holders reachable")
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
