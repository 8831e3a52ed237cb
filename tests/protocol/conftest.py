"""A real deployment directory (CA, keys, roster) for the protocol-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from secagg.protocol.deployment import init_deployment
from secagg.protocol.roster import Roster
from secagg.rpc.transport import Identity, identity


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dep") / "deployment"
    init_deployment(directory, clients=4, keyholders=3, threshold=2, max_weight_share=0.5)
    return directory


@pytest.fixture(scope="module")
def roster(deployment: Path) -> Roster:
    return identity(deployment, "server").roster


@pytest.fixture(scope="module")
def parties(deployment: Path) -> dict[str, Identity]:
    names = ["server", "kh1", "kh2", "kh3", "c1", "c2", "c3", "c4"]
    return {n: identity(deployment, n) for n in names}
