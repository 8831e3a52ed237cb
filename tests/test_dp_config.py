"""DPConfig (``clients/dp_trainer.py``): validation at construction, the one source of defaults.

These tests build configurations only; the training itself is in ``test_dp_trainer.py``.
"""

from __future__ import annotations

import argparse

import pytest

from clients.dp_trainer import DPConfig
from secagg.errors import ConfigError


@pytest.mark.parametrize(
    "bad",
    [
        {"accountant": "gdp"},
        {"accountant": "PRV"},
        {"optimizer": "rmsprop"},
        {"target_epsilon": 0.0},
        {"target_epsilon": -1.0},
        {"target_delta": 0.0},
        {"target_delta": 1.0},
        {"target_delta": -1e-5},
        {"lr_decay": 1.0},
        {"lr_decay": -0.1},
        {"rounds": 0},
        {"local_epochs": 0},
        {"batch_size": 0},
        {"hidden": 0},
        {"target_epsilon": float("inf")},
        {"target_epsilon": float("nan")},
        {"max_grad_norm": 0.0},
        {"max_grad_norm": -1.0},
        {"max_grad_norm": float("nan")},
        {"learning_rate": 0.0},
        {"learning_rate": -0.5},
        {"count_noise": 0.0},
        {"count_noise": -20.0},
        {"count_noise": float("inf")},
    ],
)
def test_dpconfig_rejects_bad_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DPConfig(**bad)  # type: ignore[arg-type]


def test_dpconfig_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as excinfo:
        DPConfig(accountant="gdp", target_delta=2.0, max_grad_norm=0.0, batch_size=0, hidden=0)
    message = str(excinfo.value)
    for field in ("accountant", "target_delta", "max_grad_norm", "batch_size", "hidden"):
        assert field in message, message


def test_dpconfig_default_of_names_each_field() -> None:
    assert DPConfig.default_of("target_epsilon") == DPConfig().target_epsilon == 3.0
    assert DPConfig.default_of("accountant") == "prv"
    with pytest.raises(KeyError):
        DPConfig.default_of("no_such_field")


def test_client_dp_options_default_to_dpconfig() -> None:
    """``secagg client``'s DP options take their defaults from DPConfig (one source)."""
    from clients.client import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["dep", "--name", "c1"])
    defaults = DPConfig()
    assert args.epsilon == defaults.target_epsilon
    assert args.delta == defaults.target_delta
    assert args.max_grad_norm == defaults.max_grad_norm
    assert args.accountant == defaults.accountant
    with pytest.raises(SystemExit):
        parser.parse_args(["dep", "--name", "c1", "--accountant", "gdp"])


def test_dpconfig_accepts_every_documented_choice() -> None:
    for accountant in ("prv", "rdp"):
        for optimizer in ("sgd", "adam"):
            cfg = DPConfig(accountant=accountant, optimizer=optimizer, lr_decay=0.0)
            assert (cfg.accountant, cfg.optimizer) == (accountant, optimizer)
