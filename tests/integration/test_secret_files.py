"""Acceptance 5: a key holder SIGKILLed in mid-decryption leaves no key material in files.

Real processes (server, three key holders with t = 2); the test uploads every client's
contribution itself, so the round closes when it decides. From the last upload on, it
watches key holder 1's open file descriptors in a tight loop and SIGKILLs it at the
first moment it holds a SEAL hand-off open: an anonymous memory file
(``memfd:secagg-seal``) or a named file under ``/dev/shm``. The first hand-off of a
decryption carries ``lambda_j^Q * S_j``. (Should the loop miss every hand-off, the kill
comes once the partial is sent, while the other partials are still pending.)

Then every readable regular file under ``/dev/shm`` and ``/tmp`` written since the test
began is searched for the share: windows of ``S_1``'s residues and of ``lambda_1^Q * S_1``
for every quorum ``Q`` that can occur, as little-endian u64 rows (the layout in which we
hand SEAL an NTT-form plaintext), and windows of the serialized share's payload. Before
the change, those objects went through files in a scratch directory under ``/dev/shm``,
which a SIGKILL inside the hand-off leaves behind.
"""

from __future__ import annotations

import itertools
import os
import stat
import time
from pathlib import Path

import numpy as np

from secagg._internal.modarith import mul_mod
from secagg._internal.shamir import lagrange_at_zero
from secagg.keys import KeyShare
from secagg.proto import core_pb2
from secagg.protocol.sealing import decrypt_at_rest

from ._harness import Deployment, Harness, wait_until
from ._processes import KEYHOLDER_PASSPHRASE

ROOTS = ("/dev/shm", "/tmp")
CLIENTS = {"c1": 10, "c2": 25, "c3": 7, "c4": 58}  # name: weight
WINDOW = 32  # bytes: four 64-bit residues; a chance match is impossible


def _windows(data: bytes, count: int = 4) -> list[bytes]:
    step = max(1, (len(data) - WINDOW) // count)
    return [data[i : i + WINDOW] for i in range(0, len(data) - WINDOW + 1, step)][:count]


def _share_needles(dep: Deployment, index: int) -> dict[str, bytes]:
    """Named byte windows of key holder ``index``'s share in every form a file could hold."""
    sealed = (dep.layout.state_dir(f"kh{index}", "keyholder") / "share.enc").read_bytes()
    plain = decrypt_at_rest(sealed, KEYHOLDER_PASSPHRASE.encode(), is_passphrase=True)
    share = KeyShare.from_bytes(plain, dep.roster.params)
    primes = dep.roster.params.data_primes
    forms = {"S_j": share.residues}
    others = [k for k in range(1, share.keyholders + 1) if k != index]
    for size in range(share.threshold, share.keyholders + 1):
        for rest in itertools.combinations(others, size - 1):
            quorum = tuple(sorted((index, *rest)))
            scaled = np.stack(
                [
                    mul_mod(share.residues[j], lagrange_at_zero(quorum, q)[index], q)
                    for j, q in enumerate(primes)
                ]
            )
            forms[f"lambda{quorum} * S_j"] = scaled
    needles = {}
    for name, residues in forms.items():
        for j, row in enumerate(residues):
            for n, window in enumerate(_windows(row.astype("<u8").tobytes())):
                needles[f"{name} prime {j} window {n}"] = window
    message = core_pb2.KeyShare()
    message.ParseFromString(plain)
    for n, window in enumerate(_windows(bytes(message.payload), 8)):
        needles[f"share payload window {n}"] = window
    needles["share passphrase"] = KEYHOLDER_PASSPHRASE.encode()
    return needles


def _files_since(since: float) -> list[Path]:
    """Readable regular files under /dev/shm and /tmp modified at or after ``since``."""
    found = []
    for root in ROOTS:
        for dirpath, _, names in os.walk(root, onerror=lambda _: None):
            for name in names:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_mtime >= since:
                    found.append(Path(path))
    return found


def _scan(paths: list[Path], needles: dict[str, bytes]) -> list[str]:
    hits = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        hits += [f"{what} in {path}" for what, needle in needles.items() if needle in data]
    return hits


def _hand_off_open(pid: int) -> str | None:
    """A SEAL hand-off the process holds open right now (memfd or a /dev/shm file)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("/memfd:secagg", "/dev/shm/")):
            return target
    return None


def _kill_in_mid_decryption(dep: Deployment, index: int, timeout: float) -> str:
    """SIGKILL key holder ``index`` inside its first SEAL hand-off (or once its partial is
    sent); returns what it held open when killed."""
    proc = dep.procs[f"kh{index}"]
    give_up = time.monotonic() + timeout
    caught = None
    while caught is None and time.monotonic() < give_up:
        caught = _hand_off_open(proc.pid)
        if caught is None and "partial decryption for round 1 sent" in proc.output():
            caught = "nothing (killed after its partial was sent)"
    if caught is None:
        raise AssertionError(f"key holder {index} never decrypted\n{dep.log_tail()}")
    dep.kill(f"kh{index}")
    return caught


def test_sigkill_in_mid_decryption_leaves_no_key_material(harness: Harness) -> None:
    began = time.time() - 1.0
    dep = harness.create(rounds=1, model_length=2_000, round_timeout=300)
    info = harness.start_deployment(dep)
    key = dep.public_key()
    rng = np.random.default_rng(5)
    uploads = {
        name: dep.build_upload(name, info, rng.uniform(-1, 1, 2_000), weight=weight, key=key)
        for name, weight in CLIENTS.items()
    }
    *first, last = uploads
    for name in first:
        dep.upload(name, *uploads[name])
    needles = _share_needles(dep, 1)
    dep.upload(last, *uploads[last])  # the round closes: lock, then decrypt
    held = _kill_in_mid_decryption(dep, 1, timeout=60)
    print(f"key holder 1 killed holding: {held}")
    wait_until(lambda: not dep.procs["kh1"].alive(), timeout=10, what="kh1 to die")

    files = _files_since(began)
    # the search is not vacuous: it covers the key holder's own directory and finds a
    # share form planted in a file under each root
    assert any(str(dep.directory) in str(p) for p in files)
    for root in ROOTS:
        planted = Path(root) / f"secagg-test-planted-{os.getpid()}"
        planted.write_bytes(b"x" * 100 + next(iter(needles.values())) + b"y" * 100)
        try:
            assert _scan(_files_since(began), needles), f"scan misses files in {root}"
        finally:
            planted.unlink()
    leaks = _scan(files, needles)
    assert not leaks, f"key material in files after SIGKILL (held: {held}): {leaks[:10]}"
