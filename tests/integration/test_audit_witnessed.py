"""A server that rewrites its audit log and re-signs it, caught by the key holders' heads.

The shared real run (``_audit_support.py``) leaves each key holder's ``witness.json``: the
last head (size, Merkle root) it co-signed, checked against the one before by a
consistency proof. The server holds its own signing key, so it can truncate its log at
a checkpoint, drop entries (an accepted and a rejected upload) or fork it, and re-sign
every checkpoint: the log is then consistent with the server's key. Each is detected by
``secagg audit verify`` against the witnesses' heads, read from the key holders'
directories or given with ``--witness FILE``; without them the same logs verify.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from secagg.protocol.audit_verify import Report, verify_log
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import load_roster
from secagg.protocol.witness_head import WITNESS_FILE, WitnessedHead

from . import _audit_support
from ._audit_support import (
    AuditRun,
    copy_deployment,
    find,
    load_entries,
    reseal,
    verify_cli,
)

audit_run = _audit_support.audit_run  # the one shared run (a fixture)
KEYHOLDERS = (1, 2, 3)


def _heads(directory: Path) -> dict[int, WitnessedHead]:
    layout = DeploymentLayout(directory)
    return {
        k: WitnessedHead.load(layout.state_dir(f"kh{k}", "keyholder") / WITNESS_FILE)
        for k in KEYHOLDERS
    }


def _without_witnesses(directory: Path, keep: Path) -> list[Path]:
    """Move the key holders' witness files to ``keep``; their new paths."""
    keep.mkdir()
    moved = []
    for k in KEYHOLDERS:
        src = DeploymentLayout(directory).state_dir(f"kh{k}", "keyholder") / WITNESS_FILE
        moved.append(Path(shutil.move(src, keep / f"kh{k}.json")))
    return moved


def _witness_errors(report: Report) -> list[str]:
    """The errors :mod:`secagg.protocol.audit_verify.witnesses` reports (one per witness)."""
    return [e for e in report.errors if "(witnessed by key holder" in e or " (missing): " in e]


def test_every_key_holder_witnessed_the_run(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    heads, entries = _heads(copy), load_entries(copy)
    roster = load_roster(copy)
    requests = [e["seq"] for e in entries if e["type"] == "decryption_request"]
    for head in heads.values():
        head.verify(roster)
        assert head.size in requests[-3:], (head.size, requests)  # round 2's requests
    report = verify_log(copy)
    assert report.ok, report.errors
    assert report.witnesses == list(KEYHOLDERS)


def test_truncation_at_a_checkpoint_is_detected(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    cut = find(entries, "checkpoint")["seq"]  # round 1's checkpoint: a clean cut
    reseal(copy, entries[:cut])
    keep = _without_witnesses(copy, tmp_path / "witnesses")
    assert verify_log(copy).ok, "without witnesses, the truncated log verifies"
    report = verify_log(copy, witnesses=keep)
    assert len(_witness_errors(report)) == len(KEYHOLDERS), report.errors
    assert all("the log was truncated" in e for e in _witness_errors(report))
    result = verify_cli(copy, *(arg for path in keep for arg in ("--witness", path)))
    assert result.returncode == 1, result.stdout
    assert f"FAIL: entry {cut + 1} (missing): the log has {cut} entries" in result.stdout


def _resealed_without(copy: Path, drop: list[dict[str, Any]]) -> None:
    seqs = {e["seq"] for e in drop}
    reseal(copy, [e for e in load_entries(copy) if e["seq"] not in seqs], renumber=True)


def test_dropped_uploads_are_detected(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    rejected = find(entries, "upload_rejected", client=_audit_support.REJECTED)
    accepted = find(entries, "upload", round=2)
    _resealed_without(copy, [rejected, accepted])
    report = verify_log(copy)
    errors = _witness_errors(report)
    assert len(errors) == len(KEYHOLDERS), report.errors
    assert all("an entry was dropped, altered or forked" in e for e in errors), errors

    only_rejected = copy_deployment(audit_run, tmp_path / "rejected")
    _resealed_without(only_rejected, [rejected])  # the server's word only, and still caught
    assert len(_witness_errors(verify_log(only_rejected))) == len(KEYHOLDERS)


def test_a_forked_log_is_detected(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    fork = find(entries, "upload_rejected", client=_audit_support.REJECTED)
    fork["data"]["reason"] = "nothing happened here"  # unsigned by the client: the server's own
    reseal(copy, entries)
    report = verify_log(copy)
    errors = _witness_errors(report)
    assert len(errors) == len(KEYHOLDERS), report.errors
    sizes = sorted(h.size for h in _heads(copy).values())
    assert sorted(int(e.split(" ")[1]) for e in errors) == sizes  # each names its last entry
