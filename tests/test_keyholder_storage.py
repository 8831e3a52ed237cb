"""The share's storage key never sits beside the share.

The attacker here holds a copy of a key holder's whole directory (a backup, a stolen
disk) but not its environment. Before the change, ``secagg keyholder`` sealed the share
under ``storage.key`` in that directory unless ``--passphrase-env`` was given, so the copy
alone opened the share. Now the key holder refuses to start without a passphrase (from
``SECAGG_KEYHOLDER_PASSPHRASE`` or ``--passphrase-file`` outside its directory), and the
key is derived from it by scrypt. Enforced by the key holder's own storage
(:mod:`clients.keyholder.storage`): nothing else writes or reads the share.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
from pathlib import Path

import pytest

import secagg
from clients import keyholder as keyholder_cli
from clients.keyholder.agent import KeyHolder
from clients.keyholder.storage import KeyHolderState
from secagg.cli import main
from secagg.constants import KEYHOLDER_PASSPHRASE_ENV
from secagg.errors import ConfigError, InvalidKeyMaterial
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.sealing import decrypt_at_rest, encrypt_at_rest


@pytest.fixture
def deployment(tmp_path: Path, params: secagg.Parameters) -> Path:
    directory = tmp_path / "dep"
    roster = init_deployment(directory, clients=2, keyholders=3, threshold=2, model_length=16)
    assert roster.params.id_bytes == params.id_bytes
    return directory


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, keys32: secagg.KeySet) -> list[KeyHolder]:
    """``secagg keyholder`` runs up to the agent, which only stores kh1's share and returns."""
    agents: list[KeyHolder] = []

    class StoringAgent(KeyHolder):
        def run(self) -> None:
            self.state.save_share(keys32.shares[self.index - 1])
            agents.append(self)

    monkeypatch.setattr(keyholder_cli, "KeyHolder", StoringAgent)
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # leave pytest's handlers alone
    monkeypatch.delenv(KEYHOLDER_PASSPHRASE_ENV, raising=False)
    return agents


def _kh_dirs(deployment: Path, name: str = "kh1") -> tuple[Path, Path]:
    layout = DeploymentLayout(deployment)
    return layout.party_dir(name, "keyholder"), layout.state_dir(name, "keyholder")


def _attacker_opens(party_dir: Path) -> list[str]:
    """Every file of the directory tried as the share's raw key and as its passphrase."""
    share = (party_dir / "state" / "share.enc").read_bytes()
    opened = []
    for path in sorted(p for p in party_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for candidate in {data, data.strip()}:
            for is_passphrase in (False, True):
                try:
                    decrypt_at_rest(share, candidate, is_passphrase=is_passphrase)
                except InvalidKeyMaterial:
                    continue
                opened.append(f"{path.relative_to(party_dir)} (passphrase={is_passphrase})")
    return opened


def test_a_key_holder_without_passphrase_refuses_to_start(
    deployment: Path, started: list[KeyHolder], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keyholder", str(deployment), "--index", "1"]) == 2
    err = capsys.readouterr().err
    assert KEYHOLDER_PASSPHRASE_ENV in err and "--passphrase-file" in err, err
    assert not started
    assert not (_kh_dirs(deployment)[1] / "share.enc").exists()
    with pytest.raises(ConfigError, match="--passphrase-file"):
        KeyHolderState(*_kh_dirs(deployment), passphrase=None)
    with pytest.raises(ConfigError, match="--passphrase-file"):
        KeyHolderState(*_kh_dirs(deployment), passphrase=b"")


def test_the_directory_alone_does_not_open_the_share(
    deployment: Path, started: list[KeyHolder], monkeypatch: pytest.MonkeyPatch
) -> None:
    passphrase = secrets.token_urlsafe(24)
    monkeypatch.setenv(KEYHOLDER_PASSPHRASE_ENV, passphrase)
    assert main(["keyholder", str(deployment), "--index", "1"]) == 0
    assert len(started) == 1
    party_dir, state_dir = _kh_dirs(deployment)
    sealed = (state_dir / "share.enc").read_bytes()
    # the owner, with the passphrase, opens it (the check below is not vacuous) ...
    assert decrypt_at_rest(sealed, passphrase.encode(), is_passphrase=True)
    # ... the attacker, with every file of the directory, does not
    assert not _attacker_opens(party_dir)
    files = {p: p.read_bytes() for p in party_dir.rglob("*") if p.is_file()}
    assert not [p for p, data in files.items() if passphrase.encode() in data]


def test_a_passphrase_file_inside_the_key_holders_directory_is_refused(
    deployment: Path,
    started: list[KeyHolder],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    party_dir, state_dir = _kh_dirs(deployment)
    state_dir.mkdir(exist_ok=True)
    inside = party_dir / "passphrase.txt"
    inside.write_text("correct horse battery staple\n")
    in_state = state_dir / "passphrase.txt"
    in_state.write_text("correct horse battery staple\n")
    link = tmp_path / "looks-outside.txt"  # a symlink out of the directory is no way round
    link.symlink_to(inside)
    for path in (inside, in_state, link):
        args = ["keyholder", str(deployment), "--index", "1", "--passphrase-file", str(path)]
        assert main(args) == 2, path
        err = capsys.readouterr().err
        assert "lies inside" in err, err
    assert not started

    outside = tmp_path / "elsewhere" / "kh1-passphrase"
    outside.parent.mkdir()
    outside.write_text("correct horse battery staple\n")
    args = ["keyholder", str(deployment), "--index", "1", "--passphrase-file", str(outside)]
    assert main(args) == 0
    sealed = (state_dir / "share.enc").read_bytes()
    assert decrypt_at_rest(sealed, b"correct horse battery staple", is_passphrase=True)


def test_an_older_share_under_storage_key_is_refused_until_resealed(
    deployment: Path,
    started: list[KeyHolder],
    keys32: secagg.KeySet,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    party_dir, state_dir = _kh_dirs(deployment)
    state_dir.mkdir(exist_ok=True)
    key_file = party_dir / "storage.key"
    key_file.write_bytes(os.urandom(32))  # as an older version left it
    plain = keys32.shares[0].to_bytes()
    (state_dir / "share.enc").write_bytes(
        encrypt_at_rest(plain, key_file.read_bytes(), is_passphrase=False)
    )
    monkeypatch.setenv(KEYHOLDER_PASSPHRASE_ENV, "a new passphrase")
    assert main(["keyholder", str(deployment), "--index", "1"]) == 2
    err = capsys.readouterr().err
    assert "storage.key" in err and "--reseal-share" in err, err
    assert not started

    assert main(["keyholder", str(deployment), "--index", "1", "--reseal-share"]) == 0
    assert not key_file.exists()
    assert not started  # re-sealing does not start the agent
    state = KeyHolderState(party_dir, state_dir, passphrase=b"a new passphrase")
    loaded = state.load_share(keys32.shares[0].params)
    assert loaded is not None and loaded.to_bytes() == plain
    assert not _attacker_opens(party_dir)


def test_an_unused_storage_key_file_is_warned_about(
    deployment: Path, caplog: pytest.LogCaptureFixture
) -> None:
    party_dir, state_dir = _kh_dirs(deployment)
    (party_dir / "storage.key").write_bytes(os.urandom(32))
    with caplog.at_level(logging.WARNING, logger="secagg.keyholder"):
        KeyHolderState(party_dir, state_dir, passphrase=b"p")
    assert "storage.key is not used" in caplog.text
