"""The flattening order, the integer policy, and the strategies' use of a released mean.

The mixin hands the released weighted mean to the base strategy as the one reply it
aggregates; for FedAvg, FedAvgM (server momentum) and FedAdam the result must be what
the plain strategy computes from the same replies in plaintext (same state, same round).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM

from clients.flower import ModelLayout, SecAggFedAdam, SecAggFedAvg, SecAggFedAvgM
from secagg.errors import EncodingError
from secagg.protocol.deployment import init_deployment

from ._grid import InProcessGrid

SHAPES = {"b.bias": (3,), "a.weight": (3, 2), "bn.num_batches_tracked": ()}


def model(seed: int, dtype: Any = np.float32) -> ArrayRecord:
    rng = np.random.default_rng(seed)
    arrays = {k: rng.uniform(-1, 1, s).astype(dtype) for k, s in SHAPES.items() if "num" not in k}
    arrays["bn.num_batches_tracked"] = np.array(7 + seed, dtype=np.int64)
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def test_the_layout_flattens_floating_arrays_in_sorted_key_order() -> None:
    arrays = model(0)
    layout = ModelLayout.of(arrays)
    assert [s.key for s in layout.specs] == sorted(SHAPES)
    assert layout.size == 9
    vector = layout.flatten(arrays)
    expected = np.concatenate([arrays["a.weight"].numpy().ravel(), arrays["b.bias"].numpy()])
    assert vector.dtype == np.float64 and np.array_equal(vector, expected)
    assert layout.flatten(model(0, np.float64)).size == 9  # float64 and float32 alike


def test_unflatten_gives_float64_arrays_and_keeps_the_integer_arrays() -> None:
    sent = model(0)
    layout = ModelLayout.of(sent)
    out = layout.unflatten(np.arange(9, dtype=np.float64), sent)
    assert list(out.keys()) == list(sent.keys())
    assert out["a.weight"].numpy().dtype == np.float64
    assert np.array_equal(out["a.weight"].numpy().ravel(), np.arange(6))
    assert out["bn.num_batches_tracked"].numpy() == 7  # the integer policy: kept, not averaged
    assert out["bn.num_batches_tracked"].numpy().dtype == np.int64


def test_the_layout_refuses_other_dtypes_and_other_layouts() -> None:
    complex_model = ArrayRecord({"w": Array(np.zeros(2, dtype=np.complex128))})
    with pytest.raises(EncodingError, match="not a number"):
        ModelLayout.of(complex_model)
    with pytest.raises(EncodingError, match="layout"):
        ModelLayout.of(model(0)).flatten(ArrayRecord({"a.weight": Array(np.zeros((3, 2)))}))


def replies(seeds: list[int], weights: list[int]) -> list[Message]:
    out = []
    for seed, weight in zip(seeds, weights, strict=True):
        content = RecordDict(
            {"arrays": model(seed, np.float64), "metrics": MetricRecord({"num-examples": weight})}
        )
        out.append(Message(content, 0, "train"))
    return out


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("layout") / "dep"
    init_deployment(directory, clients=3, keyholders=3, threshold=2, model_length=9)
    return directory


@pytest.mark.parametrize(
    ("secagg_cls", "plain_cls", "options"),
    [
        (SecAggFedAvg, FedAvg, {}),
        (SecAggFedAvgM, FedAvgM, {"server_momentum": 0.9, "server_learning_rate": 0.5}),
        (SecAggFedAdam, FedAdam, {"eta": 0.1}),
    ],
)
def test_the_base_strategy_updates_from_the_released_mean(
    deployment: Path, secagg_cls: Any, plain_cls: Any, options: dict[str, Any]
) -> None:
    grid = InProcessGrid(ClientApp(), [{}, {}, {}], {})
    sent = model(0)
    plain, secure = plain_cls(**options), secagg_cls(secagg_dir=deployment, **options)
    for round_number in (1, 2):
        weights = [3, 5, 7 + round_number]
        received = replies([10 * round_number + i for i in range(3)], weights)
        plain.configure_train(round_number, sent, ConfigRecord(), grid)
        plain_cls.configure_train(secure, round_number, sent, ConfigRecord(), grid)  # base state
        expected, _ = plain.aggregate_train(round_number, received)
        layout = ModelLayout.of(sent)
        mean = np.average(
            [layout.flatten(r.content.array_records["arrays"]) for r in received],
            axis=0,
            weights=weights,
        )
        released = secure.aggregate_released(round_number, mean, sent)
        assert released is not None and expected is not None
        for key in ("a.weight", "b.bias"):  # plain Flower also averages the integer array
            assert np.abs(released[key].numpy() - expected[key].numpy()).max() < 1e-12
        assert released["bn.num_batches_tracked"].numpy() == sent["bn.num_batches_tracked"].numpy()
        sent = released
    assert secure.check_global_model is (secagg_cls is SecAggFedAvg)
