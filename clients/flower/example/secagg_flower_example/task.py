"""The model, the data and the training of the example: an MLP on the scikit-learn digits.

Everything is deterministic from the seeds (the same run with and without secagg trains
the same way), and the training runs on one CPU thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict

from clients.flower import ModelLayout
from secagg.protocol.model_blob import encode_model

HIDDEN = 32


def build_model(seed: int) -> Any:
    """The MLP (64 -> 32 -> 10), initialized from ``seed``."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10)
        )


def initial_arrays(seed: int) -> ArrayRecord:
    """Round 1's global model (what ``secagg init --initial-model`` must be given)."""
    return ArrayRecord(build_model(seed).state_dict())


def write_initial_model(path: Path, seed: int) -> int:
    """Write round 1's model as a ModelBlob for ``secagg init --initial-model``; its length."""
    arrays = initial_arrays(seed)
    vector = ModelLayout.of(arrays).flatten(arrays)
    path.write_bytes(encode_model(1, vector))
    return int(vector.size)


def load_partition(
    partition: int, partitions: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Partition ``partition`` of ``partitions`` of the digits (fixed shuffle)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))  # a public split, not a secret
    rows = order[partition::partitions]
    return (x[rows] / 16.0).astype(np.float32), y[rows].astype(np.int64)


def train(msg: Message, context: Context) -> Message:
    """One round of local training on this node's partition; replies the trained model."""
    import torch

    torch.set_num_threads(1)
    config = context.run_config
    partition = int(context.node_config["partition-id"])
    x, y = load_partition(partition, int(context.node_config["num-partitions"]))
    model = build_model(0)
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    server_round = int(str(msg.content.config_records["config"]["server-round"]))
    generator = torch.Generator().manual_seed(
        int(config["seed"]) * 1000 + partition * 100 + server_round
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=float(config["lr"]))
    features, labels = torch.from_numpy(x), torch.from_numpy(y)
    loss_sum = 0.0
    for _ in range(int(config["local-epochs"])):
        order = torch.randperm(len(labels), generator=generator)
        for batch in order.split(32):  # type: ignore[no-untyped-call]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(features[batch]), labels[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            loss_sum += float(loss.item()) * len(batch)
    metrics = MetricRecord({"num-examples": len(labels), "train-loss": loss_sum / len(labels)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content, reply_to=msg)
