"""A Flower node's side of secagg: its trust anchor, its round, its key and its upload.

**Trust anchor.** The deployment directory (roster, CA, this client's keys) and the
client's roster name come from the *node's* configuration, ``flower-supernode
--node-config "secagg-dir='/path/dep' secagg-client='c1'"``, which the node's operator
sets. Never from the run config: that comes from whoever calls ``flwr run``, who could
point the node at a roster of their own (their own "key holders"). A ``secagg-*`` key in
the run config is ignored with a warning. In a simulation (no node configuration but
``partition-id``) the directory comes from the environment variable
``SECAGG_FLOWER_SIMULATION_DIR`` and partition ``i`` acts as the roster's client
``i + 1``: one machine then holds every client's keys (a simulation, not a deployment).

**Global model check** (``secagg-model-check``). ``release`` (default): before the node
trains, the model Flower sent, flattened (:mod:`clients.flower.records`), must be the
secagg round's global model: round 1 the roster's initial model, round ``r`` the model
the key holders endorsed in the release of round ``r - 1`` (verified here, and again by
:class:`~clients.client.TrainingClient` after training). FedAvg sends exactly that model.
FedAdam and FedAvgM (with server momentum or learning rate) send a model computed from
it; for them the node must opt in with ``unchecked``, and is warned every round.

Security
--------
The upload is the native client's (:class:`~clients.client.TrainingClient.run_round`):
encrypted under the joint key after every key holder's endorsement was checked (a wrong
key raises :class:`~secagg.errors.InvalidKeyMaterial` before anything is encrypted),
signed with the client's roster key, stored durably, streamed to ``secagg serve`` over
mTLS as this roster client. Nothing of the update goes through Flower. ``unchecked``
re-opens the model-inconsistency attack: a malicious Flower server can send this node a
model of its own making and isolate this node's update in the aggregate; and the signed
``global_model_hash`` then names the secagg round's model, not the one trained from.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Context

from clients.client import TrainingClient
from clients.connection import verify_release
from clients.flower.records import (
    NODE_ADDRESS,
    NODE_CLIENT,
    NODE_DIR,
    NODE_MODEL_CHECK,
    SIMULATION_ENV,
    model_hash,
)
from clients.pending_upload import PendingUpload, StoredUpload
from secagg.encoding import F64
from secagg.errors import ConfigError, InvalidKeyMaterial, UnverifiedGlobalModel, WrongRound
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import Signed, UploadStatement
from secagg.rpc.transport import identity

log = logging.getLogger("flwr.secagg")  # shown in Flower's own log streams
_MODEL_CHECKS = ("release", "unchecked")
_NODE_KEYS = (NODE_DIR, NODE_CLIENT, NODE_ADDRESS, NODE_MODEL_CHECK)


@dataclass(frozen=True)
class NodeAnchor:
    """Where this node's trust comes from (see the module docstring)."""

    deployment: Path
    client: str
    address: str | None = None
    check_model: bool = True

    @classmethod
    def of(cls, context: Context) -> NodeAnchor:
        """The anchor in ``context.node_config`` (or the simulation's environment).

        Raises :class:`ConfigError` if neither names a deployment and a client.
        """
        node = context.node_config
        ignored = sorted(k for k in _NODE_KEYS if k in context.run_config)
        if ignored:
            log.warning(
                "run config %s ignored: the node's own configuration is its anchor", ignored
            )
        check = str(node.get(NODE_MODEL_CHECK, "release"))
        if check not in _MODEL_CHECKS:
            raise ConfigError(f"{NODE_MODEL_CHECK} must be one of {_MODEL_CHECKS}, not {check!r}")
        address = str(node[NODE_ADDRESS]) if NODE_ADDRESS in node else None
        if NODE_DIR in node:
            if NODE_CLIENT not in node:
                raise ConfigError(f"the node configuration has {NODE_DIR} but no {NODE_CLIENT}")
            directory, client = Path(str(node[NODE_DIR])), str(node[NODE_CLIENT])
        elif os.environ.get(SIMULATION_ENV) and "partition-id" in node:
            directory = Path(os.environ[SIMULATION_ENV])
            client = _simulated_client(directory, int(node["partition-id"]))
        else:
            raise ConfigError(
                f"this node has no secagg trust anchor: start it with --node-config "
                f"\"{NODE_DIR}='/path/to/deployment' {NODE_CLIENT}='c1'\" (or, in a "
                f"simulation, set {SIMULATION_ENV})"
            )
        return cls(directory, client, address, check == "release")


def _simulated_client(directory: Path, partition: int) -> str:
    from secagg.protocol.roster import load_roster

    clients = load_roster(directory).clients
    if not 0 <= partition < len(clients):
        raise ConfigError(f"partition {partition}: the roster has {len(clients)} clients")
    log.warning(
        "simulation: partition %d acts as roster client %s", partition, clients[partition].name
    )
    return clients[partition].name


