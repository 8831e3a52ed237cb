"""The client Mod: a Flower train reply becomes an encrypted, signed secagg upload.

For a train message the mod (1) reads the node's trust anchor (:mod:`clients.flower.node`),
(2) checks that ``secagg serve`` collects the Flower round and that the model Flower
sent is the round's verified global model, (3) gets the joint key, checked against every
key holder's endorsement, (4) calls the ClientApp in a seal (:mod:`clients.flower.seal`),
(5) checks that no mod changed the model or the update, flattens the update
(:mod:`clients.flower.records`) and uploads it as the native client does, and (6)
answers with a *new* reply that carries only the signed contribution and the ClientApp's
metrics. Other messages (evaluate, query) pass through untouched.

Use it as the ClientApp's mod, and seal the train function::

    app = ClientApp(mods=[secagg_mod])

    @app.train()
    @sealed_train
    def train(msg: Message, context: Context) -> Message: ...

Security
--------
The mod never mutates the message it receives (Flower hands the same ``RecordDict`` to
every node of a round) nor the ClientApp's reply: it builds a new one. The weight is
the reply's ``num-examples`` metric (:data:`WEIGHT_KEY`), signed in the statement; the
metrics themselves travel to the Flower server in plaintext, so put nothing in them that
must stay private. Any failure raises: Flower turns it into an error reply, and the
update never leaves the node unencrypted.
"""

from __future__ import annotations

import logging

from flwr.app import Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from clients.flower.node import NodeAnchor, session
from clients.flower.records import (
    REPLY_RECORD,
    ModelLayout,
    arrays_digest,
    as_numpy,
    contribution_record,
    only_arrays,
)
from clients.flower.seal import open_seal
from secagg.errors import ConfigError

log = logging.getLogger("flwr.secagg")  # shown in Flower's own log streams

#: The reply metric that is the client's weight (Flower's convention for FedAvg).
WEIGHT_KEY = "num-examples"


def secagg_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """The SecAgg client mod (see the module docstring).

    Raises
    ------
    ConfigError
        No trust anchor in the node configuration, a model of the wrong length, a train
        function that is not sealed, a missing or non-integer weight.
    WrongRound
        ``secagg serve`` does not collect this Flower round (or this client uploaded).
    UnverifiedGlobalModel
        The model Flower sent is not the round's verified global model.
    InvalidKeyMaterial, SignatureInvalid
        The served joint key is not endorsed by every key holder of the roster.
    UpdateTampered
        A mod between this one and the sealed train function changed the model or the
        update.
    """
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    node = session(NodeAnchor.of(context))
    arrays = as_numpy(only_arrays(msg.content))  # deserialised once
    layout = ModelLayout.of(arrays)
    layout.check_length(node.roster)
    model = layout.flatten(arrays)
    received = arrays_digest(arrays)
    with node.lock:
        info = node.collecting_round(_flower_round(msg))
        node.check_model(info, model)
        key = node.joint_key(info)
        with open_seal() as seal:
            reply = call_next(msg, context)
        if reply.has_error():
            return reply
        update_arrays = as_numpy(only_arrays(reply.content))
        seal.check(received, arrays_digest(update_arrays))
        update = layout.flatten(update_arrays)
        metrics = {name: record.copy() for name, record in reply.content.metric_records.items()}
        weight = _weight(metrics)
        signed = node.upload(info, key, model=model, update=update, weight=weight)
    log.info("%s: round %d: uploaded (weight %d)", node.anchor.client, info.round, weight)
    content = RecordDict({REPLY_RECORD: contribution_record(signed), **metrics})
    return Message(content, reply_to=msg)


def _flower_round(msg: Message) -> int | None:
    """The round the Flower strategy says this is (``server-round``), if it says."""
    for record in msg.content.config_records.values():
        value = record.get("server-round")
        if isinstance(value, int):
            return value
    return None


def _weight(metrics: dict[str, MetricRecord]) -> int:
    """The client's weight: the ``num-examples`` metric of its reply, a whole number (not
    a bool: ``True`` is no count of examples)."""
    for record in metrics.values():
        value = record.get(WEIGHT_KEY)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if float(value).is_integer() and value > 0:
            return int(value)
    raise ConfigError(f"the train reply needs a positive whole-number {WEIGHT_KEY!r} metric")
