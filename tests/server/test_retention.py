"""Blob retention (``policy.retain_rounds``), in-process: after a release the server deletes
the ciphertexts of rounds older than the last ``retain_rounds`` and keeps every model."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.store import Store

from ._keyholders import run
from .conftest import Server, World, make_server
from .test_decryption import _fill

WEIGHTS = {"c1": 10, "c2": 25, "c3": 7, "c4": 58}


def _release_round(server: Server) -> None:
    number = server.info().round
    _fill(server, WEIGHTS)
    run(server, (1, 2, 3))
    assert server.manager.release(number) is not None


def _blobs(server: Server, round_number: int) -> set[bytes]:
    return server.manager.releases.retention.ciphertext_hashes(round_number)


def test_old_rounds_ciphertexts_are_pruned_after_a_release(
    world: World, store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(world.with_policy(retain_rounds=1), store, tmp_path)
    _release_round(server)
    first = _blobs(server, 1)
    assert len(first) >= 6 and all(server.ctx.blobs.has(h) for h in first)  # kept: the last 1
    with caplog.at_level("INFO", logger="secagg.server"):
        _release_round(server)
    assert not any(server.ctx.blobs.has(h) for h in first)
    assert all(server.ctx.blobs.has(h) for h in _blobs(server, 2))
    for number in (1, 2):  # models stay: every party and the verifier read them
        rnd = store.round(number)
        assert rnd is not None and server.ctx.blobs.has(rnd.global_model_hash)
    assert f"round 1: pruned {len(first)} ciphertext blobs" in caplog.text


def test_retain_rounds_zero_keeps_everything(world: World, store: Store, tmp_path: Path) -> None:
    server = make_server(world, store, tmp_path)
    assert world.roster.policy.retain_rounds == 0
    _release_round(server)
    _release_round(server)
    assert all(server.ctx.blobs.has(h) for h in _blobs(server, 1))
