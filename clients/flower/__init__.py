"""Use secagg from Flower (>= 1.42): one client Mod and one Strategy mixin, no change to Flower.

Install with ``pip install -e '.[flower]'`` from the checkout. A runnable app is in ``example/``.

Design
------
*Client side* (:mod:`clients.flower.mod`): ``secagg_mod`` wraps a ClientApp whose train
function is sealed with :func:`sealed_train`. For each train message it takes the node's
trust anchor from the **node's** configuration (``--node-config "secagg-dir='...'
secagg-client='c1'"``; never the run config, which comes from whoever calls ``flwr
run``), checks that ``secagg serve`` collects the same round and that the model Flower
sent is the round's verified global model, checks the joint key's endorsements, lets the
ClientApp train, checks that no mod changed the model or the update (the seal), flattens
the update in a fixed order (sorted keys, C order, float64; integer arrays are not
aggregated: :mod:`clients.flower.records`), and encrypts, signs and uploads it with the
native client's code (:class:`clients.client.TrainingClient`). Its reply is a new
message with the signed contribution and the ClientApp's metrics; the received
``RecordDict`` is never mutated.

*Server side* (:mod:`clients.flower.strategy`): ``SecAggStrategyMixin`` (and
``SecAggFedAvg``, ``SecAggFedAvgM``, ``SecAggFedAdam``) maps Flower round ``r`` to secagg
round ``r``, verifies the signed contributions in the replies, waits for ``secagg
serve``'s release of the round, verifies it (``t`` key holders' endorsements), and hands
the released weighted mean to the base strategy's update rule.

*Where the ciphertext goes*: each node uploads it directly to ``secagg serve`` over mTLS
as its roster client (option (a)); the Flower reply carries only the signed statement
(round, client, ciphertext hash, weight). Relaying through Flower (option (b)) was not
chosen: the server authenticates an upload by the uploader's roster certificate and the
signature by the same client, which a relay would have to hold or impersonate, and the
strategy would hold every ciphertext in memory (``Strategy.start`` keeps all replies)
instead of ``secagg serve`` folding each upload as it streams in. (a) needs no change to
``secagg serve``, and the Flower server learns nothing but the statements.

Security
--------
Assumed: the Flower server and ``secagg serve`` are malicious and collude with up to
``t - 1`` key holders. They learn no individual update: the update leaves the node only
encrypted under a joint key every key holder endorsed, and only a release that ``t`` key
holders endorsed is believed. Key holders stay separate processes, never Flower nodes.
FedAvg lets every node verify that it trains from the released model; FedAdam and
FedAvgM need the node's explicit ``secagg-model-check='unchecked'``, which re-opens
model-inconsistency attacks (:mod:`clients.flower.node`). Not covered: the ClientApp's
own code (it comes with the Flower app; a node must trust it), metrics (sent in
plaintext), the DP marker (Flower uploads sign ``dp = false``, ε 0).
"""

from __future__ import annotations

from clients.flower.mod import WEIGHT_KEY, secagg_mod
from clients.flower.records import (
    NODE_ADDRESS,
    NODE_CLIENT,
    NODE_DIR,
    NODE_MODEL_CHECK,
    SIMULATION_ENV,
    ModelLayout,
)
from clients.flower.seal import sealed_train
from clients.flower.strategy import (
    SecAggFedAdam,
    SecAggFedAvg,
    SecAggFedAvgM,
    SecAggStrategyMixin,
)

__all__ = [
    "NODE_ADDRESS",
    "NODE_CLIENT",
    "NODE_DIR",
    "NODE_MODEL_CHECK",
    "SIMULATION_ENV",
    "WEIGHT_KEY",
    "ModelLayout",
    "SecAggFedAdam",
    "SecAggFedAvg",
    "SecAggFedAvgM",
    "SecAggStrategyMixin",
    "sealed_train",
    "secagg_mod",
]