class _Confirmed(PendingUpload):
    """The client's pending upload that remembers the last upload the server confirmed."""

    confirmed: Signed[UploadStatement] | None = None

    def confirm(self, upload: StoredUpload) -> None:
        """See :meth:`PendingUpload.confirm`."""
        super().confirm(upload)
        self.confirmed = upload.signed


class _TrainedUpdate:
    """A :class:`~clients.trainer.Trainer` whose training already happened in the
    ClientApp: it hands over that update after comparing the model it was trained from
    with the global model the native client verified (``received``; None: unchecked)."""

    def __init__(self, received: F64 | None, update: F64, weight: int) -> None:
        self.received, self.update, self.weight = received, update, weight

    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        """See :class:`~clients.trainer.Trainer`."""
        if self.received is not None and not np.array_equal(global_model, self.received):
            raise UnverifiedGlobalModel(
                f"round {round_number}: the node trained from another model than the released one"
            )
        return self.update, self.weight


class NodeSession:
    """One roster client's connection to ``secagg serve`` from a Flower node.

    The joint public key is kept per key id (fetched and checked again only when a round
    names another key).
    """

    def __init__(self, anchor: NodeAnchor) -> None:
        self.anchor = anchor
        me = identity(anchor.deployment, anchor.client)
        self.roster = me.roster
        self.roster.client(anchor.client)  # a client of the roster, not another role
        self.client = TrainingClient(
            me, _TrainedUpdate(None, np.zeros(1), 1), address=anchor.address
        )
        self.pending = _Confirmed(self.client.state, self.roster)
        self.client.pending = self.pending
        self.key: JointPublicKey | None = None
        self.lock = threading.Lock()

    def collecting_round(self, flower_round: int | None) -> pb.RoundInfo:
        """The secagg round this node uploads to: collecting, the Flower round, not done."""
        conn = self.client.conn
        info: pb.RoundInfo = conn.call(conn.stub.GetRound, pb.Empty())
        if info.state != pb.COLLECTING or (flower_round not in (None, info.round)):
            raise WrongRound(
                f"Flower round {flower_round}: secagg serve is in round {info.round}, state "
                f"{pb.RoundState.Name(info.state)}; the Flower and secagg rounds must match"
            )
        if str(info.round) in self.pending.done():
            raise WrongRound(f"{self.anchor.client} already uploaded in round {info.round}")
        return info

    def check_model(self, info: pb.RoundInfo, model: F64) -> None:
        """``model`` is the round's verified global model (see the module docstring).

        Raises :class:`UnverifiedGlobalModel`; :class:`WrongRound` if the served release
        (validly endorsed) is not round ``r - 1``'s; and what :func:`verify_release` raises.
        """
        if not self.anchor.check_model:
            log.warning(
                "%s: round %d: secagg-model-check=unchecked: the model Flower sent is NOT "
                "checked against the key holders' release",
                self.anchor.client,
                info.round,
            )
            return
        if info.round == 1:
            expected = self.roster.initial_model_hash
        else:
            conn = self.client.conn
            release = conn.call(conn.stub.GetRelease, pb.ReleaseQuery(round=info.round - 1))
            statement = verify_release(release, self.roster)
            if statement.round != info.round - 1:
                raise WrongRound(
                    f"round {info.round}: asked for round {info.round - 1}'s release, "
                    f"got round {statement.round}'s"
                )
            expected = statement.model_hash
        if model_hash(info.round, model) != expected:
            raise UnverifiedGlobalModel(
                f"round {info.round}: the model Flower sent is not the secagg round's global "
                "model (the roster's initial model, or the key holders' last release); "
                "FedAdam/FedAvgM need the node option secagg-model-check='unchecked'"
            )

    def joint_key(self, info: pb.RoundInfo) -> JointPublicKey:
        """The round's joint key, endorsed by every key holder (cached per key id)."""
        if self.key is not None and self.key.id_bytes == info.public_key_id:
            return self.key
        key = self.client.endorsed_public_key()  # endorsements checked, no epoch rollback
        if key.id_bytes != info.public_key_id:
            raise InvalidKeyMaterial("the round names another key than the endorsed one served")
        self.key = key
        return key

    def upload(
        self, info: pb.RoundInfo, key: JointPublicKey, *, model: F64, update: F64, weight: int
    ) -> Signed[UploadStatement]:
        """Encrypt, sign, store and send ``update`` as the native client does; the signed
        statement the server confirmed."""
        received = model if self.anchor.check_model else None
        self.client.trainer = _TrainedUpdate(received, update, weight)
        self.pending.confirmed = None
        self.client.run_round(info, key)
        if self.pending.confirmed is None:  # pragma: no cover - run_round confirms or raises
            raise WrongRound(f"round {info.round}: the upload was not confirmed")
        return self.pending.confirmed


_SESSIONS: dict[NodeAnchor, NodeSession] = {}
_SESSIONS_LOCK = threading.Lock()


def session(anchor: NodeAnchor) -> NodeSession:
    """The process's session for ``anchor`` (one connection and key cache per anchor)."""
    with _SESSIONS_LOCK:
        if anchor not in _SESSIONS:
            _SESSIONS[anchor] = NodeSession(anchor)
        return _SESSIONS[anchor]
