"""The training client's stored upload: a crash before confirmation resends, never retrains.

The REAL training client (:class:`clients.client.TrainingClient`) against the server
double. The crash is the one the client's test-only fault point makes in a real process
(:mod:`clients.faults`, exercised by ``tests/integration/test_dp_bookkeeping.py``): the
upload is trained, signed and stored, and the process dies before sending. Here the
agent is dropped at that point and a new one (the restarted client) runs the round.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clients.client import TrainingClient
from clients.pending_upload import PENDING_UPLOAD_FILE, PendingUpload, StoredUpload
from secagg.encoding import F64
from secagg.proto import service_pb2 as pb
from secagg.protocol.layout import DeploymentLayout
from secagg.rpc.transport import identity

from .conftest import LENGTH, Attack


class Counting:
    """A trainer that counts its trainings (each would spend privacy budget)."""

    def __init__(self) -> None:
        self.rounds: list[int] = []

    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        self.rounds.append(round_number)
        return np.full(LENGTH, 0.25 * len(self.rounds)), 10


@pytest.fixture
def round_one(attack: Attack) -> pb.RoundInfo:
    initial = DeploymentLayout(attack.directory).initial_model.read_bytes()
    attack.double.serve(initial)
    digest = hashlib.sha256(initial).digest()
    return pb.RoundInfo(round=1, state=pb.COLLECTING, global_model_hash=digest)


@pytest.fixture
def agents(attack: Attack) -> Iterator[list[TrainingClient]]:
    made: list[TrainingClient] = []
    yield made
    for agent in made:
        agent.conn.close()


def _agent(attack: Attack, trainer: Counting, made: list[TrainingClient]) -> TrainingClient:
    agent = TrainingClient(identity(attack.directory, "c1"), trainer, address=attack.address)
    made.append(agent)
    return agent


def _crash_after_storing(agent: TrainingClient, info: pb.RoundInfo, attack: Attack) -> StoredUpload:
    """What ``run_round`` does up to the fault point; then the process would die."""
    stored = agent._train(info, attack.keys.public_key)
    agent.pending.store(stored)
    return stored


def test_a_restarted_client_resends_the_stored_upload_and_does_not_train_again(
    attack: Attack, round_one: pb.RoundInfo, agents: list[TrainingClient]
) -> None:
    trainer = Counting()
    stored = _crash_after_storing(_agent(attack, trainer, agents), round_one, attack)
    assert not attack.double.answers.uploads  # nothing left the client

    _agent(attack, trainer, agents).run_round(round_one, attack.keys.public_key)  # restarted
    assert trainer.rounds == [1]  # trained once
    [received] = attack.double.answers.uploads
    assert received.header == stored.header() and received.blob == stored.blob
    state = agents[-1].pending
    assert state.load() is None and state.done() == {"1": stored.header().blob.sha256.hex()}


def test_a_damaged_stored_upload_is_discarded_and_the_round_trained_again(
    attack: Attack, round_one: pb.RoundInfo, agents: list[TrainingClient]
) -> None:
    trainer = Counting()
    agent = _agent(attack, trainer, agents)
    _crash_after_storing(agent, round_one, attack)
    path: Path = agent.state / PENDING_UPLOAD_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the ciphertext no longer matches its signed hash
    path.write_bytes(bytes(data))

    _agent(attack, trainer, agents).run_round(round_one, attack.keys.public_key)
    assert trainer.rounds == [1, 1]  # trained again: the ledger accounts for both
    [received] = attack.double.answers.uploads
    assert hashlib.sha256(received.blob).digest() == received.header.blob.sha256


def test_a_stored_upload_of_another_round_is_deleted(
    attack: Attack, round_one: pb.RoundInfo, agents: list[TrainingClient]
) -> None:
    agent = _agent(attack, Counting(), agents)
    _crash_after_storing(agent, round_one, attack)
    state = PendingUpload(agent.state, attack.roster)
    assert state.for_round(1, bytes(32)) is None  # another model: the round moved on
    assert state.load() is None
