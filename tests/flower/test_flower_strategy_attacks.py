"""Attacks on the Flower strategy mixin, against the REAL strategy code.

The replies come from the example's ClientApp through the malicious-server double
(:mod:`._double`), or are signed by the test in a roster client's name; releases are
served by the double, validly endorsed by ``t`` key holders (the test signs as them) or
not. A bad reply must be skipped and logged without stopping the Flower run; a release
is believed only for its round, and the next round's model only if it is the model of
the release the strategy verified itself.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

import secagg
from clients.flower import ModelLayout, SecAggFedAvg
from clients.flower.example.secagg_flower_example import task
from clients.flower.records import model_hash, signed_contribution
from secagg.errors import (
    EndorsementMissing,
    MalformedStatement,
    SignatureInvalid,
    TooFewContributors,
    UnverifiedGlobalModel,
    WrongRound,
)
from secagg.proto import service_pb2 as pb
from secagg.protocol.model_blob import encode_model

from ._double import NodeWorld, node_world, train_message
from ._grid import InProcessGrid


@pytest.fixture
def world(tmp_path: Path, keys32: secagg.KeySet) -> Iterator[NodeWorld]:
    with node_world(tmp_path, keys32) as w:
        yield w


def strategy_for(world: NodeWorld) -> SecAggFedAvg:
    strategy = SecAggFedAvg(secagg_dir=world.directory, secagg_address=world.address)
    strategy._global = task.initial_arrays(0)  # as configure_train of round 1 keeps it
    return strategy


def forged(reply: Message) -> Message:
    """``reply`` with one byte of its contribution's signature flipped."""
    contribution = pb.Contribution.FromString(contribution_blob(reply))
    contribution.signature = bytes([contribution.signature[0] ^ 1]) + contribution.signature[1:]
    return with_blob(reply, contribution.SerializeToString())


def contribution_blob(reply: Message) -> bytes:
    blob = reply.content.config_records["secagg"]["contribution"]
    assert isinstance(blob, bytes)
    return blob


def with_blob(reply: Message, blob: bytes) -> Message:
    record = ConfigRecord({"round": 1, "contribution": blob})
    content = RecordDict(dict(reply.content.items()) | {"secagg": record})
    return Message(content, reply_to=train_message())


def with_metrics(reply: Message, metrics: dict[str, float | list[float]] | None) -> Message:
    """``reply`` with its MetricRecord replaced (or removed: ``None``)."""
    content = {k: v for k, v in reply.content.items() if k != "metrics"}
    if metrics is not None:
        content["metrics"] = MetricRecord(metrics)  # type: ignore[arg-type]
    return Message(RecordDict(content), reply_to=train_message())


def leaking(reply: Message) -> Message:
    """``reply`` with the plaintext update added (a mod outside the SecAgg mod)."""
    content = dict(reply.content.items()) | {"arrays": task.initial_arrays(0)}
    return Message(RecordDict(content), reply_to=train_message())


def skipped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


