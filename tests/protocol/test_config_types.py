"""Validated configuration: Policy refuses bad values at construction; the layout; the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from secagg import cli
from secagg.errors import ConfigError
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Policy, load_roster


def test_policy_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Policy(threshold=5, keyholders=3, max_weight_share=0.0, rounds=0, epsilon_budget=-1)
    text = str(info.value)
    for field in ("threshold", "max_weight_share", "rounds", "epsilon_budget"):
        assert field in text, text


def test_cli_defaults_come_from_the_policy_type() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["init", "d", "--clients", "2", "--keyholders", "3", "--threshold", "2"]
    )
    assert args.rounds == Policy.default_of("rounds")
    assert args.max_weight_share == Policy.default_of("max_weight_share")
    assert args.round_timeout is None  # derived from the model size by init_deployment
    assert args.epsilon_budget == Policy.default_of("epsilon_budget")


def test_refused_init_leaves_no_half_written_directory(tmp_path: Path) -> None:
    target = tmp_path / "dep"
    with pytest.raises(ConfigError):
        init_deployment(target, clients=2, keyholders=3, threshold=2, max_weight_share=2.0)
    assert not target.exists()


def test_layout_answers_where_things_are(tmp_path: Path) -> None:
    root = tmp_path / "out" / "deployment"
    init_deployment(root, clients=1, keyholders=1, threshold=1)
    found = DeploymentLayout.find(tmp_path / "out")
    assert found.root == root and load_roster(found.root).policy.keyholders == 1
    assert found.audit_log == root / "server" / "data" / "audit.log"
    moved = DeploymentLayout.find(root, server_data=tmp_path / "elsewhere")
    assert moved.database == tmp_path / "elsewhere" / "state.db"
    assert moved.party_dir("kh1", "keyholder") == root / "keyholders" / "kh1"
    assert moved.state_dir("c1", "client") == root / "clients" / "c1" / "state"
    with pytest.raises(ConfigError):
        DeploymentLayout.find(tmp_path / "nothing")


def test_roles_register_their_commands_through_entry_points() -> None:
    found = cli.registered_commands()
    assert {"serve", "keyholder", "client", "admin", "demo"} <= set(found)
    assert found["serve"].__name__ == "server.main"
    assert all(m.__name__.split(".")[0] in ("server", "clients") for m in found.values())
