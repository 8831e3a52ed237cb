"""Locks and endorsements: what the server gathers from key holders around a decryption.

A closed round is first **locked**: every key holder is asked (a LOCK task) to check the
contributor set, recompute the aggregate and lock the round to it; decryption tasks are
planned only once :func:`~secagg.protocol.certificates.lock_size` key holders locked,
and carry their locks (the lock certificate). When the round's quorums agree on a model
(:mod:`server.release`), it becomes the round's :class:`Candidate` and key holders are
asked to **endorse** it (an ENDORSE task): each combines the partials itself and signs
the model's hash. ``t`` endorsements release it; they travel in the ``Release``.

Security
--------
The server enforces none of this for anyone's benefit but its own liveness: key holders
refuse a decryption without a lock certificate and clients refuse a model without ``t``
endorsements (:mod:`secagg.protocol.certificates`). The server checks locks and
endorsements only so that it stores and logs nothing it could not show. A key holder
that refused its lock or endorsement is not asked again by this server process; the
refusal is logged and becomes the round's status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from secagg.errors import PermissionDenied, PolicyViolation
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import AuditEntry, EndorsementEntry, LockEntry, RefusalEntry
from secagg.protocol.certificates import lock_size
from secagg.protocol.statements import (
    EndorsementStatement,
    LockStatement,
    RefusalStatement,
)
from secagg.protocol.status import RoundStatus
from server.context import Context
from server.state import Round, RoundState, Task
from server.store.base import CertificateRecord

log = logging.getLogger("secagg.server")

LOCK = "lock"
ENDORSEMENT = "endorsement"


@dataclass(frozen=True)
class Candidate:
    """A model the round's quorums agreed on, waiting for ``t`` endorsements."""

    family: tuple[Task, ...]
    model_hash: bytes
    partials: tuple[pb.QuorumPartials, ...]


