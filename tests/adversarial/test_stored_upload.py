"""The training client's stored upload: a crash before confirmation resends, never retrains.

The REAL training client (:class:`clients.client.TrainingClient`) against the server
double. The crash is the one the client's test-only fault point makes in a real process
(:mod:`clients.faults`, exercised by ``tests/integration/test_dp_bookkeeping.py``): the
upload is trained, encrypted into its chunk file, signed and stored, and the process dies
before sending. Here the agent is dropped at that point and a new one (the restarted
client) runs the round: it streams the same head and chunks from the same file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

import secagg
from clients.client import TrainingClient
from clients.pending_upload import (
    PENDING_CHUNKS_FILE,
    PENDING_UPLOAD_FILE,
    PendingUpload,
    StoredUpload,
)
from secagg.chunked import VectorHead, checked_chunks
from secagg.encoding import F64, I64
from secagg.proto import service_pb2 as pb
from secagg.protocol.layout import DeploymentLayout
from secagg.rpc.transport import identity

from .conftest import LENGTH, Attack


class Integers:
    """A distributed-DP-like trainer: its update is integers (the integer encoding path)."""

    def train_integers(self, global_model: F64, round_number: int) -> tuple[I64, int]:
        return np.arange(-LENGTH // 2, LENGTH - LENGTH // 2, dtype=np.int64) * 1000, 1

    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        raise AssertionError("the client must take the integer path")


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


def _agent(
    attack: Attack, trainer: Counting | Integers, made: list[TrainingClient]
) -> TrainingClient:
    agent = TrainingClient(identity(attack.directory, "c1"), trainer, address=attack.address)
    made.append(agent)
    return agent


def _crash_after_storing(agent: TrainingClient, info: pb.RoundInfo, attack: Attack) -> StoredUpload:
    """What ``run_round`` does up to the fault point; then the process would die."""
    stored = agent._train(info, attack.keys.public_key)
    agent.pending.store(stored)
    return stored


def _received(attack: Attack) -> tuple[pb.UploadHeader, VectorHead, list[bytes]]:
    """The one upload the double received: its header, its head (checked) and its chunks."""
    [received] = attack.double.answers.uploads
    head = VectorHead.from_bytes(received.header.head, attack.roster.params)
    chunks = list(received.chunks)
    assert len(list(checked_chunks(head, chunks))) == head.chunk_count  # every chunk checks
    return received.header, head, chunks


def test_a_restarted_client_resends_the_stored_upload_and_does_not_train_again(
    attack: Attack, round_one: pb.RoundInfo, agents: list[TrainingClient]
) -> None:
    trainer = Counting()
    stored = _crash_after_storing(_agent(attack, trainer, agents), round_one, attack)
    assert not attack.double.answers.uploads  # nothing left the client
    sent_chunks = list(stored.chunks())

    _agent(attack, trainer, agents).run_round(round_one, attack.keys.public_key)  # restarted
    assert trainer.rounds == [1]  # trained once
    header, head, chunks = _received(attack)
    assert header == stored.header() and chunks == sent_chunks  # the same signed bytes
    assert head.digest == stored.signed.statement.ciphertext_hash
    state = agents[-1].pending
    assert state.load() is None and state.done() == {"1": head.digest.hex()}
    assert not state.path.exists() and not state.chunks_path.exists()  # deleted on confirm


def test_the_stored_ciphertext_is_a_chunk_file_signed_by_its_head_digest(
    attack: Attack, round_one: pb.RoundInfo, agents: list[TrainingClient]
) -> None:
    agent = _agent(attack, Counting(), agents)
    stored = _crash_after_storing(agent, round_one, attack)
    assert stored.path == agent.state / PENDING_CHUNKS_FILE
    assert stored.signed.statement.ciphertext_hash == stored.head.digest
    loaded = PendingUpload(agent.state, attack.roster).load()  # as a restarted client reads it
    assert loaded is not None and loaded.header() == stored.header()
    residues = np.concatenate([r for _, r in checked_chunks(loaded.head, loaded.chunks())])
    params = attack.roster.params
    assert residues.shape == (
        loaded.head.ciphertexts,
        2,
        len(params.data_primes),
        params.poly_modulus_degree,
    )


@pytest.mark.parametrize("damage", ["chunk", "swapped", "missing"])
def test_a_damaged_stored_upload_is_discarded_and_the_round_trained_again(
    attack: Attack, round_one: pb.RoundInfo, agents: list[TrainingClient], damage: str
) -> None:
    trainer = Counting()
    agent = _agent(attack, trainer, agents)
    _crash_after_storing(agent, round_one, attack)
    chunk_file = agent.state / PENDING_CHUNKS_FILE
    if damage == "chunk":  # one bit of a chunk: it no longer matches its digest in the head
        data = bytearray(chunk_file.read_bytes())
        data[5] ^= 1
        chunk_file.write_bytes(bytes(data))
    elif damage == "swapped":  # a valid chunk file, but of another (unsigned) ciphertext
        other = PendingUpload(agent.state / "other", attack.roster)
        other.chunks_path.parent.mkdir()
        other.write_ciphertext(attack.keys.public_key, attack.update(9))
        other.chunks_path.replace(chunk_file)
    else:
        chunk_file.unlink()

    _agent(attack, trainer, agents).run_round(round_one, attack.keys.public_key)
    assert trainer.rounds == [1, 1]  # trained again: the ledger accounts for both
    header, head, _ = _received(attack)
    assert head.digest != b"" and header.signature


def test_a_chunk_file_without_its_signed_header_is_not_an_upload(
    attack: Attack, round_one: pb.RoundInfo, agents: list[TrainingClient]
) -> None:
    agent = _agent(attack, Counting(), agents)
    agent._train(round_one, attack.keys.public_key)  # the crash came before store()
    assert (agent.state / PENDING_CHUNKS_FILE).exists()
    assert not (agent.state / PENDING_UPLOAD_FILE).exists()
    assert agent.pending.for_round(1, round_one.global_model_hash) is None


def test_a_stored_upload_of_another_round_is_deleted(
    attack: Attack, round_one: pb.RoundInfo, agents: list[TrainingClient]
) -> None:
    agent = _agent(attack, Counting(), agents)
    _crash_after_storing(agent, round_one, attack)
    state = PendingUpload(agent.state, attack.roster)
    assert state.for_round(1, bytes(32)) is None  # another model: the round moved on
    assert state.load() is None
    assert not state.chunks_path.exists()


def test_integer_updates_stream_through_the_same_path_and_decrypt_exactly(
    attack: Attack, round_one: pb.RoundInfo, agents: list[TrainingClient]
) -> None:
    _agent(attack, Integers(), agents).run_round(round_one, attack.keys.public_key)
    _, head, chunks = _received(attack)
    residues = np.concatenate([r for _, r in checked_chunks(head, chunks)])
    vector = secagg.EncryptedVector(head.params, head.public_key_id, head.length, residues)
    assert vector.digest == head.digest
    aggregate = secagg.aggregate([vector])
    quorum = [1, 2]
    partials = [
        secagg.partial_decrypt(attack.keys.shares[i - 1], aggregate, quorum=quorum) for i in quorum
    ]
    values = secagg.combine(aggregate, partials, mean=False)
    integers, _ = Integers().train_integers(np.zeros(LENGTH), 1)
    assert np.array_equal(values, integers * 2.0**-head.params.fractional_bits)
