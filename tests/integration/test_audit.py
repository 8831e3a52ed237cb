"""The tamper-evident audit log of a real run, and what ``secagg audit verify`` accepts.

One run (``audit_run`` in ``_audit_support.py``: server, 3 key holders with t = 2, 4
synthetic clients, 2 rounds) produces a real log; every test works on its own copy of the
deployment directory. The verifier runs as the CLI (``python -m secagg.cli audit verify
COPY``) where the exit code and the printed lines matter, and in-process (``verify_log``)
where a test checks many variants.

Here: the untouched log verifies (with and without the retained ciphertexts, and with
the server's state directory elsewhere, ``--data``), it records every step, releases the
key holders did not make are rejected, and the server refuses an upload whose audit
entry cannot be written. Raw tampering is in ``test_audit_tamper.py``; history rewritten
and re-signed with the server's key in ``test_audit_forgery.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_verify import verify_log
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import load_roster
from secagg.protocol.stored_chunks import open_vector

from . import _audit_support
from ._audit_support import (
    CLIENTS,
    ROUND_ENTRIES,
    ROUNDS,
    AuditRun,
    copy_deployment,
    fail_lines,
    find,
    load_entries,
    log_path,
    named,
    reseal,
    resign_release,
    verify_cli,
)
from ._harness import Harness

audit_run = _audit_support.audit_run  # the one shared run (a fixture)

# ------------------------------------------------------------------ the untouched log


def _expected_warnings(entries: list[dict[str, Any]]) -> list[str]:
    """An untouched run's warnings: the refusal that brought no statement to the audit
    trail (see the report: the server does not pass the upload header yet), and the tail
    no key holder witnessed (after round 2's last decryption request)."""
    rejected = find(entries, "upload_rejected")
    witnessed = [e["seq"] for e in entries if e["type"] == "decryption_request"][-1]
    unsigned = (
        [
            f"entry {rejected['seq']} (upload_rejected): refusal of an upload by "
            f"{rejected['data']['client']} carries no signed statement"
        ]
        if not rejected["data"]["signature"]
        else []
    )
    return [
        *unsigned,
        f"entries after {witnessed} are not witnessed by any key holder (the server's word)",
    ]


def test_untouched_log_verifies(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    result = verify_cli(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert (
        lines[0] == f"{len(entries)} entries, held to the co-signed heads of key holders [1, 2, 3]"
    )
    assert lines[-1] == "audit log verified"
    assert [x for x in lines if x.startswith(("FAIL", "warning"))] == [
        f"warning: {w}" for w in _expected_warnings(entries)
    ], result.stdout
    round_lines = [x for x in lines if x.startswith("round ")]
    assert len(round_lines) == ROUNDS, result.stdout
    total = sum(w for _, w in CLIENTS.values())
    for r, line in enumerate(round_lines, start=1):
        rel = audit_run.releases[r]
        rejected = 1 if r == 2 else 0  # the wrong-round upload names round 2
        assert line == (
            f"round {r}: 4 uploads ({rejected} rejected), 4 contributors, total weight {total}, "
            f"aggregate recomputed OK, key holders {sorted(rel.quorum)}, "
            f"model {rel.model_hash.hex()[:16]}, max epsilon 0.000"
        )

    as_json = verify_cli(copy, "--json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is True and report["errors"] == []
    assert report["warnings"] == _expected_warnings(entries)
    assert report["entries"] == len(entries)
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for r in report["rounds"]:
        rel = audit_run.releases[r["round"]]
        assert r["aggregate_recomputed"] is True
        rejected = 1 if r["round"] == 2 else 0
        assert (r["uploads"], r["rejected"], r["contributors"]) == (4, rejected, 4)
        assert r["total_weight"] == total
        assert r["quorum"] == sorted(rel.quorum)
        assert r["released_model"] == rel.model_hash.hex()


def test_without_ciphertexts_it_verifies_but_warns(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path, blobs=False)
    aggregates = [e["seq"] for e in load_entries(copy) if e["type"] == "aggregate"]
    assert len(aggregates) == ROUNDS
    result = verify_cli(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "audit log verified"
    for seq in aggregates:
        assert (
            f"warning: entry {seq} (aggregate): ciphertexts not retained; "
            "aggregate not recomputed" in lines
        ), result.stdout
    round_lines = [x for x in lines if x.startswith("round ")]
    assert len(round_lines) == ROUNDS
    assert all("aggregate not recomputed" in x for x in round_lines), round_lines
    report = json.loads(verify_cli(copy, "--json").stdout)
    # One warning per aggregate (not recomputed) and one per release (model not recomputed).
    expected = _expected_warnings(load_entries(copy))
    assert report["ok"] is True and len(report["warnings"]) == 2 * ROUNDS + len(expected)
    assert sum("model not recomputed" in w for w in report["warnings"]) == ROUNDS
    assert [r["aggregate_recomputed"] for r in report["rounds"]] == [None, None]


def test_log_records_every_step(audit_run: AuditRun, tmp_path: Path) -> None:
    """What the server's hooks wrote, in order, and that it is only public metadata."""
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    types = [e["type"] for e in entries]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert types[0] == "roster"
    first = types.index("public_key")
    assert first >= 4 and set(types[1:first]) == {"ceremony"}, types[:first]
    assert types[first:] == [
        "public_key",
        "round_open",
        "upload_rejected",
        *(ROUND_ENTRIES * ROUNDS)[1:],
    ]
    roster = load_roster(copy)
    assert entries[0]["data"]["deployment_id"] == roster.deployment_id
    assert (
        entries[0]["data"]["roster_sha256"]
        == hashlib.sha256((copy / "roster.toml").read_bytes()).hexdigest()
    )

    blobs = DeploymentLayout(copy).blobs
    for r in range(1, ROUNDS + 1):
        opened = find(entries, "round_open", round=r)
        uploads = [e for e in entries if e["type"] == "upload" and e["data"]["round"] == r]
        assert {u["data"]["client"]: u["data"]["weight"] for u in uploads} == {
            c: w for c, (_, w) in CLIENTS.items()
        }
        for u in uploads:
            assert u["data"]["global_model_hash"] == opened["data"]["global_model_hash"]
            digest = bytes.fromhex(u["data"]["ciphertext_hash"])  # retained ciphertext
            stored, _ = open_vector(blobs / digest.hex(), roster.params, digest)
            stored.close()
        requests = {
            e["data"]["task_id"]: e
            for e in entries
            if e["type"] == "decryption_request" and e["data"]["round"] == r
        }
        partials = [e for e in entries if e["type"] == "partial" and e["data"]["round"] == r]
        rel = audit_run.releases[r]
        release = find(entries, "release", round=r)
        released = [p for p in partials if p["data"]["task_id"] == release["data"]["task_id"]]
        assert sorted(p["data"]["keyholder"] for p in released) == sorted(rel.quorum)
        quorums = [tuple(q["data"]["quorum"]) for q in requests.values()]
        assert list(rel.checked_quorums) == [i for q in quorums for i in q]
        for p in partials:  # key holders co-signed the head right after their request
            assert p["data"]["checkpoint_size"] == requests[p["data"]["task_id"]]["seq"]
        assert release["data"]["model_hash"] == rel.model_hash.hex()
        assert release["data"]["aggregate_digest"] == rel.aggregate_digest.hex()
        assert release["data"]["server_signature"] == rel.server_signature.hex()
        assert release["data"]["partial_digests"] == [d.hex() for d in rel.partial_digests]
        checkpoint = entries[release["seq"]]
        assert checkpoint["type"] == "checkpoint"
        assert checkpoint["data"]["size"] == release["seq"]
        if r < ROUNDS:
            nxt = find(entries, "round_open", round=r + 1)
            assert nxt["data"]["global_model_hash"] == rel.model_hash.hex()

    # hashes, signatures and metadata only: no string longer than an Ed25519 signature
    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return []

    # (but KEY_COMMIT bodies, n + 1 digests, are logged in full: audit verify checks each
    # contribution against its commitment)
    longest = max(
        (s for e in entries if e["data"].get("kind") != "KEY_COMMIT" for s in strings(e["data"])),
        key=len,
    )
    assert len(longest) <= 128, longest[:200]
    commits = [e["data"]["body"] for e in entries if e["data"].get("kind") == "KEY_COMMIT"]
    n = len(roster.keyholders)
    assert len(commits) == n and {len(c) for c in commits} == {64 * (n + 1)}


def test_data_names_the_servers_state_directory(audit_run: AuditRun, tmp_path: Path) -> None:
    """A server run with ``serve --data PATH`` keeps its log and blobs in PATH."""
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    elsewhere = tmp_path / "state"
    shutil.move(DeploymentLayout(copy).server_data, elsewhere)

    missing = verify_cli(copy)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert missing.stdout.splitlines()[-2:] == [
        f"FAIL: no audit log at {log_path(copy)} (if the server ran with "
        "`serve --data PATH`, pass --data PATH)",
        "audit log INVALID: 1 problem(s)",
    ]

    result = verify_cli(copy, "--data", elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "audit log verified"
    assert [x for x in lines if x.startswith(("FAIL", "warning"))] == [
        f"warning: {w}" for w in _expected_warnings(entries)
    ], result.stdout
    round_lines = [x for x in lines if x.startswith("round ")]
    assert len(round_lines) == ROUNDS  # the blobs were found under --data too
    assert all("aggregate recomputed OK" in x for x in round_lines), round_lines
    assert verify_log(copy, data=elsewhere).ok


# ------------------------------------------------------------------ forged releases


def _last_release(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return find(entries, "release", round=ROUNDS)


@pytest.mark.parametrize(
    "partials", ["none logged", "one logged", "one, twice", "quorum padded with a duplicate"]
)
def test_forged_release_is_rejected(audit_run: AuditRun, tmp_path: Path, partials: str) -> None:
    """A release signed with the server's real key (and a re-signed checkpoint after it)
    over fewer than t distinct key holders' logged partials of the round's aggregate."""
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    release = _last_release(entries)
    data = release["data"]
    real, quorum = list(data["partial_digests"]), list(data["quorum"])
    assert len(real) == len(quorum) == 2
    fake = [hashlib.sha256(b"fake partial %d" % i).hexdigest() for i in range(len(real))]
    if partials != "quorum padded with a duplicate":
        data["model_hash"] = hashlib.sha256(b"a model no quorum decrypted").hexdigest()
    if partials == "none logged":
        data["partial_digests"], valid = fake, 0
    elif partials == "one logged":
        data["partial_digests"], valid = [real[0], fake[1]], 1
    elif partials == "one, twice":  # one real partial, its key holder named twice
        data["quorum"], data["partial_digests"], valid = [quorum[0]] * 2, [real[0]] * 2, 1
    else:  # the real release, but with a key holder listed twice
        data["quorum"], data["partial_digests"], valid = quorum + quorum[1:], real + real[1:], 2
    resign_release(copy, data)
    reseal(copy, entries)
    assert entries[release["seq"]]["type"] == "checkpoint"  # re-signed over the forgery

    report = verify_log(copy)
    expected = (
        f"entry {release['seq']} (release): release of round {ROUNDS} has {valid} valid "
        f"distinct partial decryptions; threshold 2"
    )
    assert report.errors == [expected]  # no signature or chain error: only the threshold
    result = verify_cli(copy)
    assert result.returncode == 1, result.stdout
    assert f"FAIL: {expected}" in result.stdout.splitlines()


def test_release_of_another_aggregate_is_rejected(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    release = _last_release(entries)
    release["data"]["aggregate_digest"] = hashlib.sha256(b"another aggregate").hexdigest()
    resign_release(copy, release["data"])
    reseal(copy, entries)
    report = verify_log(copy)
    assert (
        f"entry {release['seq']} (release): release of round {ROUNDS} is not of the round's "
        "logged aggregate"
    ) in report.errors, report.errors
    assert not [e for e in report.errors if "signature" in e or "chain head" in e], report.errors
    result = verify_cli(copy)
    assert result.returncode == 1
    assert any("not of the round's logged aggregate" in m for _, _, m in fail_lines(result.stdout))


def test_release_of_a_model_the_quorum_did_not_decrypt_is_rejected(
    audit_run: AuditRun, tmp_path: Path
) -> None:
    copy = copy_deployment(audit_run, tmp_path)  # ciphertexts and partials retained
    entries = load_entries(copy)
    release = _last_release(entries)
    release["data"]["model_hash"] = hashlib.sha256(b"the server's own model").hexdigest()
    resign_release(copy, release["data"])
    reseal(copy, entries)
    report = verify_log(copy)
    assert not report.ok
    assert named(report.errors)[0] == release["seq"]


# ------------------------------------------------------------------ durable logging


def test_server_refuses_an_upload_it_cannot_log(harness: Harness) -> None:
    dep = harness.create(clients=2, rounds=1, model_length=2_000, round_timeout=300)
    info = harness.start_deployment(dep)  # key holders up; no client runs
    audit = dep.data / "audit.log"
    entries_before = len(load_entries(dep.directory))
    header, blob = dep.build_upload("c1", info, np.full(2_000, 0.25), weight=10)

    moved = dep.data / "audit.log.moved"
    audit.rename(moved)
    audit.mkdir()  # appending to the log now fails
    try:
        with pytest.raises(grpc.RpcError) as refused:
            dep.upload("c1", header, blob)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
        assert "AuditWriteFailed" in (refused.value.details() or "")
        now = dep.round_info()
        assert now is not None and now.round == 1 and now.state == pb.COLLECTING
        assert now.accepted_uploads == 0
        assert dep.db_rows("SELECT COUNT(*) FROM uploads")[0][0] == 0
        assert dep.db_rows("SELECT COUNT(*) FROM nonces")[0][0] == 0
        dep.assert_running("server")
    finally:
        audit.rmdir()
        moved.rename(audit)

    assert len(load_entries(dep.directory)) == entries_before  # nothing half-written
    header2, _ = dep.build_upload("c1", info, blob=blob, weight=10)
    assert header2.nonce != header.nonce
    receipt = dep.upload("c1", header2, blob)
    assert receipt.accepted_uploads == 1
    assert dep.wait_collecting(1, uploads=1, timeout=10).accepted_uploads == 1
    # the chain continued where it stopped: the log verifies and ends with this upload
    entries = load_entries(dep.directory)
    assert len(entries) == entries_before + 1
    last = entries[-1]
    assert last["type"] == "upload" and last["data"]["client"] == "c1"
    assert last["data"]["nonce"] == header2.nonce.hex()
    report = verify_log(dep.directory)
    assert report.ok, report.errors
    assert report.warnings == [
        f"entries after the last checkpoint (up to {len(entries)}) are not signed yet",
        "no witness heads: a truncated or re-signed log cannot be told from the original",
    ]
    assert os.path.isfile(audit)
