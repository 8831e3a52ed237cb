"""The integration tests' view of a deployment (not a test module).

A :class:`Deployment` is one ``secagg init`` directory plus the real processes started on
it (``python -m secagg.cli serve | keyholder | client``; process management in
:mod:`._processes`), each with its stdout and stderr captured to files so a failing test
can print them. Every wait is bounded in time.

The helpers that talk to the server from the test process use the library and the
generated gRPC stubs over the same mTLS channels the parties use; uploads are built by
:mod:`._uploads` through the same statement types and the same chunk-by-chunk encryption
as ``clients/client.py``, so that a test can change one field at a time, or send chunks
of its choosing after a valid head. Paths come from
:class:`~secagg.protocol.layout.DeploymentLayout`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from clients.connection import verify_release
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import decode_model
from secagg.protocol.roster import Roster, load_roster
from secagg.rpc.transport import identity

from ._processes import REPO, Proc, ProcessGroup, _env, cli, free_port, wait_until
from ._uploads import Ciphertext, signed_upload, upload_requests

__all__ = [
    "REPO",
    "Ciphertext",
    "Deployment",
    "Harness",
    "Proc",
    "_env",
    "cli",
    "free_port",
    "max_error",
    "upload_requests",
    "wait_until",
    "weighted_mean",
]


class Deployment(ProcessGroup):
    """A deployment directory, its processes and the test's own view of the server."""

    def __init__(self, directory: Path, logs: Path) -> None:
        super().__init__(logs)
        self.directory = directory
        self.layout = DeploymentLayout(directory)
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
        address: str | None = None,
        init_args: Sequence[str] = (),
    ) -> Deployment:
        """``secagg init`` a new deployment (default: on a free loopback port);
        ``init_args`` are further ``secagg init`` options (e.g. ``--host``)."""
        directory = root / name
        args: list[str | Path] = [
            "init",
            directory,
            "--clients", str(clients),
            "--keyholders", str(keyholders),
            "--threshold", str(threshold),
            "--rounds", str(rounds),
            "--model-length", str(model_length),
            "--address", address or f"127.0.0.1:{free_port()}",
            *init_args,
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
        return self.layout.server_data

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

    def dp_client(self, name: str, *args: str) -> Proc:
        """A client with the DP trainer (its share of the digits federation); ``args`` are
        further ``secagg client`` options (e.g. ``--no-dp``)."""
        return self.start(name, "client", self.directory, "--name", name, "--trainer", "dp", *args)

    def stop_all(self) -> None:
        """Terminate every process (see :meth:`ProcessGroup.stop_all`), close the channels."""
        super().stop_all()
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

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
            info: pb.RoundInfo = self.stub().GetRound(pb.Empty(), timeout=3)
            return info
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
            release: pb.Release = self.stub().GetRelease(pb.ReleaseQuery(round=rnd), timeout=10)
            return release
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
        conn = sqlite3.connect(f"file:{self.layout.database}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(sql, args).fetchall())
        finally:
            conn.close()

    def db_release(self, rnd: int) -> bytes | None:
        rows = self.db_rows("SELECT release FROM rounds WHERE round=?", (rnd,))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

    def model_of(self, release: pb.Release) -> np.ndarray:
        """The released model: the blob named by ``release.model_hash``, checked and parsed."""
        blob = (self.layout.blobs / release.model_hash.hex()).read_bytes()
        assert hashlib.sha256(blob).digest() == release.model_hash
        rnd, vector = decode_model(blob, length=self.roster.policy.model_length)
        assert rnd == release.round + 1, "the model released after round r is round r+1's input"
        return vector

    def recorded_update(self, client: str, rnd: int) -> np.ndarray:
        """The plaintext vector a synthetic client trained in round ``rnd``."""
        updates = self.layout.party_dir(client, "client") / "updates"
        vector: np.ndarray = np.load(updates / f"round-{rnd}.npy")
        return vector

    def verify_release(self, release: pb.Release) -> None:
        """Check the server's signature with the roster's server key (raises)."""
        verify_release(release, self.roster)  # the clients' and key holders' own check

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
    def encrypt(
        self, vector: np.ndarray, *, key: JointPublicKey | None = None, integers: bool = False
    ) -> Ciphertext:
        """``vector`` encrypted chunk by chunk as a client does (default: the served key)."""
        return Ciphertext.encrypt(key or self.public_key(), vector, integers=integers)

    def build_upload(
        self,
        client: str,
        info: pb.RoundInfo,
        vector: np.ndarray | None = None,
        *,
        weight: int = 10,
        blob: Ciphertext | bytes | None = None,
        key: JointPublicKey | None = None,
        **overrides: Any,
    ) -> tuple[pb.UploadHeader, Ciphertext]:
        """A signed upload as ``clients/client.py`` builds it: the header (with the head)
        and the ciphertext whose chunks follow it.

        ``blob``: a :class:`Ciphertext` to sign again (fresh nonce), or raw bytes sent as
        the head with no chunks (:meth:`Ciphertext.raw`); default: ``vector`` encrypted.
        ``overrides`` change header fields *before* signing (so the signature stays valid
        over the changed fields; see :func:`._uploads.signed_upload`).
        """
        if blob is None:
            assert vector is not None
            ciphertext = self.encrypt(vector, key=key)
        else:
            ciphertext = Ciphertext.raw(blob) if isinstance(blob, bytes) else blob
        signer = identity(self.directory, client).signing_key()
        header = signed_upload(
            self.roster.deployment_id, signer, client, info, ciphertext, weight=weight, **overrides
        )
        return header, ciphertext

    def upload(
        self, party: str, header: pb.UploadHeader, chunks: Iterable[bytes], *, stub: Any = None
    ) -> pb.UploadReceipt:
        """Stream one upload over ``party``'s channel: ``header`` (with its head), then
        ``chunks`` one message each: a :class:`Ciphertext`'s, or any list the test chooses."""
        stub = stub or self.stub(party)
        receipt: pb.UploadReceipt = stub.Upload(upload_requests(header, chunks), timeout=120)
        return receipt


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
