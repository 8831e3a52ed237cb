"""The store interface: every piece of durable server state, typed.

A :class:`Store` holds the ceremony messages (by key epoch), the key epochs, rounds,
accepted uploads (and every nonce ever seen), withdrawals, decryption tasks, partials
and refusals. Methods take and return the dataclasses of :mod:`server.state` and the
protocol's signed statements, never positional rows.

Writes that belong together run in :meth:`Store.transaction`: they take effect together
or not at all. A write outside a transaction takes effect on its own.

Notes
-----
Crash ordering is the caller's discipline: a blob a row refers to is written (and
fsynced) to the :class:`~server.store.blobs.BlobStore` before the transaction that adds
the row, and the audit entry is appended inside the transaction, before it commits, so
an entry that fails to be written rolls the rows back.
"""

from __future__ import annotations

import dataclasses
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import Signed, WithdrawalStatement
from server.state import Round, Task, TaskState, Upload


class StoreConflict(KeyError):
    """A write would overwrite a record that must stay unique (an upload, a nonce, ...)."""


@dataclass(frozen=True)
class PartialRecord:
    """A key holder's accepted partial decryption (the blob is in the blob store)."""

    task_id: int
    keyholder: int
    partial_hash: bytes
    partial_digest: bytes
    signature: bytes


@dataclass(frozen=True)
class RefusalRecord:
    """A key holder's signed refusal of a task."""

    task_id: int
    keyholder: int
    reason: str
    signature: bytes


@dataclass(frozen=True)
class CertificateRecord:
    """A key holder's lock of a round, or endorsement of its model: the wire message's bytes.

    ``kind`` is ``"lock"`` (a serialized ``Lock``) or ``"endorsement"`` (an
    ``Endorsement``); the message was verified before it was stored.
    """

    round: int
    kind: str
    keyholder: int
    message: bytes


@dataclass(frozen=True)
class KeyEpoch:
    """A key epoch the server opened: its ceremony, and from which round its key is used.

    ``first_round`` is None until every key holder endorsed the epoch's key; then it is
    the round after the one open at that moment (a round boundary). ``announced``: the
    key's :class:`~secagg.protocol.audit_entries.PublicKeyEntry` is in the audit log.
    """

    epoch: int
    first_round: int | None = None
    announced: bool = False


#: A key holder's answer to a decryption task: its partial or its refusal.
Answer: TypeAlias = PartialRecord | RefusalRecord
#: One kind of answer, for methods that take the kind and return records of it.
AnswerT = TypeVar("AnswerT", PartialRecord, RefusalRecord)


