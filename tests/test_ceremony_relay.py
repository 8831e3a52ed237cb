"""What a key holder's relay channel reads: the requested kind only, and no sender twice.

:class:`~clients.keyholder.ceremony_relay.CeremonyRelay` is driven through a stand-in for
the gRPC connection that returns the replies a malicious server chose (messages signed
with the deployment's real key-holder keys).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from clients.keyholder.ceremony_relay import CeremonyRelay
from secagg.errors import CeremonyAborted, TranscriptMismatch
from secagg.proto import service_pb2 as pb
from secagg.protocol.deployment import init_deployment
from secagg.protocol.statements import CeremonyStatement, Signed
from secagg.rpc.transport import identity


class _Replies:
    """A connection whose GetCeremonyMessages returns ``messages`` (PostCeremonyMessage: ok)."""

    def __init__(self, messages: list[pb.CeremonyMessage]) -> None:
        self.messages = messages
        self.stub = self

    def GetCeremonyMessages(self, query: pb.CeremonyQuery) -> pb.CeremonyMessages:  # noqa: N802
        return pb.CeremonyMessages(messages=self.messages)

    def call(self, fn: Any, request: Any) -> Any:
        return fn(request)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("relay") / "deployment"
    init_deployment(directory, clients=2, keyholders=3, threshold=2, model_length=4)
    return directory


def _signed(deployment: Path, kind: int, sender: int, body: bytes) -> pb.CeremonyMessage:
    roster = identity(deployment, "server").roster
    statement = CeremonyStatement.of_body(
        roster.deployment_id, kind=kind, sender=sender, recipient=0, body=body
    )
    key = identity(deployment, f"kh{sender}").signing_key()
    return statement.to_proto(body, Signed.create(statement, key).signature)


def _collect(deployment: Path, kind: int, messages: list[pb.CeremonyMessage]) -> None:
    me = identity(deployment, "kh1")
    relay = CeremonyRelay(
        _Replies(messages),  # type: ignore[arg-type]
        me.roster,
        index=1,
        signing_key=me.signing_key(),
    )
    relay.collect(kind, 3, threading.Event())  # type: ignore[arg-type]


def test_two_signed_bodies_of_one_sender_name_it(deployment: Path) -> None:
    messages = [
        _signed(deployment, pb.SEED_COMMIT, 1, bytes(32)),
        _signed(deployment, pb.SEED_COMMIT, 2, b"A" * 32),
        _signed(deployment, pb.SEED_COMMIT, 2, b"B" * 32),
    ]
    with pytest.raises(TranscriptMismatch, match="key holder 2 signed two different") as caught:
        _collect(deployment, pb.SEED_COMMIT, messages)
    assert caught.value.culprits == (2,)


def test_a_message_of_another_kind_names_nobody(deployment: Path) -> None:
    messages = [_signed(deployment, pb.SEED_COMMIT, 2, bytes(32))]  # asked for KEY_COMMIT
    with pytest.raises(CeremonyAborted, match="relayed a SEED_COMMIT message as a KEY_COMMIT") as e:
        _collect(deployment, pb.KEY_COMMIT, messages)
    assert e.value.culprits == ()
