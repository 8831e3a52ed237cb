"""Round 1's model is fixed in the roster at ``secagg init``; every party checks it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clients.client import TrainingClient
from clients.trainer import SyntheticTrainer
from secagg.errors import ConfigError, SignatureInvalid
from secagg.proto import service_pb2 as pb
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import decode_model, encode_model
from secagg.protocol.roster import load_roster
from secagg.rpc.transport import identity


def test_init_writes_the_model_and_fixes_its_hash(tmp_path: Path) -> None:
    model = np.linspace(-1, 1, 50)
    roster = init_deployment(tmp_path / "d", clients=2, keyholders=1, threshold=1,
                             model_length=50, initial_model=model)  # fmt: skip
    blob = DeploymentLayout(tmp_path / "d").initial_model.read_bytes()
    assert hashlib.sha256(blob).digest() == roster.initial_model_hash
    assert np.array_equal(decode_model(blob, length=50)[1], model)
    zeros = init_deployment(tmp_path / "z", clients=2, keyholders=1, threshold=1, model_length=50)
    assert zeros.initial_model_hash == hashlib.sha256(encode_model(1, np.zeros(50))).digest()


def test_a_wrong_initial_model_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    for bad in (np.zeros(49), np.full(50, np.nan)):
        with pytest.raises(ConfigError, match="initial model"):
            init_deployment(tmp_path / "d", clients=2, keyholders=1, threshold=1,
                            model_length=50, initial_model=bad)  # fmt: skip
        assert not (tmp_path / "d").exists()


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secagg.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_init_takes_a_model_file_and_serve_refuses_another(tmp_path: Path) -> None:
    model_file = tmp_path / "model.bin"
    model_file.write_bytes(encode_model(1, np.full(30, 0.25)))
    made = _cli("init", tmp_path / "d", "--clients", "2", "--keyholders", "1", "--threshold",
                "1", "--model-length", "30", "--initial-model", model_file)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (
        load_roster(tmp_path / "d").initial_model_hash
        == hashlib.sha256(model_file.read_bytes()).digest()
    )
    other = tmp_path / "other.bin"
    other.write_bytes(encode_model(1, np.zeros(30)))
    served = _cli("serve", tmp_path / "d", "--initial-model", other, "--address", "127.0.0.1:0")
    assert served.returncode == 2, served.stdout + served.stderr
    assert "initial model is not the one the roster fixes" in served.stderr


def test_client_refuses_a_round_1_model_other_than_the_rosters(tmp_path: Path) -> None:
    init_deployment(tmp_path / "d", clients=2, keyholders=1, threshold=1, model_length=20)
    client = TrainingClient(identity(tmp_path / "d", "c1"), SyntheticTrainer(seed=0, weight=1))
    crafted = hashlib.sha256(encode_model(1, np.ones(20))).digest()
    with pytest.raises(SignatureInvalid, match="not the roster's initial model"):
        client._checked_model(pb.RoundInfo(round=1, global_model_hash=crafted))
    client.conn.close()
