"""No named file ever holds secret material on its way into or out of SEAL.

TenSEAL's ``sealapi`` loads and saves by path only. These tests wrap every ``load`` and
``save`` of the sealapi classes the backend uses, run a partial decryption, a DKG
participant's setup, an encryption and a combination in this process, and check each path
SEAL was given: it must be ``/proc/self/fd/N`` of an anonymous memory file (``memfd:``),
never a name in a file system. Before the change, ``lambda_j * S_j`` and the DKG secrets
went through files in a scratch directory under ``/dev/shm``.
"""

from __future__ import annotations

import builtins
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tenseal.sealapi as seal

import secagg
from secagg._internal import seal_handoff
from secagg._internal.seal_backend import SealBackend
from secagg.errors import SecretMemoryUnavailable

_SEAL_CLASSES = (seal.Ciphertext, seal.Plaintext, seal.PublicKey, seal.SecretKey, seal.Modulus)
_WATCHED_DIRS = tuple(
    os.path.realpath(d) for d in ("/dev/shm", tempfile.gettempdir()) if os.path.isdir(d)
)


class HandOffs:
    """What SEAL was handed (path, and what the path named) and what Python opened."""

    def __init__(self) -> None:
        self.seal_paths: list[tuple[str, str]] = []  # (path, readlink or realpath)
        self.opened: list[str] = []  # files Python opened under /dev/shm or the temp dir

    def seal_call(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(obj: object, *args: Any) -> Any:
            path = str(args[-1])
            target = os.readlink(path) if path.startswith("/proc/self/fd/") else path
            self.seal_paths.append((path, os.path.realpath(target) if "/" in target else target))
            return method(obj, *args)

        return wrapper

    def named_files(self) -> list[tuple[str, str]]:
        return [(p, t) for p, t in self.seal_paths if not t.startswith("/memfd:")]


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> Iterator[HandOffs]:
    record = HandOffs()
    for cls in _SEAL_CLASSES:
        for name in ("load", "save"):
            if hasattr(cls, name):
                monkeypatch.setattr(cls, name, record.seal_call(getattr(cls, name)))
    real_open, real_os_open = builtins.open, os.open

    def watch(path: Any) -> None:
        if isinstance(path, (str, os.PathLike)):
            resolved = os.path.realpath(os.fspath(path))
            if resolved.startswith(_WATCHED_DIRS):
                record.opened.append(resolved)

    def open_(file: Any, *args: Any, **kwargs: Any) -> Any:
        watch(file)
        return real_open(file, *args, **kwargs)

    def os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        watch(path)
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    fds_before = set(os.listdir("/proc/self/fd"))
    yield record
    monkeypatch.undo()
    leaked = [
        os.readlink(f"/proc/self/fd/{fd}")
        for fd in set(os.listdir("/proc/self/fd")) - fds_before
        if os.path.exists(f"/proc/self/fd/{fd}")
    ]
    assert not [t for t in leaked if t.startswith("/memfd:secagg")], leaked


def _files_backend(params: secagg.Parameters) -> SealBackend:
    """A backend without the direct-memory shortcut: every object crosses through SEAL."""
    return SealBackend(params, allow_direct_memory=False)


@pytest.mark.parametrize("direct", [True, False], ids=["direct-memory", "files-only"])
def test_partial_decryption_and_dkg_hand_no_named_file_to_seal(
    params: secagg.Parameters,
    keys32: secagg.KeySet,
    hand_offs: HandOffs,
    monkeypatch: pytest.MonkeyPatch,
    direct: bool,
) -> None:
    if not direct:
        files = _files_backend(params)
        for module in ("secagg.threshold", "secagg.dkg", "secagg.ciphertext", "secagg.keys"):
            monkeypatch.setattr(f"{module}.backend_for", lambda _p: files, raising=False)
        monkeypatch.setattr("secagg._internal.seal_backend.backend_for", lambda _p: files)
    vector = np.linspace(-1.0, 1.0, 32)
    agg = secagg.aggregate([secagg.encrypt(keys32.public_key, vector)], weights=[1])
    partials = [secagg.partial_decrypt(keys32.shares[i - 1], agg, quorum=(1, 2)) for i in (1, 2)]
    secagg.DkgParticipant(params, index=1, keyholders=3, threshold=2)
    result = secagg.combine(agg, partials, mean=True)

    np.testing.assert_allclose(result, vector, atol=params.precision * 4)
    assert hand_offs.seal_paths, "SEAL was handed nothing: the wrappers are not in the path"
    assert not hand_offs.named_files(), f"SEAL read or wrote named files: {hand_offs.named_files()}"
    assert not hand_offs.opened, f"files opened under /dev/shm or the temp dir: {hand_offs.opened}"
    assert seal_handoff._scratch is None  # no scratch directory was ever made


def test_the_secret_hand_offs_are_the_ones_seen(
    params: secagg.Parameters, keys32: secagg.KeySet, hand_offs: HandOffs
) -> None:
    """Non-vacuity: with the direct shortcut on, lambda_j * S_j and the DKG's NTT still cross."""
    agg = secagg.aggregate([secagg.encrypt(keys32.public_key, np.zeros(4))], weights=[1])
    hand_offs.seal_paths.clear()
    secagg.partial_decrypt(keys32.shares[0], agg, quorum=(1, 2))
    assert len(hand_offs.seal_paths) >= 2  # the share factor and the c1 pair
    hand_offs.seal_paths.clear()
    secagg.DkgParticipant(params, index=2, keyholders=3, threshold=2)
    assert hand_offs.seal_paths  # the key-level NTT of s_i, e_i
    assert all(t.startswith("/memfd:") for _, t in hand_offs.seal_paths)


# ---------------------------------------------------------------- without anonymous memory


@pytest.fixture
def no_memfd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Pretend the platform has no memfd; the public scratch directory goes to tmp_path."""
    monkeypatch.setattr(seal_handoff, "memory_files_available", lambda: False)
    monkeypatch.setattr(seal_handoff, "_scratch", None)
    monkeypatch.setattr(seal_handoff, "_scratch_base", lambda: str(tmp_path))
    return tmp_path


def test_without_memfd_secret_material_is_refused_not_written(
    params: secagg.Parameters, keys32: secagg.KeySet, no_memfd: Path
) -> None:
    backend = SealBackend(params)
    assert backend.direct_memory  # the self-test used only public hand-offs
    share = keys32.shares[0]
    with pytest.raises(SecretMemoryUnavailable, match="memfd_create"):
        backend.to_ntt_plaintext(share.residues)
    with pytest.raises(SecretMemoryUnavailable):
        backend.ntt_key_level(np.zeros((2, len(params.coeff_modulus), 8), dtype=np.uint64))
    with pytest.raises(SecretMemoryUnavailable):
        backend.decode_transparent(np.zeros_like(share.residues))
    # a public object still crosses, through a private scratch file removed at once
    polys = np.zeros((2, len(params.data_primes), params.poly_modulus_degree), np.uint64)
    backend.to_ciphertext(polys)
    scratch = seal_handoff._scratch
    assert scratch is not None and Path(scratch.path).parent == no_memfd
    assert list(Path(scratch.path).iterdir()) == []
    assert Path(scratch.path).stat().st_mode & 0o777 == 0o700
