"""A malicious relay replays the ceremony messages of key epoch 1 into the ceremony of epoch 2.

Key holder 1 runs the REAL ceremony (:func:`clients.keyholder.ceremony.run_ceremony`) of
epoch 2 over mTLS against :class:`CeremonyRelayDouble`, which serves the other key
holders' genuine, signed EXCHANGE_KEY messages of epoch 1 (the first phase): as they are
(refused as a replay) and relabelled as epoch 2 (their signatures cover epoch 1: refused).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from clients.connection import Connection
from clients.keyholder.ceremony import CeremonyRelay, run_ceremony
from secagg.errors import ReplayDetected, SignatureInvalid
from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.deployment import init_deployment
from secagg.rpc.transport import identity

from ._ceremony_relay import CeremonyRelayDouble, serving


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    directory = tmp_path / "deployment"
    init_deployment(directory, clients=2, keyholders=3, threshold=2, model_length=4)
    return directory


@pytest.fixture
def relay(deployment: Path) -> Iterator[tuple[CeremonyRelayDouble, str]]:
    double = CeremonyRelayDouble(identity(deployment, "server").roster.deployment_id)
    with serving(deployment, double) as address:
        yield double, address


def _run_epoch_2(deployment: Path, address: str) -> None:
    me = identity(deployment, "kh1")
    stop = threading.Event()
    conn = Connection(me, address, stop=stop)
    relay = CeremonyRelay(conn, me.roster, index=1, signing_key=me.signing_key(), epoch=2)
    try:
        run_ceremony(relay, keep=lambda _: None, stop=stop)
    finally:
        stop.set()
        conn.close()


def _replay_epoch_1(double: CeremonyRelayDouble, deployment: Path, *, relabel: bool) -> None:
    for index in (2, 3):
        key = identity(deployment, f"kh{index}").signing_key()
        body = codec.encode_exchange_key(X25519PrivateKey.generate().public_key())
        double.post(key, pb.EXCHANGE_KEY, index, body)  # signed as epoch 1
    if relabel:
        with double.changed:
            for msg in double.messages.values():
                msg.epoch = 2


def test_an_epoch_1_message_is_refused_in_epoch_2(
    deployment: Path, relay: tuple[CeremonyRelayDouble, str]
) -> None:
    double, address = relay
    _replay_epoch_1(double, deployment, relabel=False)
    with pytest.raises(ReplayDetected, match="epoch 1 relayed into epoch 2"):
        _run_epoch_2(deployment, address)


def test_a_relabelled_epoch_1_message_does_not_verify_in_epoch_2(
    deployment: Path, relay: tuple[CeremonyRelayDouble, str]
) -> None:
    double, address = relay
    _replay_epoch_1(double, deployment, relabel=True)
    with pytest.raises(SignatureInvalid):
        _run_epoch_2(deployment, address)
