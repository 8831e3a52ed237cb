"""The tamper-evident audit log of a real run, and ``secagg audit verify`` against tampering.

One module-scoped run (``audit_run``: server, 3 key holders with t = 2, 4 synthetic
clients, 2 rounds) produces a real log; every test works on its own copy of the
deployment directory, so edits never leak between tests. The verifier runs as the CLI
(``python -m secagg.cli audit verify COPY``) where the exit code and the printed lines
matter, and in-process (``verify_log``) where a test checks many variants.

Tampering comes in two strengths: raw edits (a flipped byte, a deleted, swapped or
truncated line), and rewrites by someone who holds the *server's* signing key and
re-signs everything the server signs (releases and checkpoints, with the chain heads
recomputed). The second kind is only caught by what the server cannot forge: client and
key-holder signatures, the heads key holders co-signed, and the threshold of partials.

A last test runs its own small deployment to show that the server refuses an upload whose
audit entry cannot be written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.protocol.audit_log import ZERO_HEAD, canonical, checkpoint_digest, leaf_hash, next_head
from secagg.protocol.audit_verify import format_report, verify_log
from secagg.protocol.roster import load_roster
from secagg.proto import service_pb2 as pb
from secagg.protocol.signing import partial_signature_digest, release_digest, sign, upload_digest
from secagg.rpc.transport import identity

from ._harness import Harness, cli

CLIENTS = {"c1": (11, 10), "c2": (22, 25), "c3": (33, 7), "c4": (44, 58)}  # name: (seed, weight)
ROUNDS = 2
ROUND_ENTRIES = ["round_open", *["upload"] * len(CLIENTS), "aggregate", "decryption_request"]
ROUND_ENTRIES += ["partial", "partial", "release", "checkpoint"]
FAIL = re.compile(r"^FAIL: entry (\d+) \((\w+)\): (.+)$")
ENTRY = re.compile(r"^entry (\d+)\b")


@dataclass
class AuditRun:
    directory: Path
    releases: dict[int, pb.Release]  # from GetRelease, while the server ran


@pytest.fixture(scope="module")
def audit_run(module_harness: Harness) -> AuditRun:
    dep = module_harness.create(rounds=ROUNDS, model_length=20_000, round_timeout=300)
    module_harness.start_deployment(dep)
    releases = dep.run_to_finish(CLIENTS, ROUNDS, finish_timeout=60)
    for name in ("kh1", "kh2", "kh3", "server"):  # key holders first (see test_rounds.py)
        assert dep.stop(name) == 0, f"{name} did not stop cleanly\n{dep.log_tail()}"
    return AuditRun(dep.directory, releases)


# ------------------------------------------------------------------ helpers


def copy_deployment(run: AuditRun, tmp_path: Path, *, blobs: bool = True) -> Path:
    """A private copy of the finished deployment (optionally without the ciphertexts)."""
    target = tmp_path / "dep"
    shutil.copytree(run.directory, target)
    if not blobs:
        shutil.rmtree(target / "server" / "data" / "blobs")
    return target


def log_path(directory: Path) -> Path:
    return directory / "server" / "data" / "audit.log"


def load_entries(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path(directory).read_bytes().splitlines()]


def write_raw(directory: Path, lines: list[bytes]) -> None:
    log_path(directory).write_bytes(b"".join(line + b"\n" for line in lines))


def server_key(directory: Path) -> Ed25519PrivateKey:
    return identity(directory, "server").signing_key()


def reseal(directory: Path, entries: list[dict[str, Any]], *, renumber: bool = False) -> None:
    """Write ``entries`` as the server would have: every checkpoint's head recomputed over
    the (modified) chain and re-signed with the server's real key. ``renumber`` also
    rewrites the sequence numbers (after a deletion) and the checkpoints' sizes."""
    dep_id = load_roster(directory).deployment_id
    key = server_key(directory)
    heads, lines = [ZERO_HEAD], []
    for seq, entry in enumerate(entries, start=1):
        if renumber:
            entry["seq"] = seq
            if entry["type"] == "checkpoint":
                entry["data"]["size"] = seq - 1
        if entry["type"] == "checkpoint":
            size = entry["data"]["size"]
            entry["data"]["head"] = heads[size].hex()
            digest = checkpoint_digest(deployment_id=dep_id, size=size, head=heads[size])
            entry["data"]["server_signature"] = sign(key, digest).hex()
        raw = canonical(entry)
        lines.append(raw)
        heads.append(next_head(heads[-1], leaf_hash(raw)))
    write_raw(directory, lines)


def resign_release(directory: Path, data: dict[str, Any]) -> None:
    """Sign a (modified) release entry with the server's real key."""
    data["server_signature"] = sign(
        server_key(directory),
        release_digest(
            deployment_id=load_roster(directory).deployment_id,
            round_number=int(data["round"]),
            model_hash=bytes.fromhex(data["model_hash"]),
            aggregate_digest=bytes.fromhex(data["aggregate_digest"]),
            quorum=[int(q) for q in data["quorum"]],
            partial_digests=[bytes.fromhex(p) for p in data["partial_digests"]],
        ),
    ).hex()


def resign_upload(directory: Path, data: dict[str, Any]) -> None:
    """Sign a (modified) upload entry with its client's real key."""
    data["signature"] = sign(
        identity(directory, data["client"]).signing_key(),
        upload_digest(
            deployment_id=load_roster(directory).deployment_id,
            round_number=int(data["round"]),
            client_id=data["client"],
            nonce=bytes.fromhex(data["nonce"]),
            global_model_hash=bytes.fromhex(data["global_model_hash"]),
            ciphertext_hash=bytes.fromhex(data["ciphertext_hash"]),
            weight=int(data["weight"]),
            epsilon=float(data["epsilon"]),
        ),
    ).hex()


