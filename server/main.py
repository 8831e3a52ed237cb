"""``secagg serve``: run the aggregation server of a deployment.

With ``--metrics-port N`` it also serves Prometheus metrics at
``http://127.0.0.1:N/metrics`` (:mod:`server.metrics`; ``--metrics-host`` binds another
interface). Log lines go to stderr and to the state directory's ``server.log``, as text
or, with ``--log-format json``, as JSON objects (:mod:`secagg.logging_setup`).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from secagg import constants as C
from secagg.errors import ConfigError
from secagg.logging_setup import chosen_format, formatter
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.protocol.audit_log import AuditLog
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import decode_model
from secagg.rpc.transport import identity
from server.audit_trail import AuditTrail
from server.context import Context
from server.faults import Faults
from server.rounds import RoundManager
from server.service import AggregationService
from server.store import BlobStore, SqliteStore

log = logging.getLogger("secagg.server")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg serve``."""
    parser.add_argument("deployment", type=Path, help="deployment directory (secagg init)")
    parser.add_argument(
        "--address", help="listen address (default: the roster's, mapped by its [hosts])"
    )
    parser.add_argument("--data", type=Path, help="state directory (default DIR/server/data)")
    parser.add_argument(
        "--initial-model",
        type=Path,
        help="round 1's model (default: DIR/initial_model.bin); must match the roster's hash",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: not served)",
    )
    parser.add_argument(
        "--metrics-host",
        default=C.DEFAULT_METRICS_HOST,
        help=f"interface of the metrics endpoint (default {C.DEFAULT_METRICS_HOST}; "
        "plain HTTP, unauthenticated)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    me = identity(args.deployment, "server")
    layout = DeploymentLayout(args.deployment, args.data)
    layout.server_data.mkdir(parents=True, exist_ok=True)
    log_format = chosen_format(getattr(args, "log_format", None), os.environ)
    handler = logging.FileHandler(layout.server_log)  # stderr: set up by secagg.cli
    handler.setFormatter(
        formatter(log_format, "server", text="%(asctime)s %(levelname)s %(message)s")
    )
    logging.getLogger("secagg").addHandler(handler)
    model_file = args.initial_model or layout.initial_model
    _, initial = decode_model(model_file.read_bytes(), length=me.roster.policy.model_length)
    roster_digest = hashlib.sha256(layout.roster.read_bytes()).digest()
    signing_key = me.signing_key()
    faults = Faults.from_environment(os.environ)  # test-only; nothing armed when unset
    ctx = Context(
        store=SqliteStore(layout.database, deployment_id=me.roster.deployment_id),
        blobs=BlobStore(layout.blobs),
        roster=me.roster,
        audit=AuditTrail(AuditLog(layout.audit_log), me.roster, signing_key),
        signing_key=signing_key,
        faults=faults,
    )
    rounds = RoundManager(ctx, initial, roster_digest=roster_digest)
    rounds.inline_close = False  # the loop below closes rounds, never a caller's RPC
    rounds.fold_worker = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fold")
    rounds.recover()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=C.SERVER_WORKERS))
    pb_grpc.add_AggregationServicer_to_server(AggregationService(rounds), server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = me.roster.server_target(args.address)  # a host name via the roster's [hosts]
    port = server.add_secure_port(address, me.server_credentials())
    if port == 0:
        log.error("cannot listen on %s", address)
        return 1
    stop_metrics = _serve_metrics(rounds, args.metrics_host, args.metrics_port)
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("secagg.service.v1.Aggregation", health_pb2.HealthCheckResponse.SERVING)
    log.info("listening on %s (mTLS required)", address)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(C.POLL_SECONDS):
        try:
            rounds.tick()
        except Exception:  # keep serving; the next tick retries
            log.exception("tick failed")
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=2).wait()
    stop_metrics()
    rounds.fold_worker.shutdown(wait=True, cancel_futures=True)  # folds are caches: none lost
    return 0


def _serve_metrics(rounds: RoundManager, host: str, port: int | None) -> Callable[[], None]:
    """Start the metrics endpoint if asked (``port``); returns what stops it.

    Raises
    ------
    ConfigError
        The port cannot be bound.
    """
    if port is None:
        return lambda: None
    try:
        stop = rounds.metrics.serve(port, host)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    log.info("metrics at http://%s:%d/metrics", host, port)
    return stop
