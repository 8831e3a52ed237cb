"""The verifier's state while it walks the log, and its three ways of judging an entry.

A check function gets the :class:`Verification` (roster, layout, Merkle tree, what
earlier entries established) and the entry's :class:`At` (where it is, for messages).
It records problems with :meth:`Verification.fail`; the three helpers turn the shared
protocol code's exceptions into report lines:

* :meth:`Verification.signature` — ``Signed.verify`` / ``verify_by`` (statements from
  :mod:`secagg.protocol.statements`, never a digest built here);
* :meth:`Verification.policy` — a rule of :mod:`secagg.protocol.policy`, reported with
  its reason code (``WEIGHT_SHARE_EXCEEDED: ...``);
* :meth:`Verification.head_matches` — a (size, head) pair against the recomputed Merkle
  tree (:mod:`secagg.protocol.merkle`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from secagg.errors import SecAggError, SignatureInvalid, UnknownParty
from secagg.protocol.audit_entries import (
    AggregateEntry,
    DecryptionRequestEntry,
    PartialEntry,
)
from secagg.protocol.audit_log import Entry, merkle_tree
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Party, Roster
from secagg.protocol.statements import Signed, UploadStatement

from .report import Report, RoundReport

SIGNATURE_FIELDS = ("signature", "server_signature", "checkpoint_signature")
#: The ``reason`` prefix of a rejection the server refused for a bad signature.
SIGNATURE_REFUSED = "SignatureInvalid:"
_LOWER_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_ANY_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


@dataclass(frozen=True)
class At:
    """Where an entry sits in the log (for messages), and its unreadable signatures.

    ``unreadable`` maps a signature field that was not lower-case hex to its logged text:
    the entry is parsed with that signature empty, so its other fields are still checked,
    and :meth:`Verification.signature` reports the signature as invalid.

    Security
    --------
    A blanked signature is never handed to a verification: it fails before any key is
    consulted.
    """

    seq: int
    type: str
    unreadable: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"entry {self.seq} ({self.type})"


def readable_signatures(entry: Entry) -> tuple[dict[str, Any], At]:
    """The entry's data with unreadable signatures blanked, and its :class:`At`."""
    data = dict(entry.data)
    unreadable: dict[str, str] = {}
    for name in SIGNATURE_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and not _LOWER_HEX.fullmatch(value):
            unreadable[name], data[name] = value, ""
    return data, At(entry.seq, entry.type, unreadable)


@dataclass
class Seen:
    """What the entries read so far established (the verifier's memory).

    Key-holder certificates, counted only when their signature verified:
    ``locked_to`` maps (round, key holder) to the aggregate digest of its first lock,
    ``lock_holders`` (round, aggregate digest) to the key holders that locked it, and
    ``endorsers`` (round, aggregate digest, model hash) to each endorser's checked quorums.
    ``task_seq`` maps a decryption task to the sequence number of its request entry.
    Key ceremonies: ``key_commits`` maps (key epoch, key holder) to its logged KEY_COMMIT
    body (empty if the log kept only its hash), ``endorsements`` a key epoch to each
    key holder's endorsed joint-key id, ``public_key_epoch`` is the key epoch of the
    last logged joint public key (0 before any), ``transcribed`` a key epoch to kind to
    key holder to the body SHA-256 of each logged message a TRANSCRIPT covers.
    """

    key_commits: dict[tuple[int, int], bytes] = field(default_factory=dict)
    endorsements: dict[int, dict[int, bytes]] = field(default_factory=dict)
    public_key_epoch: int = 0
    transcribed: dict[int, dict[int, dict[int, bytes]]] = field(default_factory=dict)
    public_key_id: bytes | None = None
    round_model: dict[int, bytes] = field(default_factory=dict)
    uploads: dict[int, dict[str, UploadStatement]] = field(default_factory=dict)
    nonces: set[tuple[str, bytes]] = field(default_factory=set)
    #: client -> (largest ε of its accepted uploads so far, sequence number of that entry)
    max_epsilon: dict[str, tuple[float, int]] = field(default_factory=dict)
    aggregates: dict[int, AggregateEntry] = field(default_factory=dict)
    tasks: dict[int, DecryptionRequestEntry] = field(default_factory=dict)
    task_seq: dict[int, int] = field(default_factory=dict)
    partials: dict[int, dict[int, PartialEntry]] = field(default_factory=dict)
    released: dict[int, bytes] = field(default_factory=dict)
    locked_to: dict[tuple[int, int], bytes] = field(default_factory=dict)
    lock_holders: dict[tuple[int, bytes], set[int]] = field(default_factory=dict)
    endorsers: dict[tuple[int, bytes, bytes], dict[int, list[list[int]]]] = field(
        default_factory=dict
    )


class Verification:
    """One run of the verifier over one log."""

    def __init__(
        self, layout: DeploymentLayout, roster: Roster, entries: Sequence[Entry], report: Report
    ) -> None:
        self.layout, self.roster, self.report = layout, roster, report
        self.tree = merkle_tree(list(entries))
        self.seen = Seen()

    @property
    def deployment_id(self) -> str:
        """The roster's deployment id (bound into every signed statement)."""
        return self.roster.deployment_id

    @property
    def cosigners(self) -> set[int]:
        """Key holders whose logged partials co-sign a head (each should have a witness file)."""
        return {k for by_keyholder in self.seen.partials.values() for k in by_keyholder}

    def fail(self, at: At, message: str) -> None:
        """Record a problem with the entry at ``at``."""
        self.report.errors.append(f"{at}: {message}")

    def warn(self, at: At, message: str) -> None:
        """Record something the verifier could not check at ``at``."""
        self.report.warnings.append(f"{at}: {message}")

    def round(self, number: int) -> RoundReport:
        """The report of round ``number``."""
        return self.report.round(number)

    def signature(
        self,
        at: At,
        signed: Signed[Any],
        *,
        field: str = "signature",
        cosigner: Party | None = None,
        who: str | None = None,
    ) -> bool:
        """Check a signature against the roster; record and return False if it fails.

        ``cosigner`` checks a co-signature (:meth:`Signed.verify_by`) instead of the
        statement's own signer; ``field`` names the entry field the signature came from.
        """
        try:
            who = who or signed.statement.describe_signer(self.roster)
        except UnknownParty as exc:
            self.fail(at, f"{exc.reason}: {exc}")
            return False
        if field in at.unreadable:
            upper_case = _ANY_HEX.fullmatch(at.unreadable[field]) is not None
            self.fail(
                at,
                f"signature by {who} is not canonical lower-case hex"
                if upper_case
                else f"invalid signature by {who}",
            )
            return False
        try:
            if cosigner is None:
                signed.verify(self.roster)
            else:
                signed.verify_by(cosigner, who=who)
        except (SignatureInvalid, ValueError):  # ValueError: a field the digest cannot encode
            self.fail(at, f"invalid signature by {who}")
            return False
        return True

    def policy(self, at: At, rule: Callable[[], None]) -> bool:
        """Apply a :mod:`secagg.protocol.policy` rule; record its reason code if it refuses."""
        try:
            rule()
        except SecAggError as exc:  # PolicyViolation children, WeightBudgetExceeded
            self.fail(at, f"{exc.reason}: {exc}")
            return False
        return True

    def head_matches(self, at: At, size: int, head: bytes) -> bool:
        """True if ``head`` is the Merkle root of entries ``1..size`` (all before ``at``)."""
        return 0 <= size < at.seq and self.tree.root(size) == head
