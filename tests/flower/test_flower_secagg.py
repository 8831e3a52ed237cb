"""The example Flower app through real ``secagg serve`` + 3 key holders (t = 2).

Three Flower nodes (the example's ClientApp with the SecAgg mod, in-process grid: no
Ray) train for two rounds; the SecAgg FedAvg strategy aggregates through secagg. The
released model must equal Flower's plain FedAvg of the same nodes (same seeds) within
1e-6, and be the model the key holders endorsed in round 2's release.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp
from integration._harness import Deployment, Harness

from clients.flower import ModelLayout
from clients.flower.example.secagg_flower_example import client_app, server_app, task

from ._grid import InProcessGrid

NODES = 3


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment whose initial model is the example's, served, with 3 key holders."""
    root = tmp_path_factory.mktemp("flower")
    blob = root / "initial-model.bin"
    length = task.write_initial_model(blob, seed=0)
    harness = Harness(root)
    try:
        dep = harness.create(
            clients=NODES, keyholders=3, threshold=2, rounds=2, model_length=length,
            init_args=["--initial-model", str(blob)],
        )  # fmt: skip
        harness.start_deployment(dep)
        yield dep
    finally:
        harness.stop_all()


def run_config(directory: Path) -> dict[str, Any]:
    return {
        "num-server-rounds": 2, "local-epochs": 1, "lr": 0.1, "seed": 0,
        "server-secagg-dir": str(directory), "result-file": "",
    }  # fmt: skip


def node_configs(directory: Path | None) -> list[dict[str, Any]]:
    """Each node's own configuration: its data partition and (with secagg) its anchor."""
    nodes: list[dict[str, Any]] = []
    for i in range(NODES):
        node: dict[str, Any] = {"partition-id": i, "num-partitions": NODES}
        if directory is not None:
            node |= {"secagg-dir": str(directory), "secagg-client": f"c{i + 1}"}
        nodes.append(node)
    return nodes


def flat(arrays: ArrayRecord) -> np.ndarray:
    return ModelLayout.of(arrays).flatten(arrays)


def test_flower_fedavg_through_secagg_equals_plaintext_fedavg(deployment: Deployment) -> None:
    config = run_config(deployment.directory)
    grid = InProcessGrid(client_app.app, node_configs(deployment.directory), config)
    try:
        result = server_app.run(grid, config)
    except Exception:
        print(deployment.log_tail())
        raise
    assert not grid.failures, grid.failures

    plain_app = ClientApp()
    plain_app.train()(task.train)
    plain = server_app.run(
        InProcessGrid(plain_app, node_configs(None), config), config, secagg=False
    )

    error = float(np.abs(flat(result.arrays) - flat(plain.arrays)).max())
    print(f"secagg FedAvg vs plaintext FedAvg, 2 rounds: max abs difference {error:.3g}")
    assert error < 1e-6, error
    release = deployment.get_release(2)
    assert release is not None
    deployment.verify_release(release)
    assert np.array_equal(deployment.model_of(release), flat(result.arrays))
    # the Flower server got signed statements and metrics, never an update
    assert len(grid.replies) == 2 * NODES
    assert all(not reply.content.array_records for reply in grid.replies)
