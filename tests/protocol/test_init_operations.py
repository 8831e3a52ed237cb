"""``secagg init`` at model size: atomic writes, the upload cap, derived timeouts, retention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from secagg import cli
from secagg import constants as C
from secagg.errors import ConfigError
from secagg.params import Parameters
from secagg.protocol import tls_identity
from secagg.protocol.deployment import init_deployment
from secagg.protocol.roster import load_roster
from secagg.protocol.sizing import round_timeout_for, transfer_timeout_for, upload_bytes


def test_a_failure_while_writing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tls_identity.party_certificate
    calls = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr("secagg.protocol.deployment.party_certificate", failing)
    with pytest.raises(OSError, match="disk full"):
        init_deployment(tmp_path / "d", clients=2, keyholders=2, threshold=1)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary copy


def test_a_model_of_100m_parameters_is_a_deployment_like_any_other(tmp_path: Path) -> None:
    """Uploads are chunked: no 2 GiB message limit caps the model (issue 13)."""
    roster = init_deployment(
        tmp_path / "d", clients=4, keyholders=3, threshold=2, model_length=100_000_000
    )
    policy = roster.policy
    assert policy.max_upload_bytes == upload_bytes(roster.params, 100_000_000) > 4 * 1024**3
    assert policy.transfer_timeout_seconds > 4000  # about 1 s per MB of one upload
    with pytest.raises(ConfigError, match="below one upload"):
        init_deployment(
            tmp_path / "e",
            clients=4,
            keyholders=3,
            threshold=2,
            model_length=100_000_000,
            max_upload_bytes=2 * 1024**3,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_a_non_empty_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty directory"):
        init_deployment(tmp_path / "d", clients=2, keyholders=1, threshold=1)
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["notes.txt"]
    (tmp_path / "e").mkdir()  # an empty directory is replaced
    init_deployment(tmp_path / "e", clients=2, keyholders=1, threshold=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "e"]


def test_small_models_keep_todays_timeouts_and_large_ones_grow() -> None:
    params = Parameters.default()
    small = upload_bytes(params, 1_000_000)
    assert transfer_timeout_for(small) == C.TRANSFER_TIMEOUT_SECONDS
    assert round_timeout_for(small) == C.DEFAULT_ROUND_TIMEOUT_SECONDS
    large = upload_bytes(params, 40_000_000)  # 1.8 GB
    assert transfer_timeout_for(large) == pytest.approx(large / 1e6, abs=0.1)
    assert round_timeout_for(large) == pytest.approx(large / 1e6, abs=0.1)


def test_init_derives_and_records_the_operational_policy(tmp_path: Path) -> None:
    roster = init_deployment(tmp_path / "d", clients=2, keyholders=1, threshold=1)
    policy = roster.policy
    assert policy.max_upload_bytes == upload_bytes(roster.params, policy.model_length)
    assert policy.transfer_timeout_seconds == C.TRANSFER_TIMEOUT_SECONDS
    assert policy.round_timeout_seconds == C.DEFAULT_ROUND_TIMEOUT_SECONDS
    assert policy.retain_rounds == 0


def test_init_options_override_and_are_validated(tmp_path: Path) -> None:
    base = ["--clients", "2", "--keyholders", "1", "--threshold", "1"]
    code = cli.main(
        ["init", str(tmp_path / "d"), *base, "--round-timeout", "90", "--transfer-timeout",
         "1200", "--max-upload-bytes", "500000", "--retain-rounds", "2"]
    )  # fmt: skip
    assert code == 0
    policy = load_roster(tmp_path / "d").policy
    assert (policy.round_timeout_seconds, policy.transfer_timeout_seconds) == (90.0, 1200.0)
    assert (policy.max_upload_bytes, policy.retain_rounds) == (500_000, 2)
    for bad in (
        ["--max-upload-bytes", "100000"],  # below one upload: every upload refused
        ["--transfer-timeout", "0"],
        ["--retain-rounds", "-1"],
    ):
        assert cli.main(["init", str(tmp_path / "x"), *base, *bad]) == 2
        assert not (tmp_path / "x").exists()


def test_rosters_without_the_new_fields_load_with_defaults(tmp_path: Path) -> None:
    init_deployment(tmp_path / "d", clients=2, keyholders=1, threshold=1)
    path = tmp_path / "d" / "roster.toml"
    text = path.read_text()
    kept = [line for line in text.splitlines() if not line.startswith(("transfer_", "retain_"))]
    path.write_text("\n".join(kept) + "\n")
    policy = load_roster(tmp_path / "d").policy
    assert policy.transfer_timeout_seconds == C.TRANSFER_TIMEOUT_SECONDS
    assert policy.retain_rounds == 0
