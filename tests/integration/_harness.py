"""Process management for the integration tests (not a test module).

A :class:`Deployment` is one ``secagg init`` directory plus the real processes started on
it (``python -m secagg.cli serve | keyholder | client``), each with its stdout and stderr
captured to files so a failing test can print them. Every wait is bounded in time.

The helpers that talk to the server from the test process use the library and the
generated gRPC stubs over the same mTLS channels the parties use; they build uploads
exactly like ``clients/client.py`` so that a test can change one field at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc
import numpy as np

from clients.connection import verify_release
from secagg import constants as C
from secagg.ciphertext import encrypt
from secagg.protocol.roster import Roster, load_roster
from secagg.keys import JointPublicKey
from secagg.protocol.model_blob import decode_model
from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.protocol.signing import sign, upload_digest
from secagg.rpc.transport import chunks, identity

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m secagg.cli ARGS`` to completion (bounded by ``timeout``)."""
    return subprocess.run(
        [sys.executable, "-m", "secagg.cli", *map(str, args)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    give_up = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > give_up:
            extra = f"\n{diagnostics()}" if diagnostics else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)
        last = predicate()
    return last


@dataclass
class Proc:
    """One started process and its captured output."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """stdout + stderr captured so far."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def close_files(self) -> None:
        for fh in self.files:
            with contextlib.suppress(OSError):
                fh.close()
        self.files.clear()


class Deployment:
    """A deployment directory, its processes and the test's own view of the server."""

    def __init__(self, directory: Path, logs: Path) -> None:
        self.directory = directory
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, Proc] = {}
        self.history: list[Proc] = []  # every process ever started, for the logs
        self._channels: dict[str, grpc.Channel] = {}

    # ------------------------------------------------------------ setup
    @classmethod
    def create(
        cls,
        root: Path,
        *,
        clients: int = 4,
        keyholders: int = 3,
        threshold: int = 2,
        rounds: int = 3,
        model_length: int = 20_000,
        round_timeout: float | None = 300.0,
        min_contributors: int | None = None,
        max_weight_share: float | None = None,
        name: str = "dep",
    ) -> Deployment:
        """``secagg init`` a new deployment on a free loopback port."""
        directory = root / name
        args: list[str | Path] = [
            "init",
            directory,
            "--clients", str(clients),
            "--keyholders", str(keyholders),
            "--threshold", str(threshold),
            "--rounds", str(rounds),
            "--model-length", str(model_length),
            "--address", f"127.0.0.1:{free_port()}",
        ]  # fmt: skip
        if round_timeout is not None:
            args += ["--round-timeout", str(round_timeout)]
        if min_contributors is not None:
            args += ["--min-contributors", str(min_contributors)]
        if max_weight_share is not None:
            args += ["--max-weight-share", str(max_weight_share)]
        result = cli(*args)
        assert result.returncode == 0, f"secagg init failed:\n{result.stdout}\n{result.stderr}"
        return cls(directory, root / f"{name}-logs")

    @property
    def roster(self) -> Roster:
        return load_roster(self.directory)

    @property
    def address(self) -> str:
        return self.roster.server_address

    @property
    def data(self) -> Path:
        return self.directory / "server" / "data"

    # ------------------------------------------------------------ processes
    def start(self, name: str, *args: str | Path) -> Proc:
        """Start ``python -m secagg.cli ARGS`` as party ``name``."""
        if name in self.procs and self.procs[name].alive():
            raise AssertionError(f"{name} is already running")
        n = sum(1 for p in self.history if p.name == name)
        out_path = self.logs / f"{name}.{n}.stdout"
        err_path = self.logs / f"{name}.{n}.stderr"
        out, err = open(out_path, "wb"), open(err_path, "wb")  # noqa: SIM115 (closed in stop)
        popen = subprocess.Popen(
            [sys.executable, "-m", "secagg.cli", *map(str, args)],
            cwd=REPO,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        proc = Proc(name, popen, out_path, err_path, [out, err])
        self.procs[name] = proc
        self.history.append(proc)
        return proc

    def serve(self) -> Proc:
        proc = self.start("server", "serve", self.directory)
        self.wait_serving(timeout=30)
        return proc

    def keyholder(self, index: int) -> Proc:
        return self.start(f"kh{index}", "keyholder", self.directory, "--index", str(index))

    def client(self, name: str, *, seed: int, weight: int) -> Proc:
        return self.start(
            name,
            "client",
            self.directory,
            "--name",
            name,
            "--seed",
            str(seed),
            "--weight",
            str(weight),
        )

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` to one process and wait for it to exit; returns its exit code."""
        proc = self.procs[name]
        proc.signal(sig)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.signal(signal.SIGKILL)
            code = proc.wait(10)
        proc.close_files()
        return code

    def kill(self, name: str) -> None:
        """SIGKILL one process (no chance to clean up)."""
        self.stop(name, signal.SIGKILL)

    def wait_exit(self, name: str, timeout: float) -> int:
        proc = self.procs[name]
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{name} did not exit within {timeout:.0f}s\n{self.log_tail()}"
            ) from None

    def stop_all(self) -> None:
        """Terminate every process still running (SIGTERM, then SIGKILL), the server last:
        agents whose server is gone retry for minutes before they look at SIGTERM."""
        agents = [p for p in self.procs.values() if p.name != "server"]
        server = [p for p in self.procs.values() if p.name == "server"]
        for group in (agents, server):
            # without a server, agents would sit out their retries: don't wait long for them
            grace = 10.0 if any(p.alive() for p in server) or group is server else 2.0
            for proc in group:
                proc.signal(signal.SIGCONT)  # in case a test left it stopped
                proc.signal(signal.SIGTERM)
            give_up = time.monotonic() + grace
            for proc in group:
                try:
                    proc.wait(max(0.1, give_up - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.signal(signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(10)
                proc.close_files()
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def assert_running(self, *names: str) -> None:
        for name in names:
            proc = self.procs[name]
            assert proc.alive(), (
                f"{name} exited with {proc.popen.returncode}:\n{proc.output()[-4000:]}"
            )

    def log_tail(self, chars: int = 3000) -> str:
        out = []
        for proc in self.history:
            text = proc.output()
            if text:
                out.append(f"----- {proc.name} (pid {proc.pid}) -----\n{text[-chars:]}")
        return "\n".join(out)

    # ------------------------------------------------------------ the test's gRPC view
    def stub(self, party: str = "admin") -> pb_grpc.AggregationStub:
        """A stub over a mTLS channel presenting ``party``'s certificate."""
        if party not in self._channels:
            self._channels[party] = identity(self.directory, party).channel()
        return pb_grpc.AggregationStub(self._channels[party])  # type: ignore[no-untyped-call]

    def reset_channel(self, party: str = "admin") -> None:
        ch = self._channels.pop(party, None)
        if ch is not None:
            ch.close()

    def round_info(self) -> pb.RoundInfo | None:
        """GetRound as the operator, or None if the server does not answer."""
        try:
            return self.stub().GetRound(pb.Empty(), timeout=3)
        except grpc.RpcError:
            self.reset_channel()  # reconnect at once next time (no channel backoff)
            return None

    def wait_serving(self, timeout: float) -> pb.RoundInfo:
        def ready() -> pb.RoundInfo | None:
            self.assert_running("server")
            return self.round_info()

        return wait_until(ready, timeout=timeout, what="the server to answer GetRound",
                          diagnostics=self.log_tail)  # fmt: skip

    def wait_round(
        self,
        predicate: Callable[[pb.RoundInfo], bool],
        *,
        timeout: float,
        what: str,
        alive: Sequence[str] = ("server",),
    ) -> pb.RoundInfo:
        """Poll GetRound until ``predicate(info)`` (the named processes must stay up)."""

        def check() -> pb.RoundInfo | None:
            self.assert_running(*alive)
            info = self.round_info()
            return info if info is not None and predicate(info) else None

        def diag() -> str:
            return f"last round info: {self.round_info()}\n{self.log_tail()}"

        return wait_until(check, timeout=timeout, what=what, diagnostics=diag)

    def wait_collecting(self, rnd: int, *, uploads: int = 0, timeout: float = 60) -> pb.RoundInfo:
        return self.wait_round(
            lambda i: i.round == rnd and i.state == pb.COLLECTING and i.accepted_uploads >= uploads,
            timeout=timeout,
            what=f"round {rnd} COLLECTING with >= {uploads} uploads",
        )

    def get_release(self, rnd: int) -> pb.Release | None:
        """GetRelease as the operator (None: NOT_FOUND)."""
        try:
            return self.stub().GetRelease(pb.ReleaseQuery(round=rnd), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def wait_release(
        self, rnd: int, *, timeout: float, alive: Sequence[str] = ("server",)
    ) -> pb.Release:
        def check() -> pb.Release | None:
            self.assert_running(*alive)
            try:
                return self.get_release(rnd)
            except grpc.RpcError:
                self.reset_channel()
                return None

        def diag() -> str:
            return f"last round info: {self.round_info()}\n{self.log_tail()}"

        return wait_until(check, timeout=timeout, what=f"the release of round {rnd}",
                          diagnostics=diag)  # fmt: skip

    def public_key(self) -> JointPublicKey:
        bundle = self.stub().GetPublicKey(pb.Empty(), timeout=10)
        return JointPublicKey.from_bytes(bundle.public_key, self.roster.params)

    # ------------------------------------------------------------ CLI operator tools
    def admin_status(self) -> dict[str, Any]:
        result = cli("admin", "status", self.directory)
        assert result.returncode == 0, f"admin status failed:\n{result.stdout}\n{result.stderr}"
        return dict(json.loads(result.stdout))

    def admin_request_decryption(self, rnd: int, clients: Sequence[str]) -> dict[str, Any]:
        result = cli(
            "admin", "request-decryption", self.directory, "--round", str(rnd),
            "--clients", *clients, timeout=90,
        )  # fmt: skip
        assert result.returncode == 0, (
            f"admin request-decryption failed:\n{result.stdout}\n{result.stderr}"
        )
        return dict(json.loads(result.stdout))

    # ------------------------------------------------------------ state on disk
    def db_rows(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        """Read the server's SQLite database (only while the server runs: WAL readers)."""
        conn = sqlite3.connect(f"file:{self.data / 'state.db'}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(sql, args).fetchall())
        finally:
            conn.close()

    def db_release(self, rnd: int) -> bytes | None:
        rows = self.db_rows("SELECT release FROM rounds WHERE round=?", (rnd,))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

    def model_of(self, release: pb.Release) -> np.ndarray:
        """The released model: the blob named by ``release.model_hash``, checked and parsed."""
        blob = (self.data / "blobs" / release.model_hash.hex()).read_bytes()
        assert hashlib.sha256(blob).digest() == release.model_hash
        rnd, vector = decode_model(blob, length=self.roster.policy.model_length)
        assert rnd == release.round + 1, "the model released after round r is round r+1's input"
        return vector

    def recorded_update(self, client: str, rnd: int) -> np.ndarray:
        """The plaintext vector a synthetic client trained in round ``rnd``."""
        return np.load(self.directory / "clients" / client / "updates" / f"round-{rnd}.npy")

    def verify_release(self, release: pb.Release) -> None:
        """Check the server's signature with the roster's server key (raises)."""
        verify_release(release, self.roster)

    def fedavg_error(
        self, release: pb.Release, clients: Mapping[str, tuple[int, int]], rnd: int
    ) -> float:
        """Verify ``release``; return its model's max abs difference from the weighted mean
        of the recorded round-``rnd`` updates of ``clients`` (name -> (seed, weight))."""
        self.verify_release(release)
        updates = [self.recorded_update(name, rnd) for name in clients]
        expected = weighted_mean(updates, [weight for _, weight in clients.values()])
        return max_error(self.model_of(release), expected)

    def run_to_finish(
        self, clients: Mapping[str, tuple[int, int]], rounds: int, *, finish_timeout: float
    ) -> dict[int, pb.Release]:
        """Start synthetic ``clients`` (name -> (seed, weight)), wait until they exit and the
        deployment is FINISHED after ``rounds`` rounds; return each round's release."""
        for name, (seed, weight) in clients.items():
            self.client(name, seed=seed, weight=weight)
        for name in clients:
            assert self.wait_exit(name, timeout=120) == 0, self.log_tail()
        final = self.wait_round(
            lambda i: i.state == pb.FINISHED, timeout=finish_timeout, what="FINISHED"
        )
        assert final.round == rounds + 1
        releases = {}
        for r in range(1, rounds + 1):
            rel = self.get_release(r)
            assert rel is not None, f"round {r} has no release"
            releases[r] = rel
        return releases

    # ------------------------------------------------------------ uploads from the test
    def build_upload(
        self,
        client: str,
        info: pb.RoundInfo,
        vector: np.ndarray | None = None,
        *,
        weight: int = 10,
        blob: bytes | None = None,
        key: JointPublicKey | None = None,
        **overrides: Any,
    ) -> tuple[pb.UploadHeader, bytes]:
        """A signed upload as ``clients/client.py`` builds it; ``overrides`` change header
        fields *before* signing (so the signature stays valid over the changed fields)."""
        if blob is None:
            assert vector is not None
            blob = encrypt(key or self.public_key(), vector).to_bytes()
        header = pb.UploadHeader(
            round=info.round,
            client_id=client,
            nonce=os.urandom(C.UPLOAD_NONCE_BYTES),
            global_model_hash=info.global_model_hash,
            weight=weight,
            blob=pb.BlobHeader(total_size=len(blob), sha256=hashlib.sha256(blob).digest()),
        )
        for name, value in overrides.items():
            if name in ("total_size", "sha256"):
                setattr(header.blob, name, value)
            else:
                setattr(header, name, value)
        signer = identity(self.directory, client).signing_key()
        header.signature = sign(
            signer,
            upload_digest(
                deployment_id=self.roster.deployment_id,
                round_number=header.round,
                client_id=header.client_id,
                nonce=header.nonce,
                global_model_hash=header.global_model_hash,
                ciphertext_hash=header.blob.sha256,
                weight=header.weight,
            ),
        )
        return header, blob

    def upload(
        self, party: str, header: pb.UploadHeader, blob: bytes, *, stub: Any = None
    ) -> pb.UploadReceipt:
        """Stream one upload (header, then 1 MiB chunks) over ``party``'s channel."""
        stub = stub or self.stub(party)
        return stub.Upload(upload_requests(header, blob), timeout=120)


def upload_requests(header: pb.UploadHeader, blob: bytes) -> Iterator[pb.UploadRequest]:
    yield pb.UploadRequest(header=header)
    for c in chunks(blob):
        yield pb.UploadRequest(chunk=c)


def weighted_mean(vectors: Sequence[np.ndarray], weights: Sequence[int]) -> np.ndarray:
    return np.average(np.stack(vectors), axis=0, weights=np.asarray(weights, dtype=np.float64))


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


class Harness:
    """Every deployment a test (or a module fixture) created; torn down together."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.deployments: list[Deployment] = []

    def create(self, **kwargs: Any) -> Deployment:
        name = kwargs.pop("name", f"dep{len(self.deployments) + 1}")
        dep = Deployment.create(self.root, name=name, **kwargs)
        self.deployments.append(dep)
        return dep

    def stop_all(self) -> None:
        for dep in self.deployments:
            dep.stop_all()

    def logs(self, chars: int = 6000) -> str:
        return "\n".join(dep.log_tail(chars) for dep in self.deployments)

    def start_deployment(
        self, dep: Deployment, *, keyholders: Sequence[int] | None = None, timeout: float = 90
    ) -> pb.RoundInfo:
        """Server and key holders up, ceremony done, round 1 collecting."""
        dep.serve()
        for i in keyholders or range(1, dep.roster.policy.keyholders + 1):
            dep.keyholder(i)
        return dep.wait_collecting(1, timeout=timeout)
