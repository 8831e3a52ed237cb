"""The shared real run of the audit tests, and the helpers that read, edit and re-sign its log.

``audit_run`` (server, 3 key holders with t = 2, 4 synthetic clients, 2 rounds, and one
upload the server refuses before round 1's clients start: a signed upload for the wrong
round) runs once per session, not once per module: the first audit test module that asks
for it runs the deployment to the end and stops every process, later modules reuse the finished
directory (stashed on the pytest config). Every test works on its own copy
(:func:`copy_deployment`), so edits never leak between tests.

The re-signing helpers forge what a holder of a party's real key could: they rebuild the
statement from the edited entry with the typed entries
(:mod:`secagg.protocol.audit_entries`) and sign it with ``Signed.create``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import ReleaseEntry, UploadEntry
from secagg.protocol.audit_log import canonical, leaf_hash
from secagg.protocol.audit_verify import verify_log
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.merkle import MerkleTree
from secagg.protocol.roster import load_roster
from secagg.protocol.statements import CheckpointStatement, Signed
from secagg.rpc.transport import identity

from ._harness import Harness, cli

CLIENTS = {"c1": (11, 10), "c2": (22, 25), "c3": (33, 7), "c4": (44, 58)}  # name: (seed, weight)
ROUNDS = 2
# n = 3, t = 2: the cross-checking family is every pair, asked at once (issue 10)
# per round: 3 locks (all of a 3-of-2 deployment), the 3 quorums of the cross-check, and
# t = 2 endorsements (the release follows the second; a third arrives too late)
ROUND_ENTRIES = ["round_open", *["upload"] * len(CLIENTS), "aggregate", *["lock"] * 3]
ROUND_ENTRIES += [*["decryption_request"] * 3, *["partial"] * 6, *["endorsement"] * 2]
ROUND_ENTRIES += ["release", "checkpoint"]
REJECTED = "c3"  # the client whose wrong-round upload round 1 refuses (logged after round_open)
FAIL = re.compile(r"^FAIL: entry (\d+) \((\w+)\): (.+)$")
ENTRY = re.compile(r"^entry (\d+)\b")


@dataclass
class AuditRun:
    directory: Path
    releases: dict[int, pb.Release]  # from GetRelease, while the server ran


_RUN = pytest.StashKey[AuditRun]()


@pytest.fixture(scope="module")
def audit_run(module_harness: Harness, request: pytest.FixtureRequest) -> AuditRun:
    """The finished run (every process stopped), shared by all audit test modules."""
    if _RUN not in request.config.stash:
        dep = module_harness.create(rounds=ROUNDS, model_length=20_000, round_timeout=300)
        info = module_harness.start_deployment(dep)
        header, blob = dep.build_upload(REJECTED, info, blob=os.urandom(64), round=info.round + 1)
        with pytest.raises(grpc.RpcError):
            dep.upload(REJECTED, header, blob)
        releases = dep.run_to_finish(CLIENTS, ROUNDS, finish_timeout=60)
        for name in ("kh1", "kh2", "kh3", "server"):  # key holders first (see test_rounds.py)
            assert dep.stop(name) == 0, f"{name} did not stop cleanly\n{dep.log_tail()}"
        request.config.stash[_RUN] = AuditRun(dep.directory, releases)
    return request.config.stash[_RUN]


# ------------------------------------------------------------------ reading and writing


def copy_deployment(run: AuditRun, tmp_path: Path, *, blobs: bool = True) -> Path:
    """A private copy of the finished deployment (optionally without the ciphertexts)."""
    target = tmp_path / "dep"
    shutil.copytree(run.directory, target)
    if not blobs:
        shutil.rmtree(DeploymentLayout(target).blobs)
    return target


def log_path(directory: Path) -> Path:
    return DeploymentLayout(directory).audit_log


def load_entries(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path(directory).read_bytes().splitlines()]


def write_raw(directory: Path, lines: list[bytes]) -> None:
    log_path(directory).write_bytes(b"".join(line + b"\n" for line in lines))


def server_key(directory: Path) -> Ed25519PrivateKey:
    return identity(directory, "server").signing_key()


def reseal(directory: Path, entries: list[dict[str, Any]], *, renumber: bool = False) -> None:
    """Write ``entries`` as the server would have: every checkpoint's head recomputed over
    the (modified) Merkle tree and re-signed with the server's real key. ``renumber`` also
    rewrites the sequence numbers (after a deletion) and the checkpoints' sizes."""
    dep_id = load_roster(directory).deployment_id
    key = server_key(directory)
    tree, lines = MerkleTree(), []
    for seq, entry in enumerate(entries, start=1):
        if renumber:
            entry["seq"] = seq
            if entry["type"] == "checkpoint":
                entry["data"]["size"] = seq - 1
        if entry["type"] == "checkpoint":
            size = entry["data"]["size"]
            entry["data"]["head"] = tree.root(size).hex()
            checkpoint = Signed.create(CheckpointStatement(dep_id, size, tree.root(size)), key)
            entry["data"]["server_signature"] = checkpoint.signature.hex()
        raw = canonical(entry)
        lines.append(raw)
        tree.append(leaf_hash(raw))
    write_raw(directory, lines)


def resign_release(directory: Path, data: dict[str, Any]) -> None:
    """Sign a (modified) release entry with the server's real key."""
    statement = ReleaseEntry.from_data(data).signed(load_roster(directory).deployment_id).statement
    data["server_signature"] = Signed.create(statement, server_key(directory)).signature.hex()


def resign_upload(directory: Path, data: dict[str, Any]) -> None:
    """Sign a (modified) upload entry with its client's real key."""
    statement = UploadEntry.from_data(data).signed(load_roster(directory).deployment_id).statement
    key = identity(directory, data["client"]).signing_key()
    data["signature"] = Signed.create(statement, key).signature.hex()


def find(entries: list[dict[str, Any]], type_: str, **match: Any) -> dict[str, Any]:
    """The first entry of ``type_`` whose data has the given values."""
    for e in entries:
        if e["type"] == type_ and all(e["data"].get(k) == v for k, v in match.items()):
            return e
    raise AssertionError(f"no {type_} entry with {match}")


def verify_cli(directory: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
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
