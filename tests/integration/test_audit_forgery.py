"""History rewritten by someone who holds the server's signing key, caught by the verifier.

The forger re-signs everything the server signs (releases and checkpoints, with the chain
heads recomputed) and, for an edited upload, the client's statement too. What remains are
the signatures the server cannot make: the key holders' partials and the heads they
co-signed (and, with the ciphertexts, the recomputed aggregate). Forged releases are in
``test_audit.py``; the run and the helpers in ``_audit_support.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from secagg.protocol.audit_entries import PartialEntry
from secagg.protocol.audit_verify import verify_log
from secagg.protocol.roster import load_roster
from secagg.protocol.statements import Signed
from secagg.rpc.transport import identity

from . import _audit_support
from ._audit_support import (
    ROUNDS,
    AuditRun,
    audit_run_value,
    copy_deployment,
    fail_lines,
    find,
    load_entries,
    named,
    reseal,
    resign_upload,
    verify_cli,
)

audit_run = _audit_support.audit_run  # the one shared run (a fixture)


# ------------------------------------------------------------------ partial signatures


@pytest.mark.parametrize("rnd", [1, ROUNDS])
@pytest.mark.parametrize("kind", ["other partial's", "fresh over another message", "co-sign"])
def test_replaced_partial_signature_is_detected(
    audit_run: AuditRun, tmp_path: Path, kind: str, rnd: int
) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    partials = [e for e in entries if e["type"] == "partial" and e["data"]["round"] == rnd]
    target, other = partials[0], partials[1]
    k = target["data"]["keyholder"]
    field, who = "signature", f"key holder {k}"
    if kind == "other partial's":
        target["data"]["signature"] = other["data"]["signature"]
    elif kind == "fresh over another message":
        # a genuine signature by the right key holder, over a different partial digest
        logged = PartialEntry.from_data(target["data"]).signed(load_roster(copy).deployment_id)
        statement = replace(
            logged.statement, partial_digest=hashlib.sha256(b"another partial").digest()
        )
        key = identity(copy, f"kh{k}").signing_key()
        target["data"]["signature"] = Signed.create(statement, key).signature.hex()
    else:
        field, who = "checkpoint_signature", f"key holder {k} (checkpoint)"
        target["data"]["checkpoint_signature"] = other["data"]["checkpoint_signature"]
    assert target["data"][field] != audit_run_value(audit_run, target, field)
    reseal(copy, entries)  # the server re-signs its checkpoints over the edited chain
    report = verify_log(copy)
    expected = f"entry {target['seq']} (partial): invalid signature by {who}"
    assert report.errors[:1] == [expected], report.errors
    if rnd == ROUNDS:  # nothing after it co-signed the edited chain: the only problem
        assert report.errors == [expected]
    if kind == "other partial's" and rnd == 1:
        result = verify_cli(copy)
        assert result.returncode == 1
        assert fail_lines(result.stdout)[0] == (
            target["seq"],
            "partial",
            f"invalid signature by {who}",
        )


# ------------------------------------------------------------------ rewritten history


def _set_weight(entries: list[dict[str, Any]], rnd: int, client: str, weight: int) -> None:
    """Change a client's weight in its upload (re-signed later) and in the aggregate."""
    find(entries, "upload", round=rnd, client=client)["data"]["weight"] = weight
    agg = find(entries, "aggregate", round=rnd)["data"]
    for i in agg["inputs"]:
        if i["client"] == client:
            i["weight"] = weight
    agg["total_weight"] = sum(i["weight"] for i in agg["inputs"])


REWRITES = [
    "weight, aggregate updated, no ciphertexts",
    "weight, aggregate updated",
    "weight only",
    "uploads reordered",
    "upload deleted, no ciphertexts",
    "round 2 weight, no ciphertexts",
]


@pytest.mark.parametrize("rewrite", REWRITES)
def test_history_rewritten_and_resigned_by_the_server_is_caught(
    audit_run: AuditRun, tmp_path: Path, rewrite: str
) -> None:
    """Edits re-signed with the client's key, chain recomputed, checkpoints re-signed with
    the server's key: what remains are the heads the key holders co-signed (and, with the
    ciphertexts, the recomputed aggregate)."""
    copy = copy_deployment(audit_run, tmp_path, blobs="no ciphertexts" not in rewrite)
    entries = load_entries(copy)
    rnd = 2 if rewrite.startswith("round 2") else 1
    upload = find(entries, "upload", round=rnd, client="c3")
    changed_seq = upload["seq"]
    renumber = False
    if "weight" in rewrite:
        if "aggregate updated" in rewrite or rnd == 2:
            _set_weight(entries, rnd, "c3", 8)
        else:
            upload["data"]["weight"] = 8
        resign_upload(copy, upload["data"])
    elif rewrite == "uploads reordered":
        i = entries.index(find(entries, "upload", round=1))
        entries[i], entries[i + 1] = entries[i + 1], entries[i]
        changed_seq, renumber = i + 1, True
    else:  # deleted, and dropped from the aggregate, as if c3 had never uploaded
        entries.remove(upload)
        agg = find(entries, "aggregate", round=1)["data"]
        agg["inputs"] = [i for i in agg["inputs"] if i["client"] != "c3"]
        agg["total_weight"] = sum(i["weight"] for i in agg["inputs"])
        renumber = True
    reseal(copy, entries, renumber=renumber)
    entries = load_entries(copy)  # as written (renumbered)

    report = verify_log(copy)
    aggregate = find(entries, "aggregate", round=rnd)
    cosigned = [e for e in entries if e["type"] == "partial" and e["data"]["round"] >= rnd]
    expected = [
        f"entry {p['seq']} (partial): key holder {p['data']['keyholder']} co-signed a head "
        f"that is not the Merkle root of entries 1..{p['data']['checkpoint_size']}"
        for p in cosigned
    ]
    assert all(p["data"]["checkpoint_size"] >= changed_seq for p in cosigned)
    if rewrite == "weight, aggregate updated":
        expected.insert(
            0,
            f"entry {aggregate['seq']} (aggregate): recomputed aggregate differs from the "
            "logged digest",
        )
    elif rewrite == "weight only":
        expected.insert(
            0,
            f"entry {aggregate['seq']} (aggregate): aggregate of round 1 does not list exactly "
            "the accepted uploads",
        )
    # and every key holder's own witnessed head (its last, in round 2) covers the change
    witnessed = [e for e in report.errors if "(witnessed by key holder" in e]
    assert len(witnessed) == 3, report.errors
    assert report.errors == expected + witnessed
    # the CLI agrees: exit 1, the first FAIL line names the first problem
    result = verify_cli(copy)
    assert result.returncode == 1, result.stdout
    seq = named(expected)[0]
    first = fail_lines(result.stdout)[0]
    assert first[0] == seq and first[1] == ("aggregate" if seq == aggregate["seq"] else "partial")
