"""A server that sends clients a model no key holder vouched for (issue 10, item 5).

The attack: a crafted global model (a "trap", e.g. weights that make individual samples
recoverable from the next round's updates) sent to the REAL training client
(:class:`clients.client.TrainingClient`, one round through ``run_round``). Round 1's
model must be the roster's initial model; a later round's must be the model of the
previous round's release, signed by the server AND endorsed by ``t`` key holders
(:func:`clients.connection.verify_release`). The server's signature alone proves
nothing: the server signs what it likes. Each refusal leaves nothing trained and nothing
uploaded; the honest cases (the controls) train and upload once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from clients.client import TrainingClient
from secagg.encoding import F64
from secagg.errors import EndorsementMissing, SecAggError, SignatureInvalid
from secagg.proto import service_pb2 as pb
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import encode_model
from secagg.protocol.statements import EndorsementStatement, Signed
from secagg.rpc.transport import identity

from .conftest import LENGTH, Attack

MODEL = encode_model(2, np.full(LENGTH, 7.0))  # what the server sends for round 2
MODEL_HASH = hashlib.sha256(MODEL).digest()
AGGREGATE = hashlib.sha256(b"the round's aggregate").digest()
ANOTHER_MODEL = hashlib.sha256(b"another model").digest()
Endorsements = Callable[[Attack], list[pb.Endorsement]]


class Recording:
    """A trainer that records what it was asked to train on."""

    def __init__(self) -> None:
        self.trained: list[tuple[int, F64]] = []

    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        self.trained.append((round_number, global_model.copy()))
        return np.full(LENGTH, 0.25), 10


@pytest.fixture
def client(attack: Attack) -> Iterator[tuple[TrainingClient, Recording]]:
    """Client c1's real agent against the double, with a recording trainer."""
    trainer = Recording()
    agent = TrainingClient(identity(attack.directory, "c1"), trainer, address=attack.address)
    try:
        yield agent, trainer
    finally:
        agent.conn.close()


def _round(attack: Attack, round_number: int, model: bytes) -> pb.RoundInfo:
    attack.double.serve(model)
    digest = hashlib.sha256(model).digest()
    return pb.RoundInfo(round=round_number, state=pb.COLLECTING, global_model_hash=digest)


def _forged(attack: Attack, keyholder: int) -> pb.Endorsement:
    """An endorsement in key holder ``keyholder``'s name, signed with the server's key."""
    statement = EndorsementStatement(
        attack.roster.deployment_id, 1, keyholder, AGGREGATE, MODEL_HASH, (1, 2)
    )
    return statement.to_proto(Signed.create(statement, attack.signing_key("server")).signature)


def _endorsed_by(
    *keyholders: int, model: bytes = MODEL_HASH, aggregate: bytes = AGGREGATE
) -> Endorsements:
    return lambda attack: [attack.endorsement(k, aggregate, model) for k in keyholders]


# ------------------------------------------------------------------------------ round 1


def test_round_1_needs_the_rosters_initial_model(
    attack: Attack, client: tuple[TrainingClient, Recording]
) -> None:
    agent, trainer = client
    with pytest.raises(SignatureInvalid, match="initial model"):
        agent.run_round(
            _round(attack, 1, encode_model(1, np.full(LENGTH, 7.0))), attack.keys.public_key
        )
    assert not trainer.trained and not attack.double.answers.uploads

    initial = DeploymentLayout(attack.directory).initial_model.read_bytes()
    agent.run_round(_round(attack, 1, initial), attack.keys.public_key)  # the control
    assert [r for r, _ in trainer.trained] == [1]
    assert len(attack.double.answers.uploads) == 1


# ------------------------------------------------------------------------------ later rounds


def _release(
    endorsements: Endorsements, model: bytes = MODEL_HASH
) -> Callable[[Attack], pb.Release]:
    """A server-signed release of ``model`` (round 1, round 2's input) with these endorsements."""
    return lambda attack: attack.release(AGGREGATE, model, *endorsements(attack))


REFUSED: dict[str, tuple[Callable[[Attack], pb.Release], type[SecAggError]]] = {
    "no endorsement": (_release(_endorsed_by()), EndorsementMissing),
    "t - 1 endorsements": (_release(_endorsed_by(1)), EndorsementMissing),
    "one key holder twice": (_release(lambda a: _endorsed_by(1)(a) * 2), EndorsementMissing),
    "endorsements of another model": (
        _release(_endorsed_by(1, 2, model=ANOTHER_MODEL)),
        EndorsementMissing,
    ),
    "endorsements of another aggregate": (
        _release(_endorsed_by(1, 2, aggregate=bytes(32))),
        EndorsementMissing,
    ),
    "endorsements forged by the server": (
        _release(lambda a: [_forged(a, 1), _forged(a, 2)]),
        EndorsementMissing,
    ),
    "an endorsed release of another model": (
        _release(_endorsed_by(1, 2, model=ANOTHER_MODEL), ANOTHER_MODEL),
        SignatureInvalid,
    ),
}


@pytest.mark.parametrize(("release", "error"), REFUSED.values(), ids=REFUSED.keys())
def test_a_model_without_t_endorsements_is_refused(
    attack: Attack,
    client: tuple[TrainingClient, Recording],
    release: Callable[[Attack], pb.Release],
    error: type[SecAggError],
) -> None:
    agent, trainer = client
    attack.double.releases[1] = release(attack)
    with pytest.raises(error):
        agent.run_round(_round(attack, 2, MODEL), attack.keys.public_key)
    assert not trainer.trained and not attack.double.answers.uploads


def test_a_model_with_t_endorsements_is_trained_on(
    attack: Attack, client: tuple[TrainingClient, Recording]
) -> None:
    """The control: the same release with 2 key holders' endorsements is accepted."""
    agent, trainer = client
    attack.double.releases[1] = _release(_endorsed_by(1, 3))(attack)
    agent.run_round(_round(attack, 2, MODEL), attack.keys.public_key)
    assert [r for r, _ in trainer.trained] == [2]
    assert len(attack.double.answers.uploads) == 1