def test_bad_replies_are_skipped_and_the_round_completes(
    world: NodeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Plaintext arrays (a leak), a forged signature, a second contribution of a client and
    an error reply with a forged log line are each skipped and logged; the round completes
    from the endorsed release, with the two valid contributions (min_contributors = 2),
    one with metrics that do not aggregate with the other's (dropped and logged)."""
    honest = world.app()(world.train_message(), world.context())  # c1, through the mod
    reason = "boom\nINFO forged line\x1b[2J" + "x" * 999
    error = Message(Error(code=0, reason=reason), reply_to=train_message())
    replies = [
        leaking(world.contribution("c2")),
        honest,
        forged(world.contribution("c3")),
        world.contribution("c1"),  # a second contribution of c1
        with_metrics(world.contribution("c2"), {"num-examples": 100, "train-loss": [1.0]}),
        error,
    ]
    mean = np.linspace(-1, 1, world.roster.policy.model_length)
    world.double.releases[1] = world.endorsed_release(1, mean)
    strategy = strategy_for(world)
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and np.array_equal(ModelLayout.of(arrays).flatten(arrays), mean)
    assert strategy._verified == (2, model_hash(2, mean))  # round 2's model: this release's
    lines = skipped(caplog)
    assert len(lines) == 4 and metrics is None, lines
    assert "metrics do not aggregate" in lines[3]
    assert "UpdateTampered" in lines[0] and "leaked to this Flower server" in lines[0]
    assert "SignatureInvalid" in lines[1]
    assert "DuplicateContributor" in lines[2] and "c1" in lines[2]
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    line = ("boom?INFO forged line?[2J" + "x" * 999)[:200] + "..."  # one bounded line
    assert failed == [f"round 1: node 1 failed: {line}"]


def test_too_few_valid_replies_raise_too_few_contributors(world: NodeWorld) -> None:
    """A mod outside the SecAgg mod adds the plaintext back, or changes the weight; a reply
    signs another round: one valid contribution remains, fewer than min_contributors, and
    the strategy waits for no release."""
    reply = world.app()(world.train_message(), world.context())
    strategy = strategy_for(world)
    strategy.release_timeout = 0.5  # without the guards: ReleaseTimeout, not the error below
    for bad in (
        leaking(world.contribution("c2")),
        with_metrics(world.contribution("c2"), {"num-examples": 5000}),  # not the signed 100
        with_metrics(world.contribution("c2"), None),  # no MetricRecord (nothing to weigh by)
        world.contribution("c2", round_number=2),  # validly signed, for round 2
    ):
        with pytest.raises(TooFewContributors, match="1 valid"):
            strategy.aggregate_train(1, [reply, bad])
    assert world.double.calls["GetRelease"] == 0


def test_a_contribution_record_is_checked_before_it_is_believed(world: NodeWorld) -> None:
    """The strategy parses a node's record with a size cap and checks its signature."""
    honest = world.contribution("c1")
    blob = contribution_blob(honest)
    padding = b"\xc2\x3e" + b"\x80\x80\x04" + bytes(65536)  # unknown field 1000, 64 KiB
    with pytest.raises(MalformedStatement, match="too large"):
        signed_contribution(with_blob(honest, blob + padding), world.roster)
    with pytest.raises(MalformedStatement, match="does not parse"):
        signed_contribution(with_blob(honest, b"\xff" * 8), world.roster)
    with pytest.raises(SignatureInvalid):
        signed_contribution(forged(honest), world.roster)
    assert signed_contribution(honest, world.roster).statement.client_id == "c1"  # control


def test_a_release_without_endorsements_is_refused(world: NodeWorld) -> None:
    """The server signs a release of a model of its choosing; no key holder endorsed it."""
    model = encode_model(2, np.zeros(world.roster.policy.model_length))
    world.double.serve(model)
    world.double.releases[1] = world.release(b"\x00" * 32, hashlib.sha256(model).digest())
    with pytest.raises(EndorsementMissing):
        strategy_for(world).secagg.wait_release(1, timeout=10)


def test_an_endorsed_release_of_another_round_is_refused(world: NodeWorld) -> None:
    """The server answers the query for round 1 with round 2's (validly endorsed) release."""
    zeros = np.zeros(world.roster.policy.model_length)
    world.double.releases[1] = world.endorsed_release(2, zeros, blob_round=2)
    with pytest.raises(WrongRound, match="got 2's"):
        strategy_for(world).secagg.wait_release(1, timeout=10)


def test_the_next_model_is_the_one_the_strategy_verified(world: NodeWorld) -> None:
    """After round 1's verified release, the server states another model's hash as round
    2's global model: the strategy refuses to send that model, and sends the released one
    (control); without a verified release of round 2 it sends nothing in round 3."""
    mean = np.linspace(-1, 1, world.roster.policy.model_length)
    world.double.releases[1] = world.endorsed_release(1, mean)
    strategy = strategy_for(world)
    released, _ = strategy.aggregate_train(1, [world.contribution("c1"), world.contribution("c2")])
    assert released is not None
    other = task.initial_arrays(seed=7)
    world.double.round_info.round = 2
    world.double.round_info.global_model_hash = model_hash(2, ModelLayout.of(other).flatten(other))
    grid = InProcessGrid(ClientApp(), [{}, {}, {}], {})
    with pytest.raises(UnverifiedGlobalModel, match="not secagg's global model"):
        strategy.configure_train(2, other, ConfigRecord(), grid)
    assert len(list(strategy.configure_train(2, released, ConfigRecord(), grid))) == 3
    world.double.round_info.round = 3
    with pytest.raises(UnverifiedGlobalModel, match="verified no release of round 2"):
        strategy.configure_train(3, released, ConfigRecord(), grid)
