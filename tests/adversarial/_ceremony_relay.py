"""A malicious key-ceremony relay: stores and returns every message, checks nothing.

The real key holders' :func:`~clients.keyholder.ceremony.run_ceremony` talks to it over
real mTLS (the deployment's server certificate) exactly as to the real server. Unlike the
real relay (:mod:`server.ceremony`) it enforces no phase order, no size, no signature
and no commitment: whatever the honest key holders refuse, they refuse on their own.
The test plays the colluding key holder by posting signed messages with :meth:`post`
and reads what everyone posted with :meth:`bodies` / :meth:`wait`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.protocol.statements import CeremonyStatement, Signed
from secagg.rpc.transport import identity, peer_name


class CeremonyRelayDouble(pb_grpc.AggregationServicer):
    """Stores every ceremony message by (kind, sender, recipient); serves them back."""

    def __init__(self, deployment_id: str) -> None:
        self.deployment_id = deployment_id
        self.messages: dict[tuple[int, int, int], pb.CeremonyMessage] = {}
        self.changed = threading.Condition()

    # ------------------------------------------------------------ driven by the test
    def post(
        self,
        signing_key: Ed25519PrivateKey,
        kind: int,
        sender: int,
        body: bytes,
        recipient: int = 0,
    ) -> None:
        """Store a message signed by ``signing_key`` (the colluding key holder's)."""
        statement = CeremonyStatement.of_body(
            self.deployment_id, kind=kind, sender=sender, recipient=recipient, body=body
        )
        signed = Signed.create(statement, signing_key)
        self._store(statement.to_proto(body, signed.signature))

    def bodies(self, kind: int, recipient: int | None = None) -> dict[int, bytes]:
        """Sender -> body of the stored messages of a kind (shares: to ``recipient``)."""
        with self.changed:
            return {
                s: m.body
                for (k, s, r), m in self.messages.items()
                if k == kind and (recipient is None or r == recipient)
            }

    def wait(
        self, kind: int, count: int, recipient: int | None = None, timeout: float = 60.0
    ) -> dict[int, bytes]:
        """The bodies of a kind once ``count`` are stored (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(found := self.bodies(kind, recipient)) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {count} messages of kind {kind}"
                self.changed.wait(left)
            return found

    def _store(self, msg: pb.CeremonyMessage) -> None:
        with self.changed:
            self.messages.setdefault((msg.kind, msg.sender, msg.recipient), msg)
            self.changed.notify_all()

    # ------------------------------------------------------------ served
    def PostCeremonyMessage(  # noqa: N802
        self, request: pb.CeremonyMessage, context: grpc.ServicerContext
    ) -> pb.Ack:
        self._store(request)
        return pb.Ack(status="stored")

    def GetCeremonyMessages(  # noqa: N802
        self, request: pb.CeremonyQuery, context: grpc.ServicerContext
    ) -> pb.CeremonyMessages:
        name = peer_name(context) or ""
        index = int(name[2:]) if name.startswith("kh") else 0
        with self.changed:
            found = [
                m
                for (k, _, r), m in sorted(self.messages.items())
                if k == request.kind and (k != pb.ENCRYPTED_SHARE or r == index)
            ]
        return pb.CeremonyMessages(messages=found)


@contextmanager
def serving(deployment: Path, relay: CeremonyRelayDouble) -> Iterator[str]:
    """Serve ``relay`` over mTLS with the deployment's server identity; yields the address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_AggregationServicer_to_server(relay, server)  # type: ignore[no-untyped-call]
    port = server.add_secure_port(
        "127.0.0.1:0", identity(deployment, "server").server_credentials()
    )
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
