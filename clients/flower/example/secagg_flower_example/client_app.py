"""The ClientApp: local training, sealed, behind the SecAgg mod.

Each node is started with its own trust anchor and data partition, e.g.::

    flower-supernode ... --node-config \
        "secagg-dir='/path/dep' secagg-client='c1' partition-id=0 num-partitions=3"
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from clients.flower import sealed_train, secagg_mod

from .task import train as train_locally

app = ClientApp(mods=[secagg_mod])


@app.train()
@sealed_train
def train(msg: Message, context: Context) -> Message:
    """Train on this node's partition (the SecAgg mod encrypts and uploads the result)."""
    return train_locally(msg, context)
