"""The round state machine: collecting -> aggregating -> decrypting -> released -> next.

Every transition commits to SQLite before it takes effect, so a restarted server resumes
where it stopped: accepted uploads are rows (their ciphertexts are blobs written first),
and the running aggregate is rebuilt from them. Memory is O(model): uploads are folded
into a streaming :class:`~secagg.aggregate.Aggregator` as they arrive.

The server never holds key material. It asks a quorum of live key holders for partial
decryptions, combines them, signs the release and opens the next round.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any, cast

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg import constants as C
from secagg.aggregate import Aggregator, EncryptedAggregate
from secagg.protocol.audit_log import AuditLog, checkpoint_digest
from secagg.ciphertext import EncryptedVector
from secagg.protocol.roster import Roster
from secagg.encoding import F64
from secagg.errors import (
    DuplicateUpload,
    InvalidCiphertext,
    PermissionDenied,
    PolicyViolation,
    ReplayDetected,
    SecAggError,
    SizeLimitExceeded,
    WeightBudgetExceeded,
)
from secagg.keys import JointPublicKey
from secagg.protocol.model_blob import encode_model
from secagg.proto import service_pb2 as pb
from secagg.protocol.signing import (
    partial_signature_digest,
    refusal_digest,
    release_digest,
    sign,
    upload_digest,
    verify,
    withdrawal_digest,
)
from secagg.threshold import PartialDecryption, combine

from server.ceremony import Ceremony
from server.store import BlobStore, Database

log = logging.getLogger("secagg.server")


class RoundManager:
    """All round state of one server; thread-safe (one lock)."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        roster: Roster,
        signing_key: Ed25519PrivateKey,
        initial_model: F64 | None = None,
        *,
        audit: AuditLog,
        roster_digest: bytes = b"",
    ) -> None:
        self.audit = audit
        self.roster_digest = roster_digest
        self.db = db
        self.blobs = blobs
        self.roster = roster
        self.policy = roster.policy
        self.params = roster.params
        self.signing_key = signing_key
        self.ceremony = Ceremony(db, roster, self.log)
        self.lock = threading.RLock()
        self.live: dict[int, float] = {}
        self.public_key: JointPublicKey | None = None
        self.aggregator: Aggregator | None = None
        self._aggregator_round = 0
        length = self.policy.model_length
        self.initial_model = (
            np.zeros(length, dtype=np.float64) if initial_model is None else initial_model
        )
        if self.initial_model.shape != (length,):
            raise PolicyViolation(f"initial model must have length {length}")

    # ------------------------------------------------------------------ audit
    def log(self, type_: str, **data: Any) -> tuple[int, bytes]:
        """Append an audit entry (bytes as hex); raises AuditWriteFailed to refuse the caller."""
        clean = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in data.items()}
        return self.audit.append(type_, clean)

    def log_rejection(self, client: str, header: pb.UploadHeader | None, reason: str) -> None:
        """Record a refused upload (best effort: it is refused either way)."""
        try:
            self.log(
                "upload_rejected",
                round=header.round if header else 0,
                client=client,
                ciphertext_hash=header.blob.sha256 if header else b"",
                reason=reason[:500],
            )
        except SecAggError:
            log.exception("could not record a rejected upload")

    # ------------------------------------------------------------------ queries
    def _current(self) -> Any:
        rows = self.db.query(
            "SELECT round, state, global_model_hash, deadline, aggregate_hash, aggregate_digest,"
            " status FROM rounds ORDER BY round DESC LIMIT 1"
        )
        return rows[0] if rows else None

    def round_info(self) -> pb.RoundInfo:
        """The current round as clients see it."""
        with self.lock:
            cur = self._current()
            pk_id = self.public_key.id_bytes if self.public_key else b""
            if cur is None:
                return pb.RoundInfo(
                    state=pb.CEREMONY,
                    public_key_id=pk_id,
                    status="key ceremony in progress",
                    model_length=self.policy.model_length,
                )
            rnd, state, gmh, deadline, _, _, status = cur
            count = self.db.query("SELECT COUNT(*) FROM uploads WHERE round=?", (rnd,))[0][0]
            return pb.RoundInfo(
                round=int(rnd),
                state=cast(pb.RoundState, int(state)),
                global_model_hash=bytes(gmh),
                public_key_id=pk_id,
                deadline_unix=float(deadline),
                accepted_uploads=int(count),
                status=str(status),
                model_length=self.policy.model_length,
            )

    def release(self, round_number: int) -> pb.Release | None:
        """The signed release of a round, if any."""
        rows = self.db.query("SELECT release FROM rounds WHERE round=?", (round_number,))
        if not rows or rows[0][0] is None:
            return None
        rel = pb.Release()
        rel.ParseFromString(bytes(rows[0][0]))
        return rel

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        """Rebuild in-memory state after a (re)start."""
        with self.lock:
            self.public_key = self.ceremony.joint_public_key()
            if self.audit.size == 0:
                self.log(
                    "roster",
                    deployment_id=self.roster.deployment_id,
                    roster_sha256=self.roster_digest,
                    params_id=self.params.id,
                    policy=dict(vars(self.policy)),
                )
            cur = self._current()
            if cur is not None and cur[1] == pb.COLLECTING:
                self._rebuild_aggregator(int(cur[0]))
            self.tick()

    def _rebuild_aggregator(self, rnd: int) -> None:
        assert self.public_key is not None
        agg = Aggregator(
            self.params, public_key_id=self.public_key.id_bytes, length=self.policy.model_length
        )
        for ct_hash, weight in self.db.query(
            "SELECT ciphertext_hash, weight FROM uploads WHERE round=? ORDER BY accepted_at", (rnd,)
        ):
            vec = EncryptedVector.from_bytes(self.blobs.get(bytes(ct_hash)), self.params)
            agg.add(vec, int(weight))
        self.aggregator, self._aggregator_round = agg, rnd
        log.info("round %d: rebuilt the aggregate from %d stored uploads", rnd, agg.contributors)

    def _open_round(self, tx: sqlite3.Connection, rnd: int, model_hash: bytes) -> None:
        self.log("round_open", round=rnd, global_model_hash=model_hash)
        now = time.time()
        tx.execute(
            "INSERT INTO rounds(round, state, global_model_hash, opened_at, deadline, status)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                rnd,
                pb.COLLECTING,
                model_hash,
                now,
                now + self.policy.round_timeout_seconds,
                "collecting",
            ),
        )
        assert self.public_key is not None
        self.aggregator = Aggregator(
            self.params, public_key_id=self.public_key.id_bytes, length=self.policy.model_length
        )
        self._aggregator_round = rnd
        log.info("round %d: open, global model %s", rnd, model_hash.hex()[:16])

    def tick(self) -> None:
        """Advance the state machine (called periodically and after every event)."""
        with self.lock:
            if self.public_key is None:
                self.public_key = self.ceremony.joint_public_key()
            cur = self._current()
            if cur is None:
                bundle = self.ceremony.bundle()
                if bundle is not None:
                    model_hash = self.blobs.put(encode_model(1, self.initial_model))
                    assert self.public_key is not None
                    with self.db.transaction() as tx:
                        self.log(
                            "public_key",
                            id=self.public_key.id_bytes,
                            keyholders=self.public_key.keyholders,
                            threshold=self.public_key.threshold,
                        )
                        self._open_round(tx, 1, model_hash)
                return
            rnd, state = int(cur[0]), int(cur[1])
            if state == pb.COLLECTING:
                self._maybe_close(rnd, float(cur[3]))
            elif state == pb.DECRYPTING:
                self._ensure_task(rnd)

    def _set_status(self, rnd: int, status: str) -> None:
        with self.db.transaction() as tx:
            old = tx.execute("SELECT status FROM rounds WHERE round=?", (rnd,)).fetchone()
            if old is not None and old[0] != status:
                tx.execute("UPDATE rounds SET status=? WHERE round=?", (status, rnd))
                log.info("round %d: %s", rnd, status)

    def _maybe_close(self, rnd: int, deadline: float) -> None:
        count = int(self.db.query("SELECT COUNT(*) FROM uploads WHERE round=?", (rnd,))[0][0])
        withdrawn = {
            r[0]
            for r in self.db.query("SELECT client_id FROM withdrawals WHERE round <= ?", (rnd,))
        }
        uploaded = {
            r[0] for r in self.db.query("SELECT client_id FROM uploads WHERE round=?", (rnd,))
        }
        active = {c.name for c in self.roster.clients} - (withdrawn - uploaded)
        everyone = uploaded >= active
        if not everyone and time.time() < deadline:
            return
        if count < self.policy.min_contributors:
            self._set_status(
                rnd, f"waiting: {count} of at least {self.policy.min_contributors} contributors"
            )
            return
        if self.aggregator is None or self._aggregator_round != rnd:
            self._rebuild_aggregator(rnd)
        assert self.aggregator is not None
        aggregate = self.aggregator.result()
        agg_hash = self.blobs.put(aggregate.to_bytes())
        with self.db.transaction() as tx:
            self.log(
                "aggregate",
                round=rnd,
                aggregate_hash=agg_hash,
                aggregate_digest=aggregate.digest,
                total_weight=aggregate.total_weight,
                inputs=[
                    {
                        "client": c.client_id,
                        "ciphertext_hash": c.ciphertext_hash.hex(),
                        "weight": c.weight,
                    }
                    for c in self._contributions(rnd)
                ],
            )
            tx.execute(
                "UPDATE rounds SET state=?, aggregate_hash=?, aggregate_digest=?, status=?"
                " WHERE round=?",
                (pb.DECRYPTING, agg_hash, aggregate.digest, f"decrypting {count} uploads", rnd),
            )
        self.aggregator = None
        log.info("round %d: closed with %d uploads, aggregate %s", rnd, count, agg_hash.hex()[:16])
        self._ensure_task(rnd)

    # ------------------------------------------------------------------ uploads
    def accept_upload(self, client: str, header: pb.UploadHeader, blob: bytes) -> pb.UploadReceipt:
        """Validate and durably accept one upload; raises a SecAggError otherwise."""
        with self.lock:
            self.precheck_upload(client, header)
            vector = EncryptedVector.from_bytes(
                blob, self.params, max_bytes=self.policy.max_upload_bytes
            )
            assert self.public_key is not None and self.aggregator is not None
            if vector.public_key_id != self.public_key.id_bytes:
                raise InvalidCiphertext("ciphertext is not under the deployment's joint public key")
            if vector.length != self.policy.model_length:
                raise InvalidCiphertext(
                    f"vector length {vector.length}; the deployment's model has "
                    f"{self.policy.model_length} values"
                )
            if self.aggregator.total_weight + header.weight > self.params.max_total_weight:
                raise WeightBudgetExceeded("this upload would exceed the round's weight budget")
            ct_hash = self.blobs.put(blob)
            with self.db.transaction() as tx:
                self.log(
                    "upload",
                    round=header.round,
                    client=client,
                    nonce=header.nonce,
                    global_model_hash=header.global_model_hash,
                    weight=header.weight,
                    ciphertext_hash=ct_hash,
                    epsilon=header.epsilon,
                    signature=header.signature,
                )
                tx.execute("INSERT INTO nonces VALUES (?, ?)", (client, header.nonce))
                tx.execute(
                    "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        header.round,
                        client,
                        header.nonce,
                        header.global_model_hash,
                        header.weight,
                        ct_hash,
                        header.signature,
                        time.time(),
                        header.epsilon,
                    ),
                )
            self.aggregator.add(vector, header.weight)
            count = int(
                self.db.query("SELECT COUNT(*) FROM uploads WHERE round=?", (header.round,))[0][0]
            )
            log.info(
                "round %d: accepted upload from %s (weight %d)", header.round, client, header.weight
            )
            self.tick()
            return pb.UploadReceipt(
                round=header.round, ciphertext_hash=ct_hash, accepted_uploads=count
            )

    def withdraw(self, client: str, request: pb.Withdrawal) -> None:
        """Record a client's signed withdrawal from this round on."""
        with self.lock:
            if request.client_id != client:
                raise PermissionDenied("client_id does not match the authenticated certificate")
            verify(
                self.roster.client(client).signing_public_key,
                request.signature,
                withdrawal_digest(
                    deployment_id=self.roster.deployment_id,
                    client_id=client,
                    round_number=request.round,
                    reason=request.reason,
                ),
                who=client,
            )
            with self.db.transaction() as tx:
                if not tx.execute(
                    "SELECT 1 FROM withdrawals WHERE client_id=?", (client,)
                ).fetchone():
                    self.log(
                        "withdrawal",
                        client=client,
                        round=request.round,
                        reason=request.reason[:500],
                        signature=request.signature,
                    )
                tx.execute(
                    "INSERT OR IGNORE INTO withdrawals VALUES (?, ?, ?, ?)",
                    (client, request.round, request.reason[:500], request.signature),
                )
            log.info("%s withdrew from round %d on: %s", client, request.round, request.reason)
            self.tick()

    def precheck_upload(self, client: str, header: pb.UploadHeader) -> None:
        """Everything that can be checked before the ciphertext is received."""
        if header.client_id != client:
            raise PermissionDenied("client_id does not match the authenticated certificate")
        if self.db.query(
            "SELECT 1 FROM withdrawals WHERE client_id=? AND round<=?", (client, header.round)
        ):
            raise PolicyViolation(f"{client} has withdrawn from the federation")
        if len(header.nonce) != C.UPLOAD_NONCE_BYTES:
            raise PolicyViolation(f"nonce must be {C.UPLOAD_NONCE_BYTES} bytes")
        if self.db.query(
            "SELECT 1 FROM nonces WHERE client_id=? AND nonce=?", (client, header.nonce)
        ):
            raise ReplayDetected("this upload (client, nonce) was already received")
        cur = self._current()
        if cur is None or int(cur[1]) != pb.COLLECTING or int(cur[0]) != header.round:
            raise PolicyViolation(f"round {header.round} is not collecting uploads")
        if bytes(cur[2]) != header.global_model_hash:
            raise PolicyViolation("upload is signed over another global model than this round's")
        if self.db.query(
            "SELECT 1 FROM uploads WHERE round=? AND client_id=?", (header.round, client)
        ):
            raise DuplicateUpload(
                f"{client} already has an accepted upload in round {header.round}"
            )
        if not 0.0 <= header.epsilon <= self.policy.epsilon_budget:
            raise PolicyViolation(
                f"reported epsilon {header.epsilon:g} exceeds the deployment's budget "
                f"{self.policy.epsilon_budget:g}"
            )
        if not 1 <= header.weight <= self.params.max_total_weight:
            raise WeightBudgetExceeded(f"weight must lie in 1..{self.params.max_total_weight}")
        if header.blob.total_size > self.policy.max_upload_bytes:
            raise SizeLimitExceeded(
                f"upload of {header.blob.total_size} bytes exceeds the cap of "
                f"{self.policy.max_upload_bytes} bytes"
            )
        verify(
            self.roster.client(client).signing_public_key,
            header.signature,
            upload_digest(
                deployment_id=self.roster.deployment_id,
                round_number=header.round,
                client_id=client,
                nonce=header.nonce,
                global_model_hash=header.global_model_hash,
                ciphertext_hash=header.blob.sha256,
                weight=header.weight,
                epsilon=header.epsilon,
            ),
            who=client,
        )

    # ------------------------------------------------------------------ decryption tasks
    def seen(self, keyholder: int) -> None:
        """Record that a key holder polled (liveness)."""
        with self.lock:
            self.live[keyholder] = time.monotonic()

    def _live(self) -> list[int]:
        now = time.monotonic()
        return sorted(i for i, t in self.live.items() if now - t < C.KEYHOLDER_LIVENESS_SECONDS)

    def _task_rows(self, rnd: int) -> list[Any]:
        return self.db.query(
            "SELECT task_id, task, admin, state FROM tasks WHERE round=? AND state='open'", (rnd,)
        )

    def _contributions(self, rnd: int, clients: list[str] | None = None) -> list[pb.Contribution]:
        rows = self.db.query(
            "SELECT client_id, nonce, global_model_hash, weight, ciphertext_hash, signature,"
            " epsilon FROM uploads WHERE round=? ORDER BY client_id",
            (rnd,),
        )
        return [
            pb.Contribution(
                client_id=c,
                nonce=n,
                global_model_hash=g,
                weight=w,
                ciphertext_hash=h,
                signature=s,
                epsilon=e,
            )
            for c, n, g, w, h, s, e in rows
            if clients is None or c in clients
        ]

    def _create_task(
        self,
        rnd: int,
        agg_hash: bytes,
        agg_digest: bytes,
        contributions: list[pb.Contribution],
        *,
        admin: bool,
    ) -> int | None:
        live = self._live()
        t = self.policy.threshold
        if len(live) < t:
            self._set_status(
                rnd,
                f"QuorumNotMet: {len(live)} of {self.policy.keyholders} key holders reachable;"
                f" threshold {t}. Nothing released.",
            )
            return None
        task = pb.DecryptionTask(
            pending=True,
            round=rnd,
            aggregate_hash=agg_hash,
            aggregate_digest=agg_digest,
            contributions=contributions,
            quorum=live[:t],
        )
        with self.db.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO tasks(round, task, admin, state, created_at)"
                " VALUES (?, ?, ?, 'open', ?)",
                (rnd, task.SerializeToString(), int(admin), time.time()),
            )
            task_id = int(cur.lastrowid or 0)
            size, head = self.log(
                "decryption_request",
                round=rnd,
                task_id=task_id,
                quorum=list(task.quorum),
                aggregate_hash=agg_hash,
                aggregate_digest=agg_digest,
                contributors=[c.client_id for c in contributions],
                operator=admin,
            )
            task.log_size, task.log_head = size, head
            tx.execute(
                "UPDATE tasks SET task=? WHERE task_id=?", (task.SerializeToString(), task_id)
            )
        if not admin:
            self._set_status(rnd, f"decrypting with key holders {list(task.quorum)}")
        return task_id

    def _ensure_task(self, rnd: int) -> None:
        """Keep one open (non-admin) task whose quorum is alive."""
        row = self.db.query(
            "SELECT aggregate_hash, aggregate_digest FROM rounds WHERE round=?", (rnd,)
        )[0]
        for task_id, blob, admin, _ in self._task_rows(rnd):
            if admin:
                continue
            task = pb.DecryptionTask()
            task.ParseFromString(bytes(blob))
            answered = {
                int(r[0])
                for r in self.db.query("SELECT keyholder FROM partials WHERE task_id=?", (task_id,))
            }
            missing = [i for i in task.quorum if i not in answered]
            if all(i in self._live() for i in missing):
                return
            with self.db.transaction() as tx:
                tx.execute("UPDATE tasks SET state='superseded' WHERE task_id=?", (task_id,))
            log.info("round %d: key holders %s unreachable; choosing a new quorum", rnd, missing)
        self._create_task(rnd, bytes(row[0]), bytes(row[1]), self._contributions(rnd), admin=False)

    def task_for(self, keyholder: int) -> pb.DecryptionTask:
        """The open task this key holder should answer, if any."""
        with self.lock:
            self.seen(keyholder)
            self.tick()
            rows = self.db.query(
                "SELECT task_id, task FROM tasks WHERE state='open' ORDER BY task_id"
            )
            for task_id, blob in rows:
                task = pb.DecryptionTask()
                task.ParseFromString(bytes(blob))
                done = self.db.query(
                    "SELECT 1 FROM partials WHERE task_id=? AND keyholder=? UNION "
                    "SELECT 1 FROM refusals WHERE task_id=? AND keyholder=?",
                    (task_id, keyholder, task_id, keyholder),
                )
                if keyholder in task.quorum and not done:
                    task.task_id = int(task_id)
                    return task
            return pb.DecryptionTask(pending=False)

    def _open_task(self, task_id: int) -> tuple[pb.DecryptionTask, bool]:
        rows = self.db.query("SELECT task, admin, state FROM tasks WHERE task_id=?", (task_id,))
        if not rows:
            raise PolicyViolation(f"no decryption task {task_id}")
        task = pb.DecryptionTask()
        task.ParseFromString(bytes(rows[0][0]))
        task.task_id = task_id
        if rows[0][2] != "open":
            raise PolicyViolation(f"decryption task {task_id} is no longer open")
        return task, bool(rows[0][1])

    def submit_partial(self, keyholder: int, header: pb.PartialHeader, blob: bytes) -> str:
        """Store a signed partial; combine and release when the quorum is complete."""
        with self.lock:
            self.seen(keyholder)
            if header.keyholder != keyholder:
                raise PermissionDenied(
                    "keyholder field does not match the authenticated certificate"
                )
            task, admin = self._open_task(header.task_id)
            if keyholder not in task.quorum:
                raise PermissionDenied(f"key holder {keyholder} is not in the task's quorum")
            part = PartialDecryption.from_bytes(blob, self.params)
            if (
                part.aggregate_digest != task.aggregate_digest
                or part.keyholder_index != keyholder
                or list(part.quorum) != list(task.quorum)
            ):
                raise PolicyViolation("partial does not answer this task")
            verify(
                self.roster.keyholder(keyholder).signing_public_key,
                header.signature,
                partial_signature_digest(
                    deployment_id=self.roster.deployment_id,
                    round_number=task.round,
                    keyholder=keyholder,
                    partial_digest=part.digest,
                    aggregate_digest=task.aggregate_digest,
                ),
                who=f"key holder {keyholder}",
            )
            verify(
                self.roster.keyholder(keyholder).signing_public_key,
                header.checkpoint_signature,
                checkpoint_digest(
                    deployment_id=self.roster.deployment_id, size=task.log_size, head=task.log_head
                ),
                who=f"key holder {keyholder} (audit checkpoint)",
            )
            part_hash = self.blobs.put(blob)
            with self.db.transaction() as tx:
                known = tx.execute(
                    "SELECT 1 FROM partials WHERE task_id=? AND keyholder=?",
                    (task.task_id, keyholder),
                ).fetchone()
                if not known:
                    self.log(
                        "partial",
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
                tx.execute(
                    "INSERT OR IGNORE INTO partials VALUES (?, ?, ?, ?, ?)",
                    (task.task_id, keyholder, part_hash, part.digest, header.signature),
                )
            log.info("round %d: partial decryption from key holder %d", task.round, keyholder)
            self._maybe_release(task, admin)
            return "accepted"

    def refuse(self, keyholder: int, refusal: pb.Refusal) -> None:
        """Record a key holder's signed refusal of a task."""
        with self.lock:
            self.seen(keyholder)
            if refusal.keyholder != keyholder:
                raise PermissionDenied(
                    "keyholder field does not match the authenticated certificate"
                )
            task, admin = self._open_task(refusal.task_id)
            verify(
                self.roster.keyholder(keyholder).signing_public_key,
                refusal.signature,
                refusal_digest(
                    deployment_id=self.roster.deployment_id,
                    round_number=task.round,
                    keyholder=keyholder,
                    reason=refusal.reason,
                ),
                who=f"key holder {keyholder}",
            )
            with self.db.transaction() as tx:
                self.log(
                    "refusal",
                    round=task.round,
                    task_id=task.task_id,
                    keyholder=keyholder,
                    reason=refusal.reason,
                    signature=refusal.signature,
                )
                tx.execute(
                    "INSERT OR IGNORE INTO refusals VALUES (?, ?, ?, ?)",
                    (task.task_id, keyholder, refusal.reason, refusal.signature),
                )
            log.warning(
                "round %d: key holder %d refused: %s", task.round, keyholder, refusal.reason
            )
            if not admin:
                self._set_status(
                    task.round, f"PolicyViolation: key holder {keyholder} refused: {refusal.reason}"
                )

    def _maybe_release(self, task: pb.DecryptionTask, admin: bool) -> None:
        rows = self.db.query(
            "SELECT keyholder, partial_hash, partial_digest FROM partials"
            " WHERE task_id=? ORDER BY keyholder",
            (task.task_id,),
        )
        if {int(r[0]) for r in rows} != set(task.quorum):
            return
        cur = self._current()
        assert cur is not None
        rnd = int(cur[0])
        official = (not admin or bytes(cur[5] or b"") == task.aggregate_digest) and (
            rnd == task.round and int(cur[1]) == pb.DECRYPTING
        )
        aggregate = EncryptedAggregate.from_bytes(self.blobs.get(task.aggregate_hash), self.params)
        parts = [
            PartialDecryption.from_bytes(self.blobs.get(bytes(r[1])), self.params) for r in rows
        ]
        model = combine(aggregate, parts)
        if not official:
            with self.db.transaction() as tx:
                tx.execute("UPDATE tasks SET state='completed' WHERE task_id=?", (task.task_id,))
            return
        model_hash = self.blobs.put(encode_model(rnd + 1, model))
        quorum = list(task.quorum)
        digests = [bytes(r[2]) for r in rows]
        rel = pb.Release(
            round=rnd,
            model_hash=model_hash,
            aggregate_digest=task.aggregate_digest,
            quorum=quorum,
            partial_digests=digests,
        )
        rel.server_signature = sign(
            self.signing_key,
            release_digest(
                deployment_id=self.roster.deployment_id,
                round_number=rnd,
                model_hash=model_hash,
                aggregate_digest=task.aggregate_digest,
                quorum=quorum,
                partial_digests=digests,
            ),
        )
        with self.db.transaction() as tx:
            size, head = self.log(
                "release",
                round=rnd,
                task_id=task.task_id,
                model_hash=model_hash,
                aggregate_digest=task.aggregate_digest,
                quorum=quorum,
                partial_digests=[d.hex() for d in digests],
                server_signature=rel.server_signature,
            )
            self.log(
                "checkpoint",
                size=size,
                head=head,
                server_signature=sign(
                    self.signing_key,
                    checkpoint_digest(
                        deployment_id=self.roster.deployment_id, size=size, head=head
                    ),
                ),
            )
            tx.execute("UPDATE tasks SET state='completed' WHERE round=? AND state='open'", (rnd,))
            tx.execute(
                "UPDATE rounds SET state=?, release=?, status=? WHERE round=?",
                (
                    pb.RELEASED,
                    rel.SerializeToString(),
                    f"released model {model_hash.hex()[:16]}",
                    rnd,
                ),
            )
            if rnd < self.policy.rounds:
                self._open_round(tx, rnd + 1, model_hash)
            else:
                now = time.time()
                tx.execute(
                    "INSERT INTO rounds(round, state, global_model_hash, opened_at, deadline,"
                    " status) VALUES (?, ?, ?, ?, ?, ?)",
                    (rnd + 1, pb.FINISHED, model_hash, now, now, "all rounds done"),
                )
        log.info("round %d: released model %s", rnd, model_hash.hex()[:16])

    # ------------------------------------------------------------------ operator
    def admin_task(self, rnd: int, clients: list[str]) -> int:
        """Create a decryption task over an explicit set of a round's uploads."""
        with self.lock:
            contributions = self._contributions(rnd, clients)
            if not contributions:
                raise PolicyViolation(f"no uploads from {clients} in round {rnd}")
            state = self.db.query("SELECT state FROM rounds WHERE round=?", (rnd,))
            if (
                state
                and state[0][0] == pb.DECRYPTING
                and {c.client_id for c in contributions}
                != {c.client_id for c in self._contributions(rnd)}
            ):
                raise PolicyViolation(
                    f"round {rnd} is being decrypted; an operator request must name all its uploads"
                )
            assert self.public_key is not None
            agg = Aggregator(
                self.params, public_key_id=self.public_key.id_bytes, length=self.policy.model_length
            )
            for c in contributions:
                agg.add(
                    EncryptedVector.from_bytes(self.blobs.get(c.ciphertext_hash), self.params),
                    c.weight,
                )
            aggregate = agg.result()
            agg_hash = self.blobs.put(aggregate.to_bytes())
            task_id = self._create_task(rnd, agg_hash, aggregate.digest, contributions, admin=True)
            if task_id is None:
                raise PolicyViolation("QuorumNotMet: not enough key holders reachable")
            return task_id

    def admin_result(self, task_id: int) -> tuple[list[pb.Refusal], bool, bool]:
        """(refusals, completed, released) of an operator task."""
        refusals = [
            pb.Refusal(task_id=task_id, keyholder=k, reason=r)
            for k, r in self.db.query(
                "SELECT keyholder, reason FROM refusals WHERE task_id=?", (task_id,)
            )
        ]
        state = self.db.query("SELECT state, round FROM tasks WHERE task_id=?", (task_id,))[0]
        released = self.release(int(state[1])) is not None
        return refusals, state[0] == "completed", released
