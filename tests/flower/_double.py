"""A Flower node against the malicious-server double (not a test module).

:func:`node_world` makes a deployment (``init_deployment``, the example's initial model,
no processes), a joint key with every key holder's signed endorsement, and the
adversarial suite's :class:`~adversarial._server_double.ServerDouble` serving it over
real mTLS with the deployment's server certificate, in round 1. A node is the example's
REAL ClientApp code (the SecAgg mod, the sealed train function) with whatever mods the
test adds, its node configuration pointing at the double (``secagg-address``). The test
signs in any party's name (:class:`~adversarial._signatures.Signatures`): releases that
``t`` key holders validly endorsed, contributions of any roster client.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adversarial._server_double import ServerDouble, start_double
from adversarial._signatures import Signatures, key_bundle
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from flwr.supercore.task_identity import TaskIdentity

import secagg
from clients.flower import ModelLayout, sealed_train, secagg_mod
from clients.flower.example.secagg_flower_example import task
from clients.flower.records import contribution_record
from secagg.encoding import F64
from secagg.proto import service_pb2 as pb
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import encode_model
from secagg.protocol.roster import Roster
from secagg.protocol.statements import Signed, UploadStatement


@dataclass
class NodeWorld(Signatures):
    """A deployment directory, the double serving it, and the address of the double."""

    directory: Path
    roster: Roster
    double: ServerDouble
    address: str
    trained: int = 0  # how often the train function ran

    def app(self, *mods: Mod, inner: Mod | None = None) -> ClientApp:
        """The example's train function, sealed, behind ``mods`` (outermost first), then
        the SecAgg mod, then ``inner`` (a mod the SecAgg mod is not last before)."""
        app = ClientApp(mods=[*mods, secagg_mod, *([inner] if inner else [])])

        @app.train()
        @sealed_train
        def train(msg: Message, context: Context) -> Message:
            self.trained += 1
            return task.train(msg, context)

        return app

    def context(self, **node: bool | float | int | str) -> Context:
        """Node c1's context: its anchor (the double's address) and partition 0."""
        config: dict[str, bool | float | int | str] = {
            "secagg-dir": str(self.directory), "secagg-client": "c1",
            "secagg-address": self.address, "partition-id": 0, "num-partitions": 3,
        }  # fmt: skip
        run: dict[str, bool | float | int | str] = {"local-epochs": 1, "lr": 0.1, "seed": 0}
        return Context(
            run_id=1, node_id=1, node_config=config | node, state=RecordDict(), run_config=run
        )

    def endorsed_release(self, round_number: int, model: F64, *, blob_round: int = 0) -> pb.Release:
        """A release of ``model`` for ``round_number`` that key holders 1 and 2 (``t``)
        validly endorsed, its blob served (encoded as round ``blob_round``, default the
        next round's model as a real release is)."""
        blob = encode_model(blob_round or round_number + 1, model)
        self.double.serve(blob)
        digest, aggregate = hashlib.sha256(blob).digest(), hashlib.sha256(b"aggregate").digest()
        endorsements = [
            self.endorsement(k, aggregate, digest, round_number=round_number) for k in (1, 2)
        ]
        return self.release(aggregate, digest, *endorsements, round_number=round_number)

    def contribution(self, client: str, round_number: int = 1, weight: int = 100) -> Message:
        """A train reply carrying a contribution that roster client ``client`` signed."""
        statement = UploadStatement(
            self.roster.deployment_id, round_number, client, os.urandom(16),
            self.roster.initial_model_hash, os.urandom(32), weight,
        )  # fmt: skip
        signed = Signed.create(statement, self.signing_key(client))
        metrics = MetricRecord({"num-examples": weight})
        content = RecordDict({"secagg": contribution_record(signed), "metrics": metrics})
        return Message(content, reply_to=self.train_message(round_number=round_number))

    def train_message(self, arrays: ArrayRecord | None = None, round_number: int = 1) -> Message:
        """See :func:`train_message`."""
        return train_message(arrays, round_number)


def train_message(arrays: ArrayRecord | None = None, round_number: int = 1) -> Message:
    """A train message as FedAvg builds it (default: round 1, the initial model)."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0
    content = RecordDict(
        {
            "arrays": arrays if arrays is not None else task.initial_arrays(0),
            "config": ConfigRecord({"server-round": round_number, "lr": 0.1}),
        }
    )
    msg = Message(content, 1, MessageType.TRAIN)
    msg.metadata.__dict__["_message_id"] = str(uuid.uuid4())
    return msg


@contextmanager
def node_world(
    root: Path, keys: secagg.KeySet, *, key: secagg.KeySet | None = None
) -> Iterator[NodeWorld]:
    """See the module docstring; ``key``: serve that key's public key instead of ``keys``'s,
    under the endorsements of ``keys``'s (a server substituting its own key)."""
    initial = task.initial_arrays(0)
    roster = init_deployment(
        root / "dep", clients=3, keyholders=3, threshold=2, rounds=2,
        model_length=ModelLayout.of(initial).size,
        initial_model=ModelLayout.of(initial).flatten(initial),
    )  # fmt: skip
    bundle = key_bundle(root / "dep", roster, keys)
    served = key or keys
    bundle.public_key = served.public_key.to_bytes()
    double = ServerDouble(bundle)
    double.serve(DeploymentLayout(root / "dep").initial_model.read_bytes())  # round 1's model
    double.round_info = pb.RoundInfo(
        round=1, state=pb.COLLECTING, global_model_hash=roster.initial_model_hash,
        public_key_id=served.public_key.id_bytes, model_length=roster.policy.model_length,
    )  # fmt: skip
    server, address = start_double(root / "dep", double)
    try:
        yield NodeWorld(root / "dep", roster, double, address)
    finally:
        server.stop(grace=None)
