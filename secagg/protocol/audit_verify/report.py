"""The result of ``secagg audit verify``: per-round facts, warnings and errors.

Every error and warning names the entry it is about (``entry N (type): ...``), except
the chain errors :func:`~secagg.protocol.audit_log.read_entries` raises, which name the
entry in their own words, and a bad witness file, named by its path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EndorsementReport:
    """A key holder's valid endorsement of a released model, and how far it cross-checked it.

    ``checked_quorums``: the quorums whose partials it combined and found in agreement.
    """

    keyholder: int
    checked_quorums: list[list[int]]


@dataclass
class RoundReport:
    """What the log says about one round.

    ``dp_uploads``: accepted uploads whose client signed the DP marker;
    ``locked_by``: key holders with a valid lock on the round's logged aggregate;
    ``endorsements``: the valid endorsements of the released model;
    ``ciphertexts_pruned``: its ciphertexts were deleted under ``policy.retain_rounds``
    (not recomputed; its signatures were checked all the same).
    """

    round: int
    uploads: int = 0
    rejected: int = 0
    contributors: int = 0
    total_weight: int = 0
    aggregate_recomputed: bool | None = None
    quorum: list[int] = field(default_factory=list)
    released_model: str = ""
    max_epsilon: float = 0.0
    dp_uploads: int = 0
    locked_by: list[int] = field(default_factory=list)
    endorsements: list[EndorsementReport] = field(default_factory=list)
    ciphertexts_pruned: bool = False


@dataclass
class Report:
    """The verification result (``witnesses``: the key holders whose heads the log was held to)."""

    entries: int = 0
    witnesses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rounds: dict[int, RoundReport] = field(default_factory=dict)

    @property
    def pruned_rounds(self) -> list[int]:
        """Rounds not recomputed because their ciphertexts were pruned (``retain_rounds``)."""
        return sorted(r.round for r in self.rounds.values() if r.ciphertexts_pruned)

    def pruned_warning(self) -> list[str]:
        """The one warning naming the pruned rounds (empty if none)."""
        if not self.pruned_rounds:
            return []
        return [
            f"rounds {', '.join(map(str, self.pruned_rounds))} could not be recomputed: their "
            "ciphertexts were pruned (policy.retain_rounds); their signatures were checked"
        ]

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.errors

    def round(self, number: int) -> RoundReport:
        """The report of round ``number`` (created on first use)."""
        return self.rounds.setdefault(number, RoundReport(number))

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "witnesses": self.witnesses,
            "errors": self.errors,
            "warnings": self.warnings,
            "pruned_rounds": self.pruned_rounds,
            "rounds": [asdict(r) for r in self.rounds.values()],
        }


_RECOMPUTED = {True: "recomputed OK", False: "RECOMPUTE FAILED", None: "not recomputed"}


def _certificates(r: RoundReport) -> str:
    endorsed = ", ".join(
        f"key holder {e.keyholder} (checked {' '.join(map(str, e.checked_quorums)) or '-'})"
        for e in r.endorsements
    )
    return f"  locked by key holders {r.locked_by}; endorsed by {endorsed or 'no key holder'}"


def format_report(report: Report) -> str:
    """Human-readable summary: one line per round (and one of its locks and endorsements),
    then warnings, errors and the verdict."""
    held = f"key holders {report.witnesses}" if report.witnesses else "no witness"
    lines = [f"{report.entries} entries, held to the co-signed heads of {held}"]
    for r in sorted(report.rounds.values(), key=lambda x: x.round):
        if not (r.uploads or r.released_model):
            continue
        lines.append(
            f"round {r.round}: {r.uploads} uploads ({r.rejected} rejected), {r.contributors} "
            f"contributors, total weight {r.total_weight}, "
            f"aggregate {_RECOMPUTED[r.aggregate_recomputed]}, "
            f"key holders {r.quorum}, model {r.released_model[:16] or '-'}, "
            f"max epsilon {r.max_epsilon:.3f}"
        )
        if r.locked_by or r.endorsements:
            lines.append(_certificates(r))
    lines += [f"warning: {w}" for w in report.warnings]
    lines += [f"FAIL: {err}" for err in report.errors]
    lines.append(
        "audit log verified" if report.ok else f"audit log INVALID: {len(report.errors)} problem(s)"
    )
    return "\n".join(lines)
