"""The round state machine: typed rounds and tasks, transitions as pure functions.

A round is COLLECTING (uploads are accepted), then DECRYPTING (its aggregate is fixed
and a quorum of key holders is asked for partial decryptions), then RELEASED; the next
round opens on the released model, and after the last one a FINISHED marker round holds
the final model. Nothing here does I/O, touches a store or runs cryptography: every
function takes the facts it needs (uploads, withdrawals, the policy, ``now`` from an
injected clock) and returns a new value. The effect modules (:mod:`server.uploads`,
:mod:`server.tasks`, :mod:`server.release`) persist what these functions decide.

Notes
-----
The server checks :func:`secagg.protocol.policy.check_decryption` before it closes a
round (:func:`review_collecting`), so it never asks key holders for a decryption it
knows they will refuse; a violating round keeps collecting and says why in its status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

from secagg.errors import MixedGlobalModels, PolicyViolation, WrongRound
from secagg.params import Parameters
from secagg.proto import service_pb2 as pb
from secagg.protocol.policy import check_decryption
from secagg.protocol.roster import Policy
from secagg.protocol.statements import Signed, UploadStatement
from secagg.protocol.status import RoundStatus


class RoundState(IntEnum):
    """States of a round (the values are the wire's ``RoundState``)."""

    COLLECTING = pb.COLLECTING
    DECRYPTING = pb.DECRYPTING
    RELEASED = pb.RELEASED
    FINISHED = pb.FINISHED


class TaskState(Enum):
    """States of a decryption task."""

    OPEN = "open"
    SUPERSEDED = "superseded"
    COMPLETED = "completed"
    DISAGREED = "disagreed"  # its quorum's model differed from another's: the round halts


@dataclass(frozen=True)
class Round:
    """One round as the server stores it."""

    number: int
    state: RoundState
    global_model_hash: bytes
    opened_at: float
    deadline: float
    status: RoundStatus
    aggregate_hash: bytes | None = None
    aggregate_digest: bytes | None = None
    release: bytes | None = None  # serialized, signed ``Release``


@dataclass(frozen=True)
class Upload:
    """An accepted upload: the client's signed statement and when it was accepted."""

    signed: Signed[UploadStatement]
    accepted_at: float

    @property
    def statement(self) -> UploadStatement:
        """The signed statement."""
        return self.signed.statement


@dataclass(frozen=True)
class Task:
    """A request to a quorum of key holders to decrypt one aggregate."""

    task_id: int
    round: int
    aggregate_hash: bytes
    aggregate_digest: bytes
    contributions: tuple[Signed[UploadStatement], ...]
    quorum: tuple[int, ...]
    operator: bool
    state: TaskState
    created_at: float
    log_size: int = 0
    log_head: bytes = b""

    def to_proto(self) -> pb.DecryptionTask:
        """The task as a key holder receives it."""
        return pb.DecryptionTask(
            pending=True,
            round=self.round,
            aggregate_hash=self.aggregate_hash,
            aggregate_digest=self.aggregate_digest,
            contributions=[c.statement.to_contribution(c.signature) for c in self.contributions],
            quorum=list(self.quorum),
            task_id=self.task_id,
            log_size=self.log_size,
            log_head=self.log_head,
        )


# ----------------------------------------------------------------------------- rounds


def open_round(number: int, model_hash: bytes, *, policy: Policy, now: float) -> Round:
    """A new COLLECTING round on ``model_hash`` whose deadline is ``now`` + the timeout."""
    return Round(
        number,
        RoundState.COLLECTING,
        model_hash,
        now,
        now + policy.round_timeout_seconds,
        RoundStatus.collecting(),
    )


def finished_marker(number: int, model_hash: bytes, *, now: float) -> Round:
    """The FINISHED round after the last one: it holds the final model."""
    return Round(number, RoundState.FINISHED, model_hash, now, now, RoundStatus.finished())


def after_release(rnd: Round, model_hash: bytes, *, policy: Policy, now: float) -> Round:
    """The round that follows a released one: the next round, or the FINISHED marker."""
    if rnd.number < policy.rounds:
        return open_round(rnd.number + 1, model_hash, policy=policy, now=now)
    return finished_marker(rnd.number + 1, model_hash, now=now)


def with_status(rnd: Round, status: RoundStatus) -> Round:
    """The same round with another status."""
    return dataclasses.replace(rnd, status=status)


def closed(rnd: Round, *, aggregate_hash: bytes, aggregate_digest: bytes, count: int) -> Round:
    """A COLLECTING round closed over its aggregate: now DECRYPTING."""
    if rnd.state is not RoundState.COLLECTING:
        raise WrongRound(f"round {rnd.number} is not collecting uploads")
    return dataclasses.replace(
        rnd,
        state=RoundState.DECRYPTING,
        aggregate_hash=aggregate_hash,
        aggregate_digest=aggregate_digest,
        status=RoundStatus.decrypting_uploads(count),
    )


def released(rnd: Round, *, release: bytes, model_hash: bytes) -> Round:
    """A DECRYPTING round whose model was released."""
    if rnd.state is not RoundState.DECRYPTING:
        raise WrongRound(f"round {rnd.number} is not being decrypted")
    return dataclasses.replace(
        rnd, state=RoundState.RELEASED, release=release, status=RoundStatus.released(model_hash)
    )


def check_accepting(rnd: Round | None, *, round_number: int, global_model_hash: bytes) -> None:
    """An upload for ``round_number`` on ``global_model_hash`` fits the current round.

    Raises
    ------
    WrongRound
        No round collects, or another one does.
    MixedGlobalModels
        The upload was trained from another global model than the round's.
    """
    if rnd is None or rnd.state is not RoundState.COLLECTING or rnd.number != round_number:
        raise WrongRound(f"round {round_number} is not collecting uploads")
    if rnd.global_model_hash != global_model_hash:
        raise MixedGlobalModels("upload is signed over another global model than this round's")


def active_clients(
    clients: Collection[str], withdrawn: Collection[str], uploaded: Collection[str]
) -> set[str]:
    """Clients a round still waits for: the roster minus those withdrawn without uploading."""
    return set(clients) - (set(withdrawn) - set(uploaded))


@dataclass(frozen=True)
class Verdict:
    """What :func:`review_collecting` decided: close the round now, and its status."""

    close: bool
    status: RoundStatus


def review_collecting(
    rnd: Round,
    uploads: Sequence[UploadStatement],
    *,
    active: Collection[str],
    policy: Policy,
    params: Parameters,
    initial_model_hash: bytes,
    now: float,
) -> Verdict:
    """Whether a COLLECTING round closes now.

    A round is due when every active client uploaded or its deadline passed. A due
    round with fewer than ``min_contributors`` uploads waits; one whose uploads break
    :func:`~secagg.protocol.policy.check_decryption` keeps collecting with the violation
    as its status (more uploads may still make it acceptable). Otherwise it closes.
    """
    uploaded = {u.client_id for u in uploads}
    if not uploaded >= set(active) and now < rnd.deadline:
        return Verdict(False, rnd.status)
    if len(uploads) < policy.min_contributors:
        return Verdict(False, RoundStatus.waiting(len(uploads), policy.min_contributors))
    try:
        check_decryption(policy, params, rnd.number, uploads, initial_model_hash=initial_model_hash)
    except PolicyViolation as exc:
        return Verdict(False, RoundStatus.violation(exc))
    return Verdict(True, RoundStatus.decrypting_uploads(len(uploads)))


# ----------------------------------------------------------------------------- tasks


def choose_quorum(live: Sequence[int], threshold: int) -> tuple[int, ...] | None:
    """The first ``threshold`` live key holders, or None if too few are live."""
    ordered = sorted(set(live))
    return tuple(ordered[:threshold]) if len(ordered) >= threshold else None


def quorum_lost(task: Task, answered: Collection[int], live: Collection[int]) -> bool:
    """Whether a member of the task's quorum that has not answered is no longer live."""
    return any(i not in answered and i not in live for i in task.quorum)


def quorum_complete(task: Task, answered: Collection[int]) -> bool:
    """Whether every quorum member has sent its partial."""
    return set(answered) == set(task.quorum)
