"""``secagg audit verify DIR [--data PATH] [--witness FILE]...``: check an audit log offline.

Needs only the log, the roster, the witnesses' heads and — when retained — the stored
ciphertexts; it trusts nothing the server says. Paths come from
:class:`~secagg.protocol.layout.DeploymentLayout` (``--data`` is the server's state
directory, as given to ``serve --data``). It holds the log to the latest head every
witness co-signed (the key holders' ``witness.json`` found in DIR, and every
``--witness FILE``; :mod:`.witnesses`): a log shorter than one, or whose Merkle root at
that size differs, fails. It checks every checkpoint's Merkle root and signature (the
server's, and the key holders' co-signatures of the heads they were shown), every
signature in every entry against the roster keys (a rejected upload's too), that uploads
are bound to their round and to that round's global model, that aggregates list exactly the
round's accepted uploads and — with the ciphertexts at hand — recomputes them, that
every release was decrypted by at least t distinct key holders who signed partials over
that very aggregate, that every partial was preceded by a lock certificate and every
release by t key holders' endorsements of its model (:mod:`secagg.protocol.certificates`),
and that uploads and contributor sets meet the policy (the same
:mod:`secagg.protocol.policy` functions the server and the key holders call). Each
problem names the entry (sequence number and type).

Every entry is parsed into its typed class (:mod:`secagg.protocol.audit_entries`), so a
malformed entry is reported (``entry N (type): malformed entry (...)``), never a crash.
The checks live in one module per phase: :mod:`.deployment`, :mod:`.rounds`,
:mod:`.certificates` (locks and endorsements), :mod:`.decryption`, :mod:`.cross_check`,
with :mod:`.recompute` for the blob-based recomputations and :mod:`.witnesses`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from secagg.errors import AuditChainBroken, SecAggError
from secagg.protocol.audit_entries import (
    ENTRY_TYPES,
    AggregateEntry,
    AuditEntry,
    CeremonyEntry,
    CheckpointEntry,
    DecryptionRequestEntry,
    DisagreementEntry,
    EndorsementEntry,
    LockEntry,
    PartialEntry,
    PublicKeyEntry,
    RefusalEntry,
    ReleaseEntry,
    RosterEntry,
    RoundOpenEntry,
    UploadEntry,
    UploadRejectedEntry,
    WithdrawalEntry,
    parse_entry,
)
from secagg.protocol.audit_log import Entry, read_entries
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import load_roster
from secagg.protocol.witness_head import witness_files

from .certificates import check_endorsement, check_lock
from .context import At, Verification, readable_signatures
from .cross_check import check_disagreement
from .decryption import (
    check_checkpoint,
    check_decryption_request,
    check_partial,
    check_refusal,
    check_release,
)
from .deployment import check_ceremony, check_public_key, check_roster
from .report import EndorsementReport, Report, RoundReport, format_report
from .rounds import (
    check_aggregate,
    check_round_open,
    check_upload_entry,
    check_upload_rejected,
    check_withdrawal,
)
from .witnesses import check_witnesses, load_witnesses

__all__ = ["EndorsementReport", "Report", "RoundReport", "format_report", "main", "verify_log"]


def _dispatch(v: Verification, at: At, entry: AuditEntry) -> None:
    match entry:
        case RosterEntry():
            check_roster(v, at, entry)
        case CeremonyEntry():
            check_ceremony(v, at, entry)
        case PublicKeyEntry():
            check_public_key(v, at, entry)
        case RoundOpenEntry():
            check_round_open(v, at, entry)
        case UploadEntry():
            check_upload_entry(v, at, entry)
        case UploadRejectedEntry():
            check_upload_rejected(v, at, entry)
        case WithdrawalEntry():
            check_withdrawal(v, at, entry)
        case AggregateEntry():
            check_aggregate(v, at, entry)
        case LockEntry():
            check_lock(v, at, entry)
        case DecryptionRequestEntry():
            check_decryption_request(v, at, entry)
        case PartialEntry():
            check_partial(v, at, entry)
        case EndorsementEntry():
            check_endorsement(v, at, entry)
        case RefusalEntry():
            check_refusal(v, at, entry)
        case ReleaseEntry():
            check_release(v, at, entry)
        case DisagreementEntry():
            check_disagreement(v, at, entry)
        case CheckpointEntry():
            check_checkpoint(v, at, entry)
        case _:  # pragma: no cover - ENTRY_TYPES and the cases above list the same classes
            raise TypeError(f"no check for {type(entry).__name__}")


def _check_entry(v: Verification, logged: Entry) -> None:
    data, at = readable_signatures(logged)
    if logged.type not in ENTRY_TYPES:
        v.fail(at, "unknown entry type")
        return
    try:
        _dispatch(v, at, parse_entry(logged.type, data))
    except (ValueError, OverflowError, SecAggError) as exc:
        v.fail(at, f"malformed entry ({type(exc).__name__}: {exc})")


def verify_log(
    directory: Path, *, data: Path | None = None, witnesses: Sequence[Path] = ()
) -> Report:
    """Verify the audit log of the deployment in ``directory``.

    ``data`` is the server's state directory when it ran with ``serve --data`` (default
    ``DIR/server/data``). ``witnesses``: witness files to hold the log to, besides the
    key holders' own in ``directory``. Never raises for a bad or missing log (the report
    lists the problems); raises :class:`~secagg.errors.ConfigError` if ``directory``
    holds no valid roster.

    Security
    --------
    A clean report says the log is consistent with the roster's keys and policy and
    extends every witness's head; it does not prove that the log is complete beyond
    them. Entries after the newest witnessed head are bound by the server's signature
    only (the server may drop or rewrite them), and with no witness file at hand nothing
    binds the server at all (reported as a warning).
    """
    report = Report()
    layout = DeploymentLayout.find(Path(directory), server_data=data)
    roster = load_roster(layout.root)
    heads = load_witnesses([*witness_files(layout, roster), *witnesses], roster, report)
    path = layout.audit_log
    try:
        entries = list(read_entries(path))
    except AuditChainBroken as exc:
        report.errors.append(str(exc))
        return report
    except FileNotFoundError:
        report.errors.append(
            f"no audit log at {path} (if the server ran with `serve --data PATH`, pass --data PATH)"
        )
        return report
    except OSError as exc:
        report.errors.append(f"cannot read {path}: {exc.strerror}")
        return report
    report.entries = len(entries)
    verification = Verification(layout, roster, entries, report)
    for logged in entries:
        _check_entry(verification, logged)
    check_witnesses(entries, verification.tree, heads, report)
    witnessed = {head.keyholder for _, head in heads}
    for k in sorted(verification.cosigners - witnessed) if heads else ():
        report.warnings.append(
            f"key holder {k} co-signed heads in this log, but its witness file was not "
            "given: the log is held only to the other witnesses' heads (--witness FILE)"
        )
    if entries and entries[-1].type not in ("checkpoint", "round_open"):
        report.warnings.append(
            f"entries after the last checkpoint (up to {len(entries)}) are not signed yet"
        )
    report.warnings[:0] = report.pruned_warning()
    newest = max((head.size for _, head in heads), default=0)
    if not heads:
        report.warnings.append(
            "no witness heads: a truncated or re-signed log cannot be told from the original"
        )
    elif newest < len(entries):
        report.warnings.append(
            f"entries after {newest} are not witnessed by any key holder (the server's word)"
        )
    return report


def main(
    directory: Path, *, as_json: bool, data: Path | None = None, witnesses: Sequence[Path] = ()
) -> int:
    """CLI body: print the report; 0 if valid, 1 if not."""
    report = verify_log(directory, data=data, witnesses=witnesses)
    print(json.dumps(report.to_json(), indent=2) if as_json else format_report(report))
    return 0 if report.ok else 1
