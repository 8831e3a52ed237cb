"""``audit verify`` recomputes a round from the server's chunk files, chunk by chunk.

A full in-process round leaves the uploads, the aggregate and the partials as chunk files
in the blob store; the verifier refolds the uploads in a temporary accumulator and
recombines each quorum's partials, and compares with the logged digests. A stored upload
that was tampered with is reported, never trusted.
"""

from __future__ import annotations

from pathlib import Path

from secagg.protocol.audit_log import read_entries
from secagg.protocol.audit_verify import Report
from secagg.protocol.audit_verify import _check_entry as check_entry
from secagg.protocol.audit_verify.context import Verification
from secagg.protocol.layout import DeploymentLayout

from ._keyholders import run
from .conftest import Server
from .test_decryption import _fill

WEIGHTS = {"c1": 10, "c2": 25, "c3": 7, "c4": 58}


def _verify(server: Server, tmp_path: Path) -> Report:
    entries = list(read_entries(server.audit_path))
    report = Report()
    layout = DeploymentLayout(tmp_path, server.ctx.blobs.root.parent)
    verification = Verification(layout, server.world.roster, entries, report)
    for entry in entries[1:]:
        check_entry(verification, entry)
    return report


def _released_round(server: Server) -> None:
    _fill(server, WEIGHTS)
    run(server, (1, 2, 3))
    assert server.manager.release(1) is not None


def test_the_verifier_recomputes_from_the_chunk_files(server: Server, tmp_path: Path) -> None:
    _released_round(server)
    report = _verify(server, tmp_path)
    assert report.rounds[1].aggregate_recomputed is True
    assert not [e for e in report.errors if "recompute" in e or "differs" in e], report.errors
    assert not [w for w in report.warnings if "not retained" in w], report.warnings


def test_a_tampered_upload_file_is_reported(server: Server, tmp_path: Path) -> None:
    _released_round(server)
    upload = server.ctx.store.uploads(1)[0]
    path = server.ctx.blobs.path(upload.statement.ciphertext_hash)
    data = bytearray(path.read_bytes())
    data[0] ^= 1  # the first chunk's first byte
    path.write_bytes(bytes(data))
    report = _verify(server, tmp_path)
    assert report.rounds[1].aggregate_recomputed is False
    assert any("cannot recompute the aggregate" in e for e in report.errors), report.errors
