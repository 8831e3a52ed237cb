"""The in-memory store: the :class:`~server.store.base.Store` contract without a disk.

For tests and experiments; nothing survives the process. A transaction snapshots the
state and restores it if the block raises, so it is all-or-nothing like SQLite's.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import Signed, WithdrawalStatement
from server.state import Round, Task, TaskState, Upload
from server.store.base import (
    Answer,
    AnswerT,
    CertificateRecord,
    KeyEpoch,
    Store,
    StoreConflict,
)


class MemoryStore(Store):
    """Dictionaries guarded by a re-entrant lock."""

    def __init__(self, *, deployment_id: str) -> None:
        super().__init__(deployment_id=deployment_id)
        self._ceremony: dict[tuple[int, int, int, int], pb.CeremonyMessage] = {}
        self._epochs: dict[int, KeyEpoch] = {}
        self._rounds: dict[int, Round] = {}
        self._uploads: dict[tuple[int, str], Upload] = {}
        self._nonces: set[tuple[str, bytes]] = set()
        self._withdrawals: dict[str, Signed[WithdrawalStatement]] = {}
        self._tasks: dict[int, Task] = {}
        self._next_task = 1
        #: Keyed by (kind of answer, task id, key holder).
        self._answers: dict[tuple[type[Answer], int, int], Answer] = {}
        self._certificates: dict[tuple[int, str, int], CertificateRecord] = {}

    _STATE = (
        "_ceremony",
        "_epochs",
        "_rounds",
        "_uploads",
        "_nonces",
        "_withdrawals",
        "_tasks",
        "_next_task",
        "_answers",
        "_certificates",
    )

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        """Snapshot the containers; restore them if the block raises."""
        snapshot: dict[str, Any] = {name: copy.copy(getattr(self, name)) for name in self._STATE}
        try:
            yield
        except BaseException:
            for name, value in snapshot.items():
                setattr(self, name, value)
            raise

    def close(self) -> None:
        """Nothing to release."""

    # ------------------------------------------------------------------ ceremony
    def ceremony_messages(
        self, kind: int, recipient: int | None = None, *, epoch: int = 1
    ) -> list[pb.CeremonyMessage]:
        """See :class:`Store`."""
        with self._lock:
            found = [
                m
                for (e, k, _, r), m in self._ceremony.items()
                if e == epoch and k == kind and (recipient is None or r == recipient)
            ]
        out = []
        for m in sorted(found, key=lambda m: (m.sender, m.recipient)):
            copy_ = pb.CeremonyMessage()
            copy_.CopyFrom(m)
            out.append(copy_)
        return out

    def add_ceremony_message(self, msg: pb.CeremonyMessage) -> None:
        """See :class:`Store`."""
        with self.transaction():
            key = (msg.epoch, msg.kind, msg.sender, msg.recipient)
            if key in self._ceremony:
                raise StoreConflict(f"ceremony message {key} exists")
            stored = pb.CeremonyMessage()
            stored.CopyFrom(msg)
            self._ceremony[key] = stored

    def key_epochs(self) -> list[KeyEpoch]:
        """See :class:`Store`."""
        with self._lock:
            return [self._epochs[e] for e in sorted(self._epochs)]

    def put_key_epoch(self, epoch: KeyEpoch) -> None:
        """See :class:`Store`."""
        with self.transaction():
            self._epochs[epoch.epoch] = epoch

    # ------------------------------------------------------------------ rounds
    def current_round(self) -> Round | None:
        """See :class:`Store`."""
        with self._lock:
            return self._rounds[max(self._rounds)] if self._rounds else None

    def round(self, number: int) -> Round | None:
        """See :class:`Store`."""
        with self._lock:
            return self._rounds.get(number)

    def put_round(self, rnd: Round) -> None:
        """See :class:`Store`."""
        with self.transaction():
            self._rounds[rnd.number] = rnd

    # ------------------------------------------------------------------ uploads
    def uploads(self, round_number: int) -> list[Upload]:
        """See :class:`Store`."""
        with self._lock:
            found = [u for (r, _), u in self._uploads.items() if r == round_number]
        return sorted(found, key=lambda u: u.statement.client_id)

    def accepted_uploads(self, round_number: int) -> list[Upload]:
        """See :class:`Store`."""
        with self._lock:
            return [u for (r, _), u in self._uploads.items() if r == round_number]

    def upload_count(self, round_number: int) -> int:
        """See :class:`Store`."""
        with self._lock:
            return sum(1 for r, _ in self._uploads if r == round_number)

    def has_upload(self, round_number: int, client_id: str) -> bool:
        """See :class:`Store`."""
        with self._lock:
            return (round_number, client_id) in self._uploads

    def nonce_seen(self, client_id: str, nonce: bytes) -> bool:
        """See :class:`Store`."""
        with self._lock:
            return (client_id, nonce) in self._nonces

    def max_epsilon(self, client_id: str) -> float | None:
        """See :class:`Store`."""
        with self._lock:
            uploads = [u for (_, c), u in self._uploads.items() if c == client_id]
        reported = [u.statement.epsilon for u in uploads]
        return max(reported, default=None)

    def add_upload(self, upload: Upload) -> None:
        """See :class:`Store`."""
        s = upload.statement
        with self.transaction():
            if (s.client_id, s.nonce) in self._nonces or (s.round, s.client_id) in self._uploads:
                raise StoreConflict(f"upload of {s.client_id} in round {s.round} exists")
            self._nonces.add((s.client_id, s.nonce))
            self._uploads[(s.round, s.client_id)] = upload

    # ------------------------------------------------------------------ withdrawals
    def withdrawal(self, client_id: str) -> Signed[WithdrawalStatement] | None:
        """See :class:`Store`."""
        with self._lock:
            return self._withdrawals.get(client_id)

    def withdrawals(self) -> list[Signed[WithdrawalStatement]]:
        """See :class:`Store`."""
        with self._lock:
            return [self._withdrawals[c] for c in sorted(self._withdrawals)]

    def add_withdrawal(self, signed: Signed[WithdrawalStatement]) -> bool:
        """See :class:`Store`."""
        with self.transaction():
            if signed.statement.client_id in self._withdrawals:
                return False
            self._withdrawals[signed.statement.client_id] = signed
            return True

    # ------------------------------------------------------------------ tasks
    def add_task(self, task: Task) -> Task:
        """See :class:`Store`."""
        with self.transaction():
            stored = dataclasses.replace(task, task_id=self._next_task)
            self._tasks[stored.task_id] = stored
            self._next_task += 1
            return stored

    def put_task(self, task: Task) -> None:
        """See :class:`Store`."""
        with self.transaction():
            if task.task_id not in self._tasks:
                raise KeyError(f"no task {task.task_id}")
            self._tasks[task.task_id] = task

    def task(self, task_id: int) -> Task | None:
        """See :class:`Store`."""
        with self._lock:
            return self._tasks.get(task_id)

    def tasks(
        self, *, state: TaskState | None = None, round_number: int | None = None
    ) -> list[Task]:
        """See :class:`Store`."""
        with self._lock:
            return [
                t
                for _, t in sorted(self._tasks.items())
                if (state is None or t.state is state)
                and (round_number is None or t.round == round_number)
            ]

    # ------------------------------------------------------------------ answers
    def answers(self, task_id: int, kind: type[AnswerT]) -> list[AnswerT]:
        """See :class:`Store`."""
        with self._lock:
            found = [
                a for a in self._answers.values() if isinstance(a, kind) and a.task_id == task_id
            ]
        return sorted(found, key=lambda a: a.keyholder)

    def add_answer(self, record: Answer) -> bool:
        """See :class:`Store`."""
        with self.transaction():
            key = (type(record), record.task_id, record.keyholder)
            if key in self._answers:
                return False
            self._answers[key] = record
            return True

    # ------------------------------------------------------------------ certificates
    def certificates(self, round_number: int, kind: str) -> list[CertificateRecord]:
        """See :class:`Store`."""
        with self._lock:
            found = [
                c for c in self._certificates.values() if (c.round, c.kind) == (round_number, kind)
            ]
        return sorted(found, key=lambda c: c.keyholder)

    def add_certificate(self, record: CertificateRecord) -> bool:
        """See :class:`Store`."""
        with self.transaction():
            key = (record.round, record.kind, record.keyholder)
            if key in self._certificates:
                return False
            self._certificates[key] = record
            return True
