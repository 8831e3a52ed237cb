"""The log against its witnesses: every key holder's latest co-signed head must be a prefix.

A key holder keeps the last audit-log head it co-signed (``witness.json``, see
:mod:`secagg.protocol.witness_head`) and co-signs a new head only if it extends that one
(:mod:`clients.keyholder.witness`). So a log that is shorter than a witness's head
(truncated), or whose first ``size`` entries hash to another Merkle root (an entry
dropped, altered, inserted or forked off, even with every checkpoint re-signed by the
server), is caught here, by the key holders' keys the server does not hold.

Errors about the log name an entry like every other: the last entry the witness covers
(another root), or the first one missing (a shorter log); a witness file that cannot
be read or whose co-signature fails is named by its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from secagg.errors import ConfigError, SecAggError
from secagg.protocol.audit_log import Entry
from secagg.protocol.merkle import MerkleTree
from secagg.protocol.roster import Roster
from secagg.protocol.witness_head import WitnessedHead

from .report import Report


def load_witnesses(
    paths: Sequence[Path], roster: Roster, report: Report
) -> list[tuple[Path, WitnessedHead]]:
    """The witness files' heads whose co-signature verifies; the others are reported."""
    heads = []
    for path in paths:
        try:
            head = WitnessedHead.load(path)
            if head.deployment_id != roster.deployment_id:
                raise ValueError(f"it is of deployment {head.deployment_id!r}")
            head.verify(roster)
        except (OSError, ValueError, ConfigError, SecAggError) as exc:
            report.errors.append(f"witness {path}: not a valid witnessed head ({exc})")
            continue
        heads.append((path, head))
    return heads


def check_witnesses(
    entries: Sequence[Entry],
    tree: MerkleTree,
    heads: Sequence[tuple[Path, WitnessedHead]],
    report: Report,
) -> None:
    """Fail unless every witnessed head is the Merkle root of the log's first ``size`` entries."""
    for path, head in heads:
        k, size = head.keyholder, head.size
        if size > len(entries):
            report.errors.append(
                f"entry {len(entries) + 1} (missing): the log has {len(entries)} entries, but key "
                f"holder {k} co-signed a head of size {size} ({path}): the log was truncated"
            )
        elif tree.root(size) != head.head:
            report.errors.append(
                f"entry {size} (witnessed by key holder {k}): entries 1..{size} are not the log "
                f"key holder {k} co-signed ({path}): an entry was dropped, altered or forked"
            )
    report.witnesses = sorted({head.keyholder for _, head in heads})
