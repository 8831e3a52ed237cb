"""Weight starvation: one client's upload must never exhaust a round's weight budget.

``secagg init`` caps one upload at ``max_total_weight // clients`` (the policy's
``max_client_weight``), so every roster client together always fits; a roster whose cap
breaks that is refused, and :func:`~secagg.protocol.policy.check_upload` — which the
server runs before it accepts an upload — refuses an upload above the cap.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from secagg.errors import ConfigError, WeightBudgetExceeded
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.policy import check_upload
from secagg.protocol.roster import Policy, load_roster
from secagg.protocol.statements import UploadStatement


def test_init_caps_one_upload_so_that_all_clients_fit(tmp_path: Path) -> None:
    roster = init_deployment(tmp_path / "d", clients=3, keyholders=3, threshold=2)
    budget = roster.params.max_total_weight
    assert roster.policy.max_client_weight == budget // 3
    assert roster.policy.min_weight == Policy.default_of("min_weight") == 1
    # the heaviest upload the server accepts leaves room for every other client
    upload = UploadStatement(
        deployment_id=roster.deployment_id,
        round=1,
        client_id="c1",
        nonce=bytes(16),
        global_model_hash=roster.initial_model_hash,
        ciphertext_hash=hashlib.sha256(b"c").digest(),
        weight=budget,
    )
    with pytest.raises(WeightBudgetExceeded, match=f"per-client cap of {budget // 3}"):
        check_upload(roster.policy, roster.params, upload)
    check_upload(roster.policy, roster.params, dataclasses.replace(upload, weight=budget // 3))


def test_a_cap_that_lets_one_client_starve_the_others_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_client_weight"):
        init_deployment(
            tmp_path / "d", clients=4, keyholders=3, threshold=2, max_client_weight=2**15
        )
    assert not (tmp_path / "d" / "roster.toml").exists()
    init_deployment(tmp_path / "ok", clients=4, keyholders=3, threshold=2)
    roster_file = DeploymentLayout(tmp_path / "ok").roster
    text = roster_file.read_text().replace("max_client_weight = 16384", "max_client_weight = 65536")
    roster_file.write_text(text)
    with pytest.raises(ConfigError, match="exceeds the weight budget"):
        load_roster(tmp_path / "ok")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_weight": 0}, "min_weight"),
        ({"min_weight": 11, "max_client_weight": 10}, "min_weight"),
        ({"max_client_weight": 0}, "max_client_weight"),
    ],
)
def test_policy_validates_the_weight_bounds(changes: dict[str, int], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Policy(threshold=2, keyholders=3, **changes)
