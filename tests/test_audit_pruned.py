"""``secagg audit verify`` on a deployment whose server prunes old rounds' ciphertexts.

Under ``policy.retain_rounds > 0`` the verifier names the rounds it could not recompute
because their ciphertexts were pruned, and still checks every signature of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_audit_verify import write_log

from secagg.protocol.audit_verify import format_report, verify_log
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout


@pytest.fixture
def pruning(tmp_path: Path) -> Path:
    directory = tmp_path / "deployment"
    init_deployment(
        directory, clients=4, keyholders=3, threshold=2, max_weight_share=0.5, retain_rounds=1
    )
    DeploymentLayout(directory).blobs.mkdir(parents=True)  # the server pruned every blob
    return directory


def test_pruned_rounds_are_named_and_not_recomputed(pruning: Path) -> None:
    write_log(pruning)
    report = verify_log(pruning)
    assert report.ok, report.errors
    assert report.pruned_rounds == [1] and report.rounds[1].aggregate_recomputed is None
    named = "rounds 1 could not be recomputed: their ciphertexts were pruned"
    assert report.to_json()["warnings"][0].startswith(named)
    assert report.to_json()["pruned_rounds"] == [1]
    assert f"warning: {named}" in format_report(report)
    assert any("pruned: policy.retain_rounds = 1" in w for w in report.warnings)


def test_signatures_of_pruned_rounds_are_still_checked(pruning: Path) -> None:
    write_log(pruning, refusal_signer="kh1")  # kh1 signs what kh3 refuses
    report = verify_log(pruning)
    assert report.pruned_rounds == [1]
    assert not report.ok and any("(refusal)" in e for e in report.errors), report.errors
