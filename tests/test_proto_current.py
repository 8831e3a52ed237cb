"""The committed generated protobuf and gRPC modules match ``secagg/proto/*.proto``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO = "secagg/proto/core.proto"
PROTOS = (PROTO, "secagg/proto/service.proto")
GENERATED = (
    "secagg/proto/core_pb2.py",
    "secagg/proto/core_pb2.pyi",
    "secagg/proto/service_pb2.py",
    "secagg/proto/service_pb2.pyi",
    "secagg/proto/service_pb2_grpc.py",
)


def test_generated_code_is_current(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *PROTOS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for rel in GENERATED:
        fresh = (tmp_path / rel).read_bytes()
        committed = (ROOT / rel).read_bytes()
        assert fresh == committed, f"{rel} is stale: run `make proto` and commit the result"


def test_generated_module_describes_the_proto() -> None:
    """The imported module is the generated one (guards against a stale install)."""
    from secagg.proto import core_pb2

    assert core_pb2.DESCRIPTOR.name == PROTO
    assert core_pb2.DESCRIPTOR.package == "secagg.core.v1"
    names = set(core_pb2.DESCRIPTOR.message_types_by_name)
    assert names == {
        "EncryptedVector",
        "EncryptedAggregate",
        "PartialDecryption",
        "JointPublicKey",
        "KeyShare",
    }
