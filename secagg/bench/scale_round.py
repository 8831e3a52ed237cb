"""``secagg bench --scale``: one round of a fresh deployment, driven by its command line.

:func:`init_deployment` runs ``secagg init`` (``--rounds 1``, the model size's derived
timeouts and caps); :func:`run_round` starts ``secagg serve`` and the key holders, waits
for the key ceremony, starts the synthetic clients (one after another with ``stagger``),
waits for round 1's release and the clients' exit, downloads the release and returns its
largest difference from the plaintext weighted mean. Progress is watched the way the
operator watches it (``GetRound``, ``GetRelease`` over the ``admin`` identity), never
through the server's internals.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc

from secagg.bench.measure import log
from secagg.bench.scale_model import fetch_released_model, initial_model, max_error_from_fedavg
from secagg.bench.scale_processes import Processes, ScaleRunFailed
from secagg.bench.scale_report import ROUND
from secagg.params import Parameters
from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.rpc.transport import identity

#: Seconds one size may take: a base plus this many per million parameters.
BUDGET_BASE_SECONDS = 900.0
BUDGET_SECONDS_PER_MILLION = 60.0


@dataclass(frozen=True)
class ScaleConfig:
    """What one run deploys."""

    clients: int
    keyholders: int
    threshold: int
    stagger: bool
    seed: int

    def client_plan(self) -> list[tuple[str, int, int]]:
        """``(name, seed, weight)`` of every client: c1..cC, distinct seeds, weights 10 i
        (capped at ``secagg init``'s default largest weight: the weight budget // clients)."""
        cap = Parameters.default().max_total_weight // self.clients
        return [(f"c{i}", self.seed + i, min(10 * i, cap)) for i in range(1, self.clients + 1)]


class Operator:
    """The ``admin`` party's view of the server (GetRound, GetRelease), reconnecting."""

    def __init__(self, deployment: Path) -> None:
        self._me = identity(deployment, "admin")
        self._channel: grpc.Channel | None = None

    def _stub(self) -> pb_grpc.AggregationStub:
        if self._channel is None:
            self._channel = self._me.channel()
        return pb_grpc.AggregationStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def round_info(self) -> pb.RoundInfo | None:
        try:
            info: pb.RoundInfo = self._stub().GetRound(pb.Empty(), timeout=10)
            return info
        except grpc.RpcError:
            self.close()  # reconnect at once next time (no channel backoff)
            return None

    def past_ceremony_with(self, uploads: int) -> bool:
        """Whether round 1 has its joint key and at least ``uploads`` accepted uploads."""
        info = self.round_info()
        if info is None:
            return False
        if info.round > ROUND or info.state == pb.FINISHED:
            return True
        return (
            info.round == ROUND and info.state != pb.CEREMONY and info.accepted_uploads >= uploads
        )

    def released(self) -> bool:
        try:
            self._stub().GetRelease(pb.ReleaseQuery(round=ROUND), timeout=10)
            return True
        except grpc.RpcError:
            self.close()
            return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_deployment(deployment: Path, cfg: ScaleConfig, size: int, timeout: float) -> None:
    args = [
        "init", deployment,
        "--clients", cfg.clients, "--keyholders", cfg.keyholders, "--threshold", cfg.threshold,
        "--rounds", 1, "--model-length", size, "--address", f"127.0.0.1:{free_port()}",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            [sys.executable, "-m", "secagg.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ScaleRunFailed(f"secagg init took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        raise ScaleRunFailed(f"secagg init failed:\n{done.stdout}\n{done.stderr}")


def run_round(procs: Processes, deployment: Path, cfg: ScaleConfig, size: int, into: Path) -> float:
    """Run round 1 to its release; return the released model's max abs error."""
    budget = BUDGET_BASE_SECONDS + BUDGET_SECONDS_PER_MILLION * size / 1e6
    give_up = time.monotonic() + budget

    def left() -> float:
        return max(1.0, give_up - time.monotonic())

    procs.start("server", "serve", [deployment])
    operator = Operator(deployment)
    try:
        procs.wait_for(
            "the server", lambda: operator.round_info() is not None, timeout=120, alive=["server"]
        )
        keyholders = [f"kh{i}" for i in range(1, cfg.keyholders + 1)]
        for i, name in enumerate(keyholders, start=1):
            procs.start(name, "keyholder", [deployment, "--index", str(i)])
        services = ["server", *keyholders]
        log("key ceremony")
        procs.wait_for(
            "the key ceremony",
            partial(operator.past_ceremony_with, 0),
            timeout=min(300.0, left()),
            alive=services,
        )
        clients = [name for name, _, _ in cfg.client_plan()]
        for accepted, (name, seed, weight) in enumerate(cfg.client_plan(), start=1):
            log(f"client {name} (seed {seed}, weight {weight})")
            procs.start(
                name,
                "client",
                [deployment, "--name", name, "--trainer", "synthetic",
                 "--seed", str(seed), "--weight", str(weight)],
            )  # fmt: skip
            if cfg.stagger:
                procs.wait_for(
                    f"{name}'s upload",
                    partial(operator.past_ceremony_with, accepted),
                    timeout=left(),
                    alive=services,
                    may_exit=clients,
                )
        log("waiting for the release")
        procs.wait_for(
            "round 1's release", operator.released, timeout=left(), alive=services, may_exit=clients
        )
        for name in clients:
            if not procs.parties[name].wait_exit(left()) or procs.parties[name].exit_code:
                raise ScaleRunFailed(f"{name} did not finish cleanly")
    finally:
        operator.close()
    log("downloading the release; recomputing the plaintext weighted mean")
    released = fetch_released_model(deployment, ROUND, into)
    return max_error_from_fedavg(
        released, initial_model(deployment), [(s, w) for _, s, w in cfg.client_plan()], ROUND
    )