class Store(ABC):
    """Durable server state (see the module docstring)."""

    def __init__(self, *, deployment_id: str) -> None:
        self.deployment_id = deployment_id
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside take effect together, or none does; nested calls join."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                with self._outermost():
                    yield
            finally:
                self._depth = 0

    @abstractmethod
    def _outermost(self) -> AbstractContextManager[None]:
        """Begin; commit when the block ends, undo everything if it raises."""

    @abstractmethod
    def close(self) -> None:
        """Release resources."""

    # ------------------------------------------------------------------ ceremony
    @abstractmethod
    def ceremony_messages(
        self, kind: int, recipient: int | None = None, *, epoch: int = 1
    ) -> list[pb.CeremonyMessage]:
        """Stored messages of a kind and key epoch (only for ``recipient`` if given), by sender."""

    @abstractmethod
    def add_ceremony_message(self, msg: pb.CeremonyMessage) -> None:
        """Store a message (StoreConflict if one with its epoch, kind and route exists)."""

    @abstractmethod
    def key_epochs(self) -> list[KeyEpoch]:
        """The key epochs opened so far, by number (empty: only the implicit epoch 1)."""

    @abstractmethod
    def put_key_epoch(self, epoch: KeyEpoch) -> None:
        """Insert a key epoch or replace the stored one with the same number."""

    # ------------------------------------------------------------------ rounds
    @abstractmethod
    def current_round(self) -> Round | None:
        """The round with the highest number, if any."""

    @abstractmethod
    def round(self, number: int) -> Round | None:
        """A round by number."""

    @abstractmethod
    def put_round(self, rnd: Round) -> None:
        """Insert a round or replace the stored one with the same number."""

    # ------------------------------------------------------------------ uploads
    @abstractmethod
    def uploads(self, round_number: int) -> list[Upload]:
        """A round's accepted uploads, ordered by client id."""

    @abstractmethod
    def accepted_uploads(self, round_number: int) -> list[Upload]:
        """A round's accepted uploads in the order they were accepted."""

    @abstractmethod
    def upload_count(self, round_number: int) -> int:
        """Number of accepted uploads of a round."""

    @abstractmethod
    def has_upload(self, round_number: int, client_id: str) -> bool:
        """Whether the client has an accepted upload in the round."""

    @abstractmethod
    def nonce_seen(self, client_id: str, nonce: bytes) -> bool:
        """Whether an upload with this (client, nonce) was ever accepted."""

    @abstractmethod
    def max_epsilon(self, client_id: str) -> float | None:
        """The largest ε the client reported in any accepted upload (None: no upload)."""

    @abstractmethod
    def add_upload(self, upload: Upload) -> None:
        """Record an accepted upload and its nonce (raises StoreConflict if either exists)."""

    # ------------------------------------------------------------------ withdrawals
    @abstractmethod
    def withdrawal(self, client_id: str) -> Signed[WithdrawalStatement] | None:
        """The client's withdrawal, if it withdrew."""

    @abstractmethod
    def withdrawals(self) -> list[Signed[WithdrawalStatement]]:
        """Every withdrawal, ordered by client id."""

    @abstractmethod
    def add_withdrawal(self, signed: Signed[WithdrawalStatement]) -> bool:
        """Record a withdrawal; False (and no change) if the client already withdrew."""

    # ------------------------------------------------------------------ tasks
    @abstractmethod
    def add_task(self, task: Task) -> Task:
        """Store a new task; returns it with its assigned ``task_id`` (ids increase)."""

    @abstractmethod
    def put_task(self, task: Task) -> None:
        """Replace a stored task (same ``task_id``)."""

    @abstractmethod
    def task(self, task_id: int) -> Task | None:
        """A task by id."""

    @abstractmethod
    def tasks(
        self, *, state: TaskState | None = None, round_number: int | None = None
    ) -> list[Task]:
        """Tasks, by id, optionally only those in ``state`` and of ``round_number``."""

    # ------------------------------------------------------------------ answers
    @abstractmethod
    def answers(self, task_id: int, kind: type[AnswerT]) -> list[AnswerT]:
        """A task's answers of one kind (its partials or its refusals), by key holder."""

    @abstractmethod
    def add_answer(self, record: Answer) -> bool:
        """Record a partial or a refusal.

        Returns False (and changes nothing) if this key holder already sent an answer of
        the same kind for the task; a partial and a refusal are kept apart.
        """

    # ------------------------------------------------------------------ certificates
    @abstractmethod
    def certificates(self, round_number: int, kind: str) -> list[CertificateRecord]:
        """A round's locks or endorsements, by key holder."""

    @abstractmethod
    def add_certificate(self, record: CertificateRecord) -> bool:
        """Record a lock or endorsement; False (and no change) if the key holder sent one."""

    def answered(self, task_id: int) -> set[int]:
        """Key holders that sent a partial or a refusal for the task."""
        partials = {p.keyholder for p in self.answers(task_id, PartialRecord)}
        return partials | {r.keyholder for r in self.answers(task_id, RefusalRecord)}

    def set_task_state(self, task_id: int, state: TaskState) -> None:
        """Move a task to another state."""
        task = self.task(task_id)
        if task is not None and task.state is not state:
            self.put_task(dataclasses.replace(task, state=state))

    def rounds(self) -> Iterator[Round]:
        """Every round, by number."""
        number = 1
        while (rnd := self.round(number)) is not None:
            yield rnd
            number += 1
