"""Shared fixtures: parameter sets and key sets are built once per session."""

from __future__ import annotations

import pytest

import secagg


@pytest.fixture(scope="session")
def params() -> secagg.Parameters:
    """The default parameter set."""
    return secagg.Parameters.default()


@pytest.fixture(scope="session")
def keys32(params: secagg.Parameters) -> secagg.KeySet:
    """A 2-of-3 key set under the default parameters."""
    return secagg.dealerless_keygen(n=3, t=2, params=params)


@pytest.fixture(scope="session")
def other_keys32(params: secagg.Parameters) -> secagg.KeySet:
    """A second, independent 2-of-3 key set under the same parameters."""
    return secagg.dealerless_keygen(n=3, t=2, params=params)
