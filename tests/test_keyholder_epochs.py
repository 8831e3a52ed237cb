"""A key holder's shares by key epoch (clients.keyholder.epochs), rotation, ceremony aborts."""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path

import pytest

import secagg
from clients.keyholder.agent import KeyHolder
from clients.keyholder.epochs import RETIRED_FILE, KeyShares
from clients.keyholder.rotation import Rotation
from clients.keyholder.storage import KeyHolderState
from secagg import constants as C
from secagg.errors import CeremonyAborted, ConfigError, InvalidKeyMaterial, KeyRetired
from secagg.protocol.deployment import init_deployment
from secagg.rpc.transport import identity

PASSPHRASE = secrets.token_bytes(16)


@pytest.fixture
def state(tmp_path: Path) -> KeyHolderState:
    return KeyHolderState(tmp_path / "party", tmp_path / "state", passphrase=PASSPHRASE)


def test_shares_are_kept_per_epoch_and_selected_by_key(
    state: KeyHolderState,
    params: secagg.Parameters,
    keys32: secagg.KeySet,
    other_keys32: secagg.KeySet,
) -> None:
    state.save_share(keys32.shares[0])  # epoch 1: share.enc, as before key epochs
    shares = KeyShares(state, params)
    shares.add(2, other_keys32.shares[0])
    assert state.share_epochs() == [1, 2] and state.share_path(2).name == "share-e2.enc"
    assert shares.newest_epoch() == 2
    assert shares.select(b"").public_key_id == other_keys32.public_key.id_bytes  # no hint
    old = keys32.public_key.id_bytes
    assert shares.select(old).public_key_id == old
    with pytest.raises(InvalidKeyMaterial, match="no share"):
        shares.select(bytes(32))


def test_using_a_later_key_retires_the_earlier_ones_durably(
    state: KeyHolderState,
    params: secagg.Parameters,
    keys32: secagg.KeySet,
    other_keys32: secagg.KeySet,
) -> None:
    state.save_share(keys32.shares[0])
    state.save_share(other_keys32.shares[0], epoch=2)
    shares = KeyShares(state, params)
    old, new = keys32.public_key.id_bytes, other_keys32.public_key.id_bytes
    shares.use(old)  # nothing earlier to retire
    assert state.share_epochs() == [1, 2]
    shares.use(new)
    assert state.share_epochs() == [2]  # the retired share is deleted
    with pytest.raises(KeyRetired, match="epoch 1 is retired"):
        shares.select(old)
    reloaded = KeyShares(state, params)  # after a restart
    with pytest.raises(KeyRetired):
        reloaded.select(old)
    with pytest.raises(KeyRetired):
        reloaded.use(old)
    assert reloaded.select(new).public_key_id == new


def test_a_damaged_retirement_record_is_refused(
    state: KeyHolderState, params: secagg.Parameters
) -> None:
    (state.state_dir / RETIRED_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        KeyShares(state, params)


def test_rotation_runs_the_newest_announced_ceremony_once() -> None:
    started: list[int] = []
    release = threading.Event()

    def ceremony(epoch: int, stop: threading.Event) -> None:
        started.append(epoch)
        while not (stop.is_set() or release.is_set()):
            stop.wait(0.01)
        if stop.is_set():
            raise InterruptedError

    rotation = Rotation(ceremony)
    rotation.follow(1, newest_held=1)  # held already: nothing to do
    rotation.follow(2, newest_held=1)
    rotation.follow(2, newest_held=1)  # running already
    rotation.follow(3, newest_held=1)  # the server abandoned 2: stop it, run 3
    release.set()
    rotation.stop()
    assert started == [2, 3]


def test_a_failed_rotation_ceremony_reaches_the_agent_loop() -> None:
    def ceremony(epoch: int, stop: threading.Event) -> None:
        raise CeremonyAborted("test", culprits=(3,))

    rotation = Rotation(ceremony)
    rotation.follow(2, newest_held=1)
    rotation.stop()
    with pytest.raises(CeremonyAborted, match="key holder 3"):
        rotation.follow(2, newest_held=1)  # epoch 2 is still the open one
    rotation.follow(3, newest_held=1)  # abandoned by the server: a new ceremony instead
    rotation.stop()


def test_an_aborted_ceremony_ends_the_agent_with_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "dep"
    init_deployment(directory, clients=2, keyholders=3, threshold=2, model_length=16)
    agent = KeyHolder(identity(directory, "kh1"), passphrase=PASSPHRASE)

    def aborted() -> None:
        raise CeremonyAborted("contribution does not match", culprits=(3,))

    monkeypatch.setattr(agent, "_run", aborted)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exited:
        agent.run()
    assert exited.value.code == C.EXIT_CEREMONY_ABORTED
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line == (
        "key holder 1: key ceremony aborted (CEREMONY_ABORTED): "
        "contribution does not match: key holder 3"
    )
