"""Attacks on the Flower integration, against the REAL mod and node code (the strategy's:
:mod:`.test_flower_strategy_attacks`).

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

from flwr.app import (
    Array,
    ArrayRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp.typing import ClientAppCallable

import secagg
from clients.flower import ModelLayout
from clients.flower.example.secagg_flower_example import task
from clients.flower.mod import _weight
from clients.flower.records import model_hash
from secagg.encoding import F64
from secagg.errors import (
    ConfigError,
    InvalidKeyMaterial,
    UnverifiedGlobalModel,
    UpdateTampered,
    WrongRound,
)
from secagg.proto import service_pb2 as pb

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


def in_round_2(world: NodeWorld, release: pb.Release, model: F64) -> None:
    """The double collects round 2, serving ``release`` as round 1's."""
    world.double.releases[1] = release
    world.double.round_info.round = 2
    world.double.round_info.global_model_hash = model_hash(2, model)


def test_round_2_trains_only_from_the_endorsed_release_of_round_1(world: NodeWorld) -> None:
    """In round 2 the Flower server sends another model than the one the key holders
    endorsed in round 1's release (model inconsistency): refused before training. The
    released model itself is trained from and uploaded (control)."""
    released = task.initial_arrays(seed=5)
    model = ModelLayout.of(released).flatten(released)
    in_round_2(world, world.endorsed_release(1, model), model)
    with pytest.raises(UnverifiedGlobalModel, match="not the secagg round's global model"):
        world.app()(world.train_message(task.initial_arrays(0), 2), world.context())
    assert world.trained == 0 and world.double.answers.uploads == []
    world.app()(world.train_message(released, 2), world.context())
    assert world.trained == 1 and len(world.double.answers.uploads) == 1


def test_an_endorsed_release_of_another_round_is_no_global_model(world: NodeWorld) -> None:
    """Asked for round 1's release, the server serves round 2's (validly endorsed), whose
    model is the one Flower sends: the node refuses it before training."""
    released = task.initial_arrays(seed=5)
    model = ModelLayout.of(released).flatten(released)
    in_round_2(world, world.endorsed_release(2, model, blob_round=2), model)
    with pytest.raises(WrongRound, match="got round 2's"):
        world.app()(world.train_message(released, 2), world.context())
    assert world.trained == 0 and world.double.answers.uploads == []


def test_the_flower_and_secagg_rounds_must_match_and_a_client_uploads_once(
    world: NodeWorld,
) -> None:
    """Flower says round 2 while secagg collects round 1; secagg does not collect; then
    (after the control upload) Flower asks the node to train round 1 again."""
    with pytest.raises(WrongRound, match="must match"):
        world.app()(world.train_message(round_number=2), world.context())
    world.double.round_info.state = pb.DECRYPTING
    with pytest.raises(WrongRound, match="must match"):
        world.app()(world.train_message(), world.context())
    assert world.trained == 0
    world.double.round_info.state = pb.COLLECTING
    world.app()(world.train_message(), world.context())  # control: c1 uploads
    with pytest.raises(WrongRound, match="already uploaded"):
        world.app()(world.train_message(), world.context())
    assert world.trained == 1 and len(world.double.answers.uploads) == 1


def test_a_bool_is_no_weight() -> None:
    """``True`` is no count of examples (Flower's MetricRecord refuses a bool; the mod does
    not rely on it)."""
    record = MetricRecord({"num-examples": 1})
    record.__dict__["_data"]["num-examples"] = True
    with pytest.raises(ConfigError, match="whole-number"):
        _weight({"metrics": record})
    assert _weight({"metrics": MetricRecord({"num-examples": 1})}) == 1  # control
