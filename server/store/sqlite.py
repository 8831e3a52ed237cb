"""The SQLite store (WAL, ``synchronous=FULL``): what ``secagg serve`` runs on.

A committed row is the commitment: an upload is accepted exactly when its row commits.
The tables and columns are stable (operators and the test harness read them with
plain SQL: ``rounds``, ``uploads``, ``nonces``, ``withdrawals``, ``tasks``, ``partials``,
``refusals``, ``certificates``, ``ceremony``, ``key_epochs``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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
from server.store.sqlite_rows import (
    ANSWER_TABLES,
    ROUND_COLUMNS,
    SCHEMA,
    UPLOAD_COLUMNS,
    round_from_row,
    task_from_row,
    upload_from_row,
    withdrawal_from_row,
)


class SqliteStore(Store):
    """One connection guarded by a re-entrant lock (the service is small)."""

    def __init__(self, path: Path, *, deployment_id: str) -> None:
        super().__init__(deployment_id=deployment_id)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK if the block raises)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            return list(self._conn.execute(sql, args).fetchall())

    def _write(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        with self.transaction():
            try:
                return self._conn.execute(sql, args)
            except sqlite3.IntegrityError as exc:
                raise StoreConflict(str(exc)) from None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ ceremony
    def ceremony_messages(
        self, kind: int, recipient: int | None = None, *, epoch: int = 1
    ) -> list[pb.CeremonyMessage]:
        """See :class:`Store`."""
        sql = (
            "SELECT kind, sender, recipient, body, signature FROM ceremony"
            " WHERE epoch = ? AND kind = ?"
        )
        args: tuple[object, ...] = (epoch, kind)
        if recipient is not None:
            sql, args = sql + " AND recipient = ?", (epoch, kind, recipient)
        return [
            pb.CeremonyMessage(kind=k, sender=s, recipient=r, body=b, signature=sig, epoch=epoch)
            for k, s, r, b, sig in self._rows(sql + " ORDER BY sender, recipient", args)
        ]

    def add_ceremony_message(self, msg: pb.CeremonyMessage) -> None:
        """See :class:`Store`."""
        self._write(
            "INSERT INTO ceremony VALUES (?, ?, ?, ?, ?, ?)",
            (msg.epoch, msg.kind, msg.sender, msg.recipient, msg.body, msg.signature),
        )

    def key_epochs(self) -> list[KeyEpoch]:
        """See :class:`Store`."""
        rows = self._rows("SELECT epoch, first_round, announced FROM key_epochs ORDER BY epoch")
        return [
            KeyEpoch(int(e), None if first is None else int(first), bool(announced))
            for e, first, announced in rows
        ]

    def put_key_epoch(self, epoch: KeyEpoch) -> None:
        """See :class:`Store`."""
        self._write(
            "INSERT OR REPLACE INTO key_epochs VALUES (?, ?, ?)",
            (epoch.epoch, epoch.first_round, int(epoch.announced)),
        )

    # ------------------------------------------------------------------ rounds
    def current_round(self) -> Round | None:
        """See :class:`Store`."""
        rows = self._rows(f"SELECT {ROUND_COLUMNS} FROM rounds ORDER BY round DESC LIMIT 1")
        return round_from_row(rows[0]) if rows else None

    def round(self, number: int) -> Round | None:
        """See :class:`Store`."""
        rows = self._rows(f"SELECT {ROUND_COLUMNS} FROM rounds WHERE round=?", (number,))
        return round_from_row(rows[0]) if rows else None

    def put_round(self, rnd: Round) -> None:
        """See :class:`Store`."""
        self._write(
            f"INSERT OR REPLACE INTO rounds({ROUND_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                rnd.number,
                int(rnd.state),
                rnd.global_model_hash,
                rnd.opened_at,
                rnd.deadline,
                rnd.aggregate_hash,
                rnd.aggregate_digest,
                rnd.release,
                str(rnd.status),
                rnd.status.kind.value,
                rnd.status.reason,
            ),
        )

    # ------------------------------------------------------------------ uploads
    def uploads(self, round_number: int) -> list[Upload]:
        """See :class:`Store`."""
        rows = self._rows(
            f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE round=? ORDER BY client_id",
            (round_number,),
        )
        return [upload_from_row(self.deployment_id, r) for r in rows]

    def accepted_uploads(self, round_number: int) -> list[Upload]:
        """See :class:`Store`."""
        rows = self._rows(
            f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE round=? ORDER BY rowid",
            (round_number,),
        )
        return [upload_from_row(self.deployment_id, r) for r in rows]

    def upload_count(self, round_number: int) -> int:
        """See :class:`Store`."""
        return int(self._rows("SELECT COUNT(*) FROM uploads WHERE round=?", (round_number,))[0][0])

    def has_upload(self, round_number: int, client_id: str) -> bool:
        """See :class:`Store`."""
        sql = "SELECT 1 FROM uploads WHERE round=? AND client_id=?"
        return bool(self._rows(sql, (round_number, client_id)))

    def nonce_seen(self, client_id: str, nonce: bytes) -> bool:
        """See :class:`Store`."""
        sql = "SELECT 1 FROM nonces WHERE client_id=? AND nonce=?"
        return bool(self._rows(sql, (client_id, nonce)))

    def max_epsilon(self, client_id: str) -> float | None:
        """See :class:`Store`."""
        (value,) = self._rows("SELECT MAX(epsilon) FROM uploads WHERE client_id=?", (client_id,))[0]
        return None if value is None else float(value)

    def add_upload(self, upload: Upload) -> None:
        """See :class:`Store`."""
        s = upload.statement
        with self.transaction():
            self._write("INSERT INTO nonces VALUES (?, ?)", (s.client_id, s.nonce))
            self._write(
                f"INSERT INTO uploads({UPLOAD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (s.round, s.client_id, s.nonce, s.global_model_hash, s.weight,
                 s.ciphertext_hash, upload.signed.signature, upload.accepted_at, s.epsilon,
                 int(s.dp)),
            )  # fmt: skip

    # ------------------------------------------------------------------ withdrawals
    def withdrawal(self, client_id: str) -> Signed[WithdrawalStatement] | None:
        """See :class:`Store`."""
        rows = self._rows(
            "SELECT client_id, round, reason, signature FROM withdrawals WHERE client_id=?",
            (client_id,),
        )
        return withdrawal_from_row(self.deployment_id, rows[0]) if rows else None

    def withdrawals(self) -> list[Signed[WithdrawalStatement]]:
        """See :class:`Store`."""
        rows = self._rows(
            "SELECT client_id, round, reason, signature FROM withdrawals ORDER BY client_id"
        )
        return [withdrawal_from_row(self.deployment_id, r) for r in rows]

    def add_withdrawal(self, signed: Signed[WithdrawalStatement]) -> bool:
        """See :class:`Store`."""
        s = signed.statement
        cur = self._write(
            "INSERT OR IGNORE INTO withdrawals VALUES (?, ?, ?, ?)",
            (s.client_id, s.round, s.reason, signed.signature),
        )
        return cur.rowcount == 1

    # ------------------------------------------------------------------ tasks
    def add_task(self, task: Task) -> Task:
        """See :class:`Store`."""
        cur = self._write(
            "INSERT INTO tasks(round, task, admin, state, created_at) VALUES (?, ?, ?, ?, ?)",
            (
                task.round,
                task.to_proto().SerializeToString(),
                int(task.operator),
                task.state.value,
                task.created_at,
            ),
        )
        stored = self.task(int(cur.lastrowid or 0))
        assert stored is not None
        return stored

    def put_task(self, task: Task) -> None:
        """See :class:`Store`."""
        self._write(
            "UPDATE tasks SET task=?, state=? WHERE task_id=?",
            (task.to_proto().SerializeToString(), task.state.value, task.task_id),
        )

    def task(self, task_id: int) -> Task | None:
        """See :class:`Store`."""
        rows = self._rows(
            "SELECT task_id, round, task, admin, state, created_at FROM tasks WHERE task_id=?",
            (task_id,),
        )
        return task_from_row(self.deployment_id, rows[0]) if rows else None

    def tasks(
        self, *, state: TaskState | None = None, round_number: int | None = None
    ) -> list[Task]:
        """See :class:`Store`."""
        sql = "SELECT task_id, round, task, admin, state, created_at FROM tasks WHERE 1=1"
        args: list[object] = []
        if state is not None:
            sql += " AND state=?"
            args.append(state.value)
        if round_number is not None:
            sql += " AND round=?"
            args.append(round_number)
        return [
            task_from_row(self.deployment_id, r)
            for r in self._rows(sql + " ORDER BY task_id", tuple(args))
        ]

    # ------------------------------------------------------------------ answers
    def answers(self, task_id: int, kind: type[AnswerT]) -> list[AnswerT]:
        """See :class:`Store`."""
        columns = ", ".join(field.name for field in dataclasses.fields(kind))
        rows = self._rows(
            f"SELECT {columns} FROM {ANSWER_TABLES[kind]} WHERE task_id=? ORDER BY keyholder",
            (task_id,),
        )
        return [kind(*row) for row in rows]

    def add_answer(self, record: Answer) -> bool:
        """See :class:`Store`."""
        values = dataclasses.astuple(record)
        placeholders = ", ".join("?" * len(values))
        cur = self._write(
            f"INSERT OR IGNORE INTO {ANSWER_TABLES[type(record)]} VALUES ({placeholders})",
            values,
        )
        return cur.rowcount == 1

    # ------------------------------------------------------------------ certificates
    def certificates(self, round_number: int, kind: str) -> list[CertificateRecord]:
        """See :class:`Store`."""
        rows = self._rows(
            "SELECT round, kind, keyholder, message FROM certificates"
            " WHERE round=? AND kind=? ORDER BY keyholder",
            (round_number, kind),
        )
        return [CertificateRecord(int(r), str(k), int(i), bytes(m)) for r, k, i, m in rows]

    def add_certificate(self, record: CertificateRecord) -> bool:
        """See :class:`Store`."""
        cur = self._write(
            "INSERT OR IGNORE INTO certificates VALUES (?, ?, ?, ?)",
            dataclasses.astuple(record),
        )
        return cur.rowcount == 1
