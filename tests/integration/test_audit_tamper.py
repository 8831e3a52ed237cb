"""Raw tampering with a real run's audit log, caught by ``secagg audit verify``.

Raw edits need no key: a flipped byte, a deleted, swapped or truncated line, a signature
in another hex case. Each must be reported naming the altered entry (or one after it,
never one before), by the CLI with exit code 1. The run and the helpers are in
``_audit_support.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secagg.protocol.audit_verify import format_report, verify_log

from . import _audit_support
from ._audit_support import (
    AuditRun,
    assert_verifies,
    copy_deployment,
    fail_lines,
    find,
    load_entries,
    log_path,
    named,
    verify_cli,
    write_raw,
)

audit_run = _audit_support.audit_run  # the one shared run (a fixture)


# ------------------------------------------------------------------ raw tampering


def _flip_targets(raw: bytes) -> dict[str, int]:
    """~40 labelled byte positions spread over the log and over every kind of content."""
    lines = raw.split(b"\n")[:-1]
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    parsed = [json.loads(line) for line in lines]
    types = [e["type"] for e in parsed]

    def first(type_: str, nth: int = 0) -> int:
        return [i for i, t in enumerate(types) if t == type_][nth]

    def at(index: int, needle: bytes, offset: int) -> int:
        pos = lines[index].find(needle)
        assert pos >= 0, (needle, lines[index][:80])
        return starts[index] + pos + len(needle) + offset

    roster, pk, ceremony = first("roster"), first("public_key"), first("ceremony", 2)
    # by client, not position (the upload order varies): c4's weight is 58, c2 is in round 2
    up1 = next(
        i for i, e in enumerate(parsed) if e["type"] == "upload" and e["data"]["client"] == "c4"
    )
    up2 = next(
        i
        for i, e in enumerate(parsed)
        if e["type"] == "upload" and e["data"]["client"] == "c2" and e["data"]["round"] == 2
    )
    agg, req = first("aggregate"), first("decryption_request", 1)
    part, part2 = first("partial"), first("partial", 3)
    rel, cp, cp_last = first("release"), first("checkpoint"), len(lines) - 1
    targets = {
        "roster deployment_id": at(roster, b'"deployment_id":"', 3),
        "roster policy number": at(roster, b'"threshold":', 0),
        "roster sha256": at(roster, b'"roster_sha256":"', 40),
        "ceremony signature": at(ceremony, b'"signature":"', 70),
        "ceremony body hash": at(ceremony, b'"body_sha256":"', 5),
        "ceremony kind": at(ceremony, b'"kind":"', 2),
        "public key id": at(pk, b'"id":"', 20),
        "upload signature": at(up1, b'"signature":"', 0),
        "upload signature end": at(up1, b'"signature":"', 127),
        "upload ciphertext hash": at(up1, b'"ciphertext_hash":"', 33),
        "upload nonce": at(up1, b'"nonce":"', 4),
        "upload weight": at(up1, b'"weight":5', 0),  # 58 -> 59
        "upload epsilon": at(up1, b'"epsilon":', 2),
        "upload round": at(up2, b'"round":', 0),
        "upload model hash": at(up2, b'"global_model_hash":"', 63),
        "upload key name": at(up2, b'"weig', 0),
        "upload client": at(up2, b'"client":"c', 0),
        "aggregate digest": at(agg, b'"aggregate_digest":"', 10),
        "aggregate input weight": at(agg, b'"weight":', 0),
        "aggregate total weight": at(agg, b'"total_weight":', 1),
        "aggregate list bracket": at(agg, b'"inputs":', 0),
        "request quorum": at(req, b'"quorum":[', 0),
        "request task id": at(req, b'"task_id":', 0),
        "partial signature": at(part, b'"signature":"', 50),
        "partial co-signed head": at(part, b'"checkpoint_head":"', 7),
        "partial co-signature": at(part, b'"checkpoint_signature":"', 90),
        "partial co-signed size": at(part, b'"checkpoint_size":', 1),
        "partial keyholder": at(part2, b'"keyholder":', 0),
        "partial digest": at(part2, b'"partial_digest":"', 12),
        "partial blob hash": at(part2, b'"partial_hash":"', 12),
        "release model hash": at(rel, b'"model_hash":"', 1),
        "release partial digest": at(rel, b'"partial_digests":["', 30),
        "release server signature": at(rel, b'"server_signature":"', 64),
        "checkpoint head": at(cp, b'"head":"', 0),
        "checkpoint size": at(cp, b'"size":', 0),
        "last checkpoint signature": at(cp_last, b'"server_signature":"', 100),
        "last checkpoint head": at(cp_last, b'"head":"', 63),
        "seq number": at(up2, b'"seq":', 0),
        "type name": at(agg, b'"type":"', 3),
        "opening brace": starts[req],
        "closing brace": starts[part + 1] - 2,
        "colon": at(pk, b'"id"', 0),
        "comma": at(rel, b'"quorum":[', 1),
        "quote": at(up1, b'"client":', 0),
        "newline mid-file": starts[agg] - 1,
        "final newline": len(raw) - 1,
    }
    for k in range(1, 8):  # and evenly spread positions
        targets[f"spread {k}/8"] = len(raw) * k // 8
    return targets


def test_any_single_byte_flip_is_detected(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    original = log_path(copy).read_bytes()
    assert_verifies(copy)
    targets = _flip_targets(original)
    assert len(targets) >= 40
    for label, pos in targets.items():
        flipped = bytearray(original)
        flipped[pos] ^= 0x01
        log_path(copy).write_bytes(bytes(flipped))
        line = original[:pos].count(b"\n") + 1  # the entry holding the byte
        report = verify_log(copy)
        assert not report.ok, f"flip at {pos} ({label}) went unnoticed"
        numbers = named(report.errors)
        # nothing before the altered entry can be blamed
        assert numbers[0] >= line, (label, line, report.errors)
        if "signature" in label and "co-" not in label:
            assert report.errors[0].startswith(f"entry {line} ("), (label, report.errors)
            assert "invalid signature" in report.errors[0], (label, report.errors)
        assert f"FAIL: {report.errors[0]}" in format_report(report).splitlines()

    # the CLI: exit code 1 and a FAIL line naming the entry
    pos = targets["upload weight"]
    flipped = bytearray(original)
    flipped[pos] ^= 0x01
    log_path(copy).write_bytes(bytes(flipped))
    entry = json.loads(original.split(b"\n")[original[:pos].count(b"\n")])
    assert entry["data"]["weight"] == 58
    result = verify_cli(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    fails = fail_lines(result.stdout)
    assert fails[0] == (
        entry["seq"],
        "upload",
        f"invalid signature by {entry['data']['client']}",
    ), result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("audit log INVALID")


@pytest.mark.parametrize("which", ["first", "middle", "last-but-one"])
def test_deleted_entry_is_detected(audit_run: AuditRun, tmp_path: Path, which: str) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    lines = log_path(copy).read_bytes().splitlines()
    entries = load_entries(copy)
    index = {
        "first": 0,
        "middle": entries.index(find(entries, "upload", round=1)) + 1,
        "last-but-one": len(lines) - 2,
    }[which]
    write_raw(copy, lines[:index] + lines[index + 1 :])
    follower = entries[index + 1]  # now at position index + 1
    result = verify_cli(copy)
    assert result.returncode == 1, result.stdout
    assert fail_lines(result.stdout)[0] == (
        index + 1,
        follower["type"],
        f"sequence number {index + 2} out of order",
    ), result.stdout


def test_reordered_entries_are_detected(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    lines = log_path(copy).read_bytes().splitlines()
    entries = load_entries(copy)
    i = entries.index(find(entries, "upload", round=2))
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    write_raw(copy, lines)
    result = verify_cli(copy)
    assert result.returncode == 1, result.stdout
    assert fail_lines(result.stdout)[0] == (
        i + 1,
        "upload",
        f"sequence number {i + 2} out of order",
    ), result.stdout


@pytest.mark.parametrize("where", ["last line", "middle line"])
def test_truncated_log_is_detected(audit_run: AuditRun, tmp_path: Path, where: str) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    raw = log_path(copy).read_bytes()
    lines = raw.splitlines()
    index = len(lines) - 1 if where == "last line" else len(lines) // 2
    cut = sum(len(x) + 1 for x in lines[:index]) + len(lines[index]) // 2
    log_path(copy).write_bytes(raw[:cut])
    result = verify_cli(copy)
    assert result.returncode == 1, result.stdout
    assert f"FAIL: entry {index + 1}: not a canonical audit entry" in result.stdout.splitlines()


# ------------------------------------------------------------------ known verifier bugs


def test_negative_number_is_reported_not_crashed(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    raw = log_path(copy).read_bytes()
    entry = find(load_entries(copy), "upload", round=1, client="c4")  # weight 58
    start = sum(len(x) + 1 for x in raw.splitlines()[: entry["seq"] - 1])
    pos = raw.index(b'"weight":58', start) + len(b'"weight":')
    log_path(copy).write_bytes(raw[:pos] + b"-" + raw[pos + 1 :])  # one byte: 58 -> -8
    report = verify_log(copy)
    assert report.errors and report.errors[0].startswith(f"entry {entry['seq']} (upload)")
    result = verify_cli(copy)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert fail_lines(result.stdout)[0][0] == entry["seq"]


def test_hex_case_of_the_final_signature_is_detected(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    raw = log_path(copy).read_bytes()
    start = raw.rstrip(b"\n").rfind(b"\n") + 1
    sig = raw.index(b'"server_signature":"', start) + len(b'"server_signature":"')
    pos = next(p for p in range(sig, sig + 128) if raw[p : p + 1] in b"abcdef")
    log_path(copy).write_bytes(raw[:pos] + raw[pos : pos + 1].upper() + raw[pos + 1 :])
    result = verify_cli(copy)
    assert result.returncode == 1, result.stdout
    assert fail_lines(result.stdout)[0][0] == len(raw.splitlines())