def find(entries: list[dict[str, Any]], type_: str, **match: Any) -> dict[str, Any]:
    """The first entry of ``type_`` whose data has the given values."""
    for e in entries:
        if e["type"] == type_ and all(e["data"].get(k) == v for k, v in match.items()):
            return e
    raise AssertionError(f"no {type_} entry with {match}")


def verify_cli(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("audit", "verify", directory, *args, timeout=60)


def fail_lines(stdout: str) -> list[tuple[int, str, str]]:
    """(entry, type, message) of every FAIL line."""
    found = []
    for line in stdout.splitlines():
        m = FAIL.match(line)
        if m:
            found.append((int(m.group(1)), m.group(2), m.group(3)))
    return found


def named(errors: list[str]) -> list[int]:
    """The entry number every error names (each must name one)."""
    numbers = []
    for err in errors:
        m = ENTRY.match(err)
        assert m, f"error names no entry: {err!r}"
        numbers.append(int(m.group(1)))
    return numbers


def audit_run_value(run: AuditRun, entry: dict[str, Any], field: str) -> Any:
    """A field of an entry as the real run logged it."""
    line = log_path(run.directory).read_bytes().splitlines()[entry["seq"] - 1]
    return json.loads(line)["data"][field]


def assert_verifies(directory: Path) -> None:
    """The copy is still valid before a test tampers with it (so the test is not vacuous)."""
    report = verify_log(directory)
    assert report.ok, report.errors


# ------------------------------------------------------------------ the untouched log


def test_untouched_log_verifies(audit_run: AuditRun, tmp_path: Path) -> None:
    copy = copy_deployment(audit_run, tmp_path)
    entries = load_entries(copy)
    result = verify_cli(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{len(entries)} entries"
    assert lines[-1] == "audit log verified"
    assert not [x for x in lines if x.startswith(("FAIL", "warning"))], result.stdout
    round_lines = [x for x in lines if x.startswith("round ")]
    assert len(round_lines) == ROUNDS, result.stdout
    total = sum(w for _, w in CLIENTS.values())
    for r, line in enumerate(round_lines, start=1):
        rel = audit_run.releases[r]
        assert line == (
            f"round {r}: 4 uploads (0 rejected), 4 contributors, total weight {total}, "
            f"aggregate recomputed OK, key holders {sorted(rel.quorum)}, "
            f"model {rel.model_hash.hex()[:16]}, max epsilon 0.000"
        )

    as_json = verify_cli(copy, "--json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is True and report["errors"] == [] and report["warnings"] == []
    assert report["entries"] == len(entries)
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for r in report["rounds"]:
        rel = audit_run.releases[r["round"]]
        assert r["aggregate_recomputed"] is True
        assert (r["uploads"], r["rejected"], r["contributors"]) == (4, 0, 4)
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
    assert report["ok"] is True and len(report["warnings"]) == 2 * ROUNDS
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
    assert types[first:] == ["public_key", *ROUND_ENTRIES * ROUNDS]
    roster = load_roster(copy)
    assert entries[0]["data"]["deployment_id"] == roster.deployment_id
    assert (
        entries[0]["data"]["roster_sha256"]
        == hashlib.sha256((copy / "roster.toml").read_bytes()).hexdigest()
    )

    blobs = copy / "server" / "data" / "blobs"
    for r in range(1, ROUNDS + 1):
        opened = find(entries, "round_open", round=r)
        uploads = [e for e in entries if e["type"] == "upload" and e["data"]["round"] == r]
        assert {u["data"]["client"]: u["data"]["weight"] for u in uploads} == {
            c: w for c, (_, w) in CLIENTS.items()
        }
        for u in uploads:
            assert u["data"]["global_model_hash"] == opened["data"]["global_model_hash"]
            blob = (blobs / u["data"]["ciphertext_hash"]).read_bytes()  # retained ciphertext
            assert hashlib.sha256(blob).hexdigest() == u["data"]["ciphertext_hash"]
        request = find(entries, "decryption_request", round=r)
        partials = [e for e in entries if e["type"] == "partial" and e["data"]["round"] == r]
        rel = audit_run.releases[r]
        assert sorted(p["data"]["keyholder"] for p in partials) == sorted(rel.quorum)
        for p in partials:  # key holders co-signed the head right after the request
            assert p["data"]["checkpoint_size"] == request["seq"]
        release = find(entries, "release", round=r)
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

    longest = max((s for e in entries for s in strings(e["data"])), key=len)
    assert len(longest) <= 128, longest[:200]


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
        target["data"]["signature"] = sign(
            identity(copy, f"kh{k}").signing_key(),
            partial_signature_digest(
                deployment_id=load_roster(copy).deployment_id,
                round_number=rnd,
                keyholder=k,
                partial_digest=hashlib.sha256(b"another partial").digest(),
                aggregate_digest=bytes.fromhex(target["data"]["aggregate_digest"]),
            ),
        ).hex()
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
        f"that entries 1..{p['data']['checkpoint_size']} do not produce"
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
    assert report.errors == expected
    # the CLI agrees: exit 1, the first FAIL line names the first problem
    result = verify_cli(copy)
    assert result.returncode == 1, result.stdout
    seq = named(expected)[0]
    first = fail_lines(result.stdout)[0]
    assert first[0] == seq and first[1] == ("aggregate" if seq == aggregate["seq"] else "partial")


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
        f"entries after the last checkpoint (up to {len(entries)}) are not signed yet"
    ]
    assert os.path.isfile(audit)