class Certificates:
    """Serves LOCK and ENDORSE tasks and stores the locks and endorsements they return."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.candidates: dict[int, Candidate] = {}
        self._refused: set[tuple[int, int, str]] = set()  # (round, key holder, kind)

    @property
    def lock_size(self) -> int:
        """How many key holders must lock a round before it is decrypted."""
        return lock_size(self.ctx.policy.keyholders, self.ctx.policy.threshold)

    def _messages(self, round_number: int, kind: str) -> list[bytes]:
        return [c.message for c in self.ctx.store.certificates(round_number, kind)]

    def locks(self, round_number: int) -> list[pb.Lock]:
        """The round's stored locks (each verified when it arrived)."""
        return [pb.Lock.FromString(m) for m in self._messages(round_number, LOCK)]

    def endorsements(self, round_number: int) -> list[pb.Endorsement]:
        """The round's stored endorsements (each verified when it arrived)."""
        return [pb.Endorsement.FromString(m) for m in self._messages(round_number, ENDORSEMENT)]

    def locked(self, rnd: Round) -> bool:
        """Whether enough key holders locked the round for its decryption to start."""
        return len(self.locks(rnd.number)) >= self.lock_size

    def lock_refused(self, round_number: int) -> bool:
        """Whether a key holder refused to lock the round (its refusal is the status)."""
        return any(r == round_number and kind == LOCK for r, _, kind in self._refused)

    def _asked(self, rnd: Round, keyholder: int, kind: str) -> bool:
        done = {c.keyholder for c in self.ctx.store.certificates(rnd.number, kind)}
        return keyholder in done or (rnd.number, keyholder, kind) in self._refused

    # ------------------------------------------------------------------ tasks
    def lock_task(self, rnd: Round, keyholder: int) -> pb.DecryptionTask | None:
        """A LOCK task for this key holder, if the round still needs its lock."""
        if rnd.state is not RoundState.DECRYPTING or self.locked(rnd):
            return None
        if self._asked(rnd, keyholder, LOCK):
            return None
        uploads = self.ctx.store.uploads(rnd.number)
        return self._task(
            rnd,
            pb.TASK_LOCK,
            contributions=[u.statement.to_contribution(u.signed.signature) for u in uploads],
        )

    def endorse_task(self, rnd: Round, keyholder: int) -> pb.DecryptionTask | None:
        """An ENDORSE task for this key holder, if the round has a candidate it did not endorse."""
        candidate = self.candidates.get(rnd.number)
        if candidate is None or rnd.state is not RoundState.DECRYPTING:
            return None
        if self._asked(rnd, keyholder, ENDORSEMENT):
            return None
        return self._task(
            rnd,
            pb.TASK_ENDORSE,
            locks=self.locks(rnd.number),
            partials=list(candidate.partials),
            model_hash=candidate.model_hash,
        )

    @staticmethod
    def _task(rnd: Round, kind: pb.TaskKind, **fields: Any) -> pb.DecryptionTask:
        """A LOCK or ENDORSE task of the round's aggregate (task id 0)."""
        assert rnd.aggregate_hash is not None and rnd.aggregate_digest is not None
        return pb.DecryptionTask(
            pending=True,
            kind=kind,
            round=rnd.number,
            aggregate_hash=rnd.aggregate_hash,
            aggregate_digest=rnd.aggregate_digest,
            **fields,
        )

    # ------------------------------------------------------------------ answers
    def _current(self, round_number: int, aggregate_digest: bytes, what: str) -> Round:
        rnd = self.ctx.store.current_round()
        if (
            rnd is None
            or rnd.state is not RoundState.DECRYPTING
            or rnd.number != round_number
            or rnd.aggregate_digest != aggregate_digest
        ):
            raise PolicyViolation(f"the {what} does not answer the round being decrypted")
        return rnd

    def submit_lock(self, keyholder: int, msg: pb.Lock) -> None:
        """Verify and store a key holder's lock of the current round."""
        _same_caller(keyholder, msg.keyholder)
        self._current(msg.round, msg.aggregate_digest, "lock")
        signed = LockStatement.from_proto(self.ctx.roster.deployment_id, msg)
        signed.verify(self.ctx.roster)
        self._store(LOCK, msg, LockEntry.of(signed))
        log.info(
            "round %d: key holder %d locked (%d of %d)",
            msg.round,
            keyholder,
            len(self.locks(msg.round)),
            self.lock_size,
        )

    def submit_endorsement(self, keyholder: int, msg: pb.Endorsement) -> None:
        """Verify and store a key holder's endorsement of the round's candidate model."""
        _same_caller(keyholder, msg.keyholder)
        self._current(msg.round, msg.aggregate_digest, "endorsement")
        candidate = self.candidates.get(msg.round)
        if candidate is None or msg.model_hash != candidate.model_hash:
            raise PolicyViolation("the endorsement names another model than the round's")
        signed = EndorsementStatement.from_proto(self.ctx.roster.deployment_id, msg)
        signed.verify(self.ctx.roster)
        self._store(ENDORSEMENT, msg, EndorsementEntry.of(signed))
        log.info("round %d: key holder %d endorsed the model", msg.round, keyholder)

    def _store(self, kind: str, msg: pb.Lock | pb.Endorsement, entry: AuditEntry) -> None:
        """Store a verified lock or endorsement once, with its audit entry."""
        record = CertificateRecord(msg.round, kind, msg.keyholder, msg.SerializeToString())
        with self.ctx.store.transaction():
            if self.ctx.store.add_certificate(record):
                self.ctx.audit.record(entry)

    def refuse(self, keyholder: int, refusal: pb.Refusal) -> None:
        """Record a key holder's signed refusal to lock or endorse the current round."""
        _same_caller(keyholder, refusal.keyholder)
        rnd = self.ctx.store.current_round()
        if rnd is None or rnd.state is not RoundState.DECRYPTING or rnd.number != refusal.round:
            raise PolicyViolation("the refusal does not answer the round being decrypted")
        signed = RefusalStatement.from_proto(self.ctx.roster.deployment_id, refusal)
        signed.verify(self.ctx.roster)
        kind = ENDORSEMENT if rnd.number in self.candidates else LOCK
        self._refused.add((rnd.number, keyholder, kind))
        with self.ctx.store.transaction():
            self.ctx.audit.record(
                RefusalEntry(rnd.number, 0, keyholder, refusal.reason, refusal.signature)
            )
            self.ctx.set_status(rnd.number, RoundStatus.refused(keyholder, refusal.reason))
        log.warning(
            "round %d: key holder %d refused to %s: %s", rnd.number, keyholder, kind, refusal.reason
        )


def _same_caller(caller: int, claimed: int) -> None:
    """The message names the key holder whose certificate sent it (else PermissionDenied)."""
    if claimed != caller:
        raise PermissionDenied("keyholder field does not match the authenticated certificate")
