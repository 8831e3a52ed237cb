"""Round status as a typed value: what a round is doing and, when it is stuck, why.

A :class:`RoundStatus` has a :class:`StatusKind`, a machine-readable ``reason`` code (the
``reason`` of the :class:`~secagg.errors.SecAggError` class that explains it, or ``""``)
and a human ``message``. ``str(status)`` is the line operators and tests read, e.g.
``"waiting: 1 of at least 2 contributors"`` or ``"QuorumNotMet: 1 of 3 key holders
reachable; threshold 2. Nothing released."``. ``RoundInfo.status`` carries ``str()`` and
``RoundInfo.status_reason`` the reason code, so a program never parses the text.

Build statuses with the constructors (:meth:`RoundStatus.waiting`,
:meth:`RoundStatus.violation`, ...); they are the one place each text is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from secagg.errors import PolicyViolation, QuorumNotMet, SecAggError, TooFewContributors

#: Reason code of a status that reports a key holder's refusal.
KEYHOLDER_REFUSED = "KEYHOLDER_REFUSED"


class StatusKind(Enum):
    """What a round's status says, independent of its wording."""

    CEREMONY = "ceremony"
    COLLECTING = "collecting"
    WAITING = "waiting"
    POLICY_VIOLATION = "policy_violation"
    QUORUM_NOT_MET = "quorum_not_met"
    DECRYPTING = "decrypting"
    RELEASED = "released"
    FINISHED = "finished"


_PREFIX = {
    StatusKind.CEREMONY: "key ceremony in progress",
    StatusKind.COLLECTING: "collecting",
    StatusKind.WAITING: "waiting: ",
    StatusKind.POLICY_VIOLATION: f"{PolicyViolation.__name__}: ",
    StatusKind.QUORUM_NOT_MET: f"{QuorumNotMet.__name__}: ",
    StatusKind.DECRYPTING: "decrypting ",
    StatusKind.RELEASED: "released model ",
    StatusKind.FINISHED: "all rounds done",
}


@dataclass(frozen=True)
class RoundStatus:
    """A round's status: kind, reason code (``""`` if none) and message."""

    kind: StatusKind
    reason: str = ""
    message: str = ""

    def __str__(self) -> str:
        return _PREFIX[self.kind] + self.message

    # ------------------------------------------------------------------ constructors
    @classmethod
    def ceremony(cls) -> RoundStatus:
        """No round yet: the key ceremony runs."""
        return cls(StatusKind.CEREMONY)

    @classmethod
    def collecting(cls) -> RoundStatus:
        """The round accepts uploads."""
        return cls(StatusKind.COLLECTING)

    @classmethod
    def waiting(cls, count: int, minimum: int) -> RoundStatus:
        """The round is due but has fewer contributors than the policy's minimum."""
        return cls(
            StatusKind.WAITING,
            TooFewContributors.reason,
            f"{count} of at least {minimum} contributors",
        )

    @classmethod
    def violation(cls, exc: SecAggError) -> RoundStatus:
        """The contributor set breaks a policy rule (the round keeps collecting)."""
        return cls(StatusKind.POLICY_VIOLATION, exc.reason, f"{exc.reason}: {exc}")

    @classmethod
    def refused(cls, keyholder: int, reason: str) -> RoundStatus:
        """A key holder refused the round's decryption task."""
        return cls(
            StatusKind.POLICY_VIOLATION,
            KEYHOLDER_REFUSED,
            f"key holder {keyholder} refused: {reason}",
        )

    @classmethod
    def quorum_not_met(
        cls, live: int, keyholders: int, threshold: int, *, lock: int = 0, cross_check: int = 0
    ) -> RoundStatus:
        """Fewer key holders are reachable than the round needs now.

        ``lock``: the round waits for locks, which need ``lock`` key holders;
        ``cross_check``: it waits for the ``2t - 1`` a fully cross-checked decryption
        needs; neither: it waits for a decryption quorum of ``threshold``.
        """
        need = f"threshold {threshold}"
        if lock:
            need = f"{lock} must lock the round, {need}"
        elif cross_check:
            need = f"{cross_check} must cross-check the decryption, {need}"
        return cls(
            StatusKind.QUORUM_NOT_MET,
            QuorumNotMet.reason,
            f"{live} of {keyholders} key holders reachable; {need}. Nothing released.",
        )

    @classmethod
    def locking(cls, locked: int, need: int) -> RoundStatus:
        """Key holders are locking the round to its aggregate."""
        return cls(StatusKind.DECRYPTING, "", f"after {locked} of {need} key holders lock it")

    @classmethod
    def endorsing(cls, endorsed: int, need: int) -> RoundStatus:
        """The quorums agreed; key holders are endorsing the model."""
        return cls(StatusKind.DECRYPTING, "", f"done; {endorsed} of {need} endorsements")

    @classmethod
    def decrypting_uploads(cls, count: int) -> RoundStatus:
        """The round closed over ``count`` uploads."""
        return cls(StatusKind.DECRYPTING, "", f"{count} uploads")

    @classmethod
    def decrypting_with(cls, quorum: Sequence[int]) -> RoundStatus:
        """A quorum was asked for partial decryptions."""
        return cls(StatusKind.DECRYPTING, "", f"with key holders {list(quorum)}")

    @classmethod
    def cross_checking(cls, quorums: Sequence[Sequence[int]]) -> RoundStatus:
        """Quorums were asked to decrypt the same aggregate (one: :meth:`decrypting_with`)."""
        if len(quorums) == 1:
            return cls.decrypting_with(quorums[0])
        listed = ", ".join(str(list(q)) for q in quorums)
        return cls(StatusKind.DECRYPTING, "", f"with key holders {listed} (cross-checked)")

    @classmethod
    def released(cls, model_hash: bytes) -> RoundStatus:
        """The round's model was released."""
        return cls(StatusKind.RELEASED, "", model_hash.hex()[:16])

    @classmethod
    def finished(cls) -> RoundStatus:
        """Every configured round was released."""
        return cls(StatusKind.FINISHED)
