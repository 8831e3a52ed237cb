"""Attacks on the Flower integration, against the REAL mod and strategy code.

The server is the adversarial suite's malicious double (:mod:`._double`); Flower nodes are
the example's ClientApp. Each attack must fail loudly (an exception that names the
problem) before anything is encrypted or believed; the control test shows the same
world accepts an honest node, so the attacks fail for the reason they name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

import secagg
from clients.flower import SecAggFedAvg
from clients.flower.example.secagg_flower_example import task
from secagg.errors import (
    ConfigError,
    EndorsementMissing,
    InvalidKeyMaterial,
    UnverifiedGlobalModel,
    UpdateTampered,
)
from secagg.protocol.model_blob import encode_model
from secagg.protocol.statements import ReleaseStatement, Signed
from secagg.rpc.transport import identity

from ._double import NodeWorld, node_world


def scale_update(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A mod that changes the update it passes on (doubles every array of the reply)."""
    reply = call_next(msg, context)
    arrays = reply.content.array_records["arrays"]
    doubled = ArrayRecord({k: Array(2 * arrays[k].numpy()) for k in arrays})
    metrics = reply.content.metric_records["metrics"]
    return Message(RecordDict({"arrays": doubled, "metrics": metrics}), reply_to=msg)


def replace_model(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A mod that changes the model before training (zeroes it)."""
    arrays = msg.content.array_records["arrays"]
    zeroed = ArrayRecord({k: Array(0 * arrays[k].numpy()) for k in arrays})
    content = RecordDict({"arrays": zeroed, "config": msg.content.config_records["config"]})
    msg.__dict__["_content"] = content  # a new content for this node only
    return call_next(msg, context)


@pytest.fixture
def world(tmp_path: Path, keys32: secagg.KeySet) -> Iterator[NodeWorld]:
    with node_world(tmp_path, keys32) as w:
        yield w


def test_an_honest_node_uploads_through_the_double(world: NodeWorld) -> None:
    """Control: the same world accepts an honest node; its reply is a new message with the
    signed contribution only, and the message it got is unchanged."""
    msg = world.train_message()
    before = msg.content.array_records["arrays"]["0.weight"].numpy().copy()
    reply = world.app()(msg, world.context())
    assert len(world.double.answers.uploads) == 1
    assert not reply.content.array_records
    assert "secagg" in reply.content.config_records
    assert np.array_equal(msg.content.array_records["arrays"]["0.weight"].numpy(), before)


def test_a_mod_that_changes_the_update_after_training_fails_loudly(world: NodeWorld) -> None:
    with pytest.raises(UpdateTampered, match="changed the update"):
        world.app(inner=scale_update)(world.train_message(), world.context())
    assert world.trained == 1
    assert world.double.answers.uploads == []


def test_a_mod_that_changes_the_model_before_training_fails_loudly(world: NodeWorld) -> None:
    with pytest.raises(UpdateTampered, match="changed the model"):
        world.app(inner=replace_model)(world.train_message(), world.context())
    assert world.double.answers.uploads == []


def test_an_unsealed_train_function_is_refused(world: NodeWorld) -> None:
    app = world.app()
    app._registered_funcs.clear()  # re-register the example's function without the seal
    app.train()(task.train)
    with pytest.raises(ConfigError, match="not sealed"):
        app(world.train_message(), world.context())
    assert world.double.answers.uploads == []


def test_a_wrong_joint_key_fails_loudly(
    tmp_path: Path, keys32: secagg.KeySet, other_keys32: secagg.KeySet
) -> None:
    """The server serves its own key under the key holders' endorsements of the real one."""
    with node_world(tmp_path, keys32, key=other_keys32) as world:
        with pytest.raises(InvalidKeyMaterial, match="not endorsed by every key holder"):
            world.app()(world.train_message(), world.context())
        assert world.trained == 0  # refused before the node trained
        assert world.double.answers.uploads == []


def test_a_model_other_than_the_rosters_is_refused_before_training(world: NodeWorld) -> None:
    """A Flower server sending its own round-1 model (model inconsistency)."""
    other = task.initial_arrays(seed=1)
    with pytest.raises(UnverifiedGlobalModel):
        world.app()(world.train_message(other), world.context())
    assert world.trained == 0


def test_the_run_config_is_not_a_trust_anchor(world: NodeWorld) -> None:
    """Whoever calls ``flwr run`` cannot point a node at a roster of their choosing."""
    context = world.context()
    context.run_config |= {"secagg-dir": str(world.directory), "secagg-client": "c1"}
    context.node_config = {"partition-id": 0, "num-partitions": 3}
    with pytest.raises(ConfigError, match="no secagg trust anchor"):
        world.app()(world.train_message(), context)
    assert world.trained == 0


def strategy_for(world: NodeWorld) -> SecAggFedAvg:
    strategy = SecAggFedAvg(secagg_dir=world.directory, secagg_address=world.address)
    strategy._global = task.initial_arrays(0)  # as configure_train of round 1 keeps it
    return strategy


def test_a_reply_changed_after_the_mod_is_refused_by_the_strategy(world: NodeWorld) -> None:
    """A mod placed before (outside) the SecAgg mod adds the plaintext back or changes the
    weight: the strategy refuses the reply before it waits for any release."""
    reply = world.app()(world.train_message(), world.context())
    leaked = Message(
        RecordDict(dict(reply.content.items()) | {"arrays": task.initial_arrays(0)}),
        reply_to=world.train_message(),
    )
    with pytest.raises(UpdateTampered, match="plaintext"):
        strategy_for(world).aggregate_train(1, [leaked])
    heavier = RecordDict(
        dict(reply.content.items()) | {"metrics": MetricRecord({"num-examples": 5000})}
    )
    with pytest.raises(UpdateTampered, match="weight"):
        strategy_for(world).aggregate_train(1, [Message(heavier, reply_to=world.train_message())])
    assert world.double.calls["GetRelease"] == 0


def test_a_release_without_endorsements_is_refused(world: NodeWorld) -> None:
    """The server signs a release of a model of its choosing; no key holder endorsed it."""
    model = encode_model(2, np.zeros(world.roster.policy.model_length))
    world.double.serve(model)
    import hashlib

    statement = ReleaseStatement(
        world.roster.deployment_id,
        1,
        hashlib.sha256(model).digest(),
        b"\x00" * 32,
        (1, 2),
        (b"\x01" * 32, b"\x02" * 32),
    )
    signed = Signed.create(statement, identity(world.directory, "server").signing_key())
    world.double.releases[1] = statement.to_proto(signed.signature)
    with pytest.raises(EndorsementMissing):
        strategy_for(world).secagg.wait_release(1, timeout=10)
