"""The SQLite store's schema and how its rows become typed values.

The tables and columns are stable: operators and the test harness read them with plain
SQL. Columns added since the first schema have defaults. The ``ceremony`` table is keyed
by key epoch since key rotation (issue 11): a store from before it has no ``epoch``
column, and its ceremony's signatures (an older domain) would not verify anyway. Likewise
``uploads.dp`` (the signed DP marker, issue 12): older uploads were signed under
``secagg/upload/v1`` and would not verify. ``uploads_by_client`` serves the largest ε a
client reported (:meth:`~server.store.base.Store.max_epsilon`).
"""

from __future__ import annotations

from typing import Any

from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import Signed, UploadStatement, WithdrawalStatement
from secagg.protocol.status import RoundStatus, StatusKind
from server.state import Round, RoundState, Task, TaskState, Upload
from server.store.base import Answer, PartialRecord, RefusalRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ceremony(
    epoch INTEGER NOT NULL, kind INTEGER NOT NULL, sender INTEGER NOT NULL,
    recipient INTEGER NOT NULL, body BLOB NOT NULL, signature BLOB NOT NULL,
    PRIMARY KEY(epoch, kind, sender, recipient));
CREATE TABLE IF NOT EXISTS key_epochs(
    epoch INTEGER PRIMARY KEY, first_round INTEGER, announced INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS rounds(
    round INTEGER PRIMARY KEY, state INTEGER NOT NULL, global_model_hash BLOB NOT NULL,
    opened_at REAL NOT NULL, deadline REAL NOT NULL, aggregate_hash BLOB,
    aggregate_digest BLOB, release BLOB, status TEXT NOT NULL DEFAULT '',
    status_kind TEXT NOT NULL DEFAULT 'collecting', status_reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS uploads(
    round INTEGER NOT NULL, client_id TEXT NOT NULL, nonce BLOB NOT NULL,
    global_model_hash BLOB NOT NULL, weight INTEGER NOT NULL, ciphertext_hash BLOB NOT NULL,
    signature BLOB NOT NULL, accepted_at REAL NOT NULL, epsilon REAL NOT NULL DEFAULT 0,
    dp INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(round, client_id));
CREATE INDEX IF NOT EXISTS uploads_by_client ON uploads(client_id, epsilon);
CREATE TABLE IF NOT EXISTS withdrawals(
    client_id TEXT PRIMARY KEY, round INTEGER NOT NULL, reason TEXT NOT NULL,
    signature BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nonces(
    client_id TEXT NOT NULL, nonce BLOB NOT NULL, PRIMARY KEY(client_id, nonce));
CREATE TABLE IF NOT EXISTS tasks(
    task_id INTEGER PRIMARY KEY AUTOINCREMENT, round INTEGER NOT NULL, task BLOB NOT NULL,
    admin INTEGER NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS partials(
    task_id INTEGER NOT NULL, keyholder INTEGER NOT NULL, partial_hash BLOB NOT NULL,
    partial_digest BLOB NOT NULL, signature BLOB NOT NULL, PRIMARY KEY(task_id, keyholder));
CREATE TABLE IF NOT EXISTS refusals(
    task_id INTEGER NOT NULL, keyholder INTEGER NOT NULL, reason TEXT NOT NULL,
    signature BLOB NOT NULL, PRIMARY KEY(task_id, keyholder));
CREATE TABLE IF NOT EXISTS certificates(
    round INTEGER NOT NULL, kind TEXT NOT NULL, keyholder INTEGER NOT NULL,
    message BLOB NOT NULL, PRIMARY KEY(round, kind, keyholder));
"""

#: The table of each kind of answer; its columns are the record's fields, in order.
ANSWER_TABLES: dict[type[Answer], str] = {PartialRecord: "partials", RefusalRecord: "refusals"}

ROUND_COLUMNS = (
    "round, state, global_model_hash, opened_at, deadline, aggregate_hash, aggregate_digest,"
    " release, status, status_kind, status_reason"
)
UPLOAD_COLUMNS = (
    "round, client_id, nonce, global_model_hash, weight, ciphertext_hash, signature,"
    " accepted_at, epsilon, dp"
)


def _optional(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def round_from_row(row: Any) -> Round:
    """A ``rounds`` row (columns ``ROUND_COLUMNS``)."""
    number, state, gmh, opened, deadline, agg_hash, agg_digest, release = row[:8]
    text, kind_name, reason = row[8:]
    kind = StatusKind(kind_name)
    status = RoundStatus(kind, reason, str(text).removeprefix(str(RoundStatus(kind))))
    return Round(
        int(number),
        RoundState(int(state)),
        bytes(gmh),
        float(opened),
        float(deadline),
        status,
        _optional(agg_hash),
        _optional(agg_digest),
        _optional(release),
    )


def upload_from_row(deployment_id: str, row: Any) -> Upload:
    """An ``uploads`` row (columns ``UPLOAD_COLUMNS``)."""
    rnd, client, nonce, gmh, weight, ct_hash, signature, accepted_at, epsilon, dp = row
    statement = UploadStatement(
        deployment_id, int(rnd), str(client), bytes(nonce), bytes(gmh), bytes(ct_hash),
        int(weight), float(epsilon), bool(dp),
    )  # fmt: skip
    return Upload(Signed(statement, bytes(signature)), float(accepted_at))


def withdrawal_from_row(deployment_id: str, row: Any) -> Signed[WithdrawalStatement]:
    """A ``withdrawals`` row (client_id, round, reason, signature)."""
    client, rnd, reason, signature = row
    statement = WithdrawalStatement(deployment_id, str(client), int(rnd), str(reason))
    return Signed(statement, bytes(signature))


def task_from_row(deployment_id: str, row: Any) -> Task:
    """A ``tasks`` row (task_id, round, task, admin, state, created_at)."""
    task_id, rnd, blob, admin, state, created_at = row
    msg = pb.DecryptionTask.FromString(bytes(blob))
    contributions = tuple(
        UploadStatement.from_contribution(deployment_id, int(rnd), c) for c in msg.contributions
    )
    return Task(
        int(task_id),
        int(rnd),
        msg.aggregate_hash,
        msg.aggregate_digest,
        contributions,
        tuple(msg.quorum),
        bool(admin),
        TaskState(state),
        float(created_at),
        msg.log_size,
        msg.log_head,
    )
