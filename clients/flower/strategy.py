"""The Strategy mixin: a Flower strategy whose aggregate is secagg's released model.

``SecAggStrategyMixin`` goes first in the bases of any strategy derived from Flower's
``FedAvg`` (``FedAvg``, ``FedAvgM``, ``FedAdam``, ``FedOpt``'s family)::

    class MyFedAdam(SecAggStrategyMixin, FedAdam): ...
    strategy = MyFedAdam(secagg_dir="/path/dep", eta=0.1)

Round ``r`` of the Flower run is secagg round ``r`` (:mod:`clients.flower.released`).
``configure_train`` waits for that round to collect and checks that the model sent is the
round's global model (FedAvg: see ``check_global_model``); ``aggregate_train`` checks the
replies (client-signed contributions, no plaintext arrays), waits for the round's
release, verifies it, and hands the released weighted mean to the base strategy's update
rule as the one reply it aggregates (weight 1: ``x * 1 / 1`` is exact): FedAvg takes it;
FedAvgM and FedAdam compute their pseudo-gradient from it and the model they sent.
Integer arrays keep the model's value (the integer policy of :mod:`clients.flower.records`).
The metrics are the base strategy's aggregate of the replies' metrics.

Security
--------
The Flower server never sees an individual update: it receives signed statements; the
ciphertexts go from each node to ``secagg serve``; the key holders decrypt only the
aggregate their policy allows; the mixin believes a release only with ``t`` endorsements.
The released mean covers every upload secagg accepted in the round, which may include
roster clients that are not Flower nodes. A reply with plaintext arrays is refused
(:class:`~secagg.errors.UpdateTampered`): a mod after the SecAgg mod added them, or the
SecAgg mod is missing, and the update has already leaked to this server.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, Result, Strategy
from flwr.serverapp.strategy.fedopt import FedOpt

from clients.flower.records import ModelLayout, signed_contribution
from clients.flower.released import ReleasedModels
from secagg import constants as C
from secagg.encoding import F64
from secagg.errors import (
    ConfigError,
    DuplicateContributor,
    TooFewContributors,
    UnverifiedGlobalModel,
    UpdateTampered,
    WrongRound,
)
from secagg.protocol.model_blob import encode_model
from secagg.protocol.statements import Signed, UploadStatement

log = logging.getLogger("flwr.secagg")  # shown in Flower's own log streams


class SecAggStrategyMixin(Strategy):
    """Aggregate through secagg (see the module docstring).

    Parameters
    ----------
    secagg_dir
        The deployment directory (its roster is what every release is checked against).
    secagg_party
        The roster name the connection to ``secagg serve`` presents (default: the operator).
    secagg_address
        Where to reach ``secagg serve`` (default: the roster's address).
    check_global_model
        Check that the model sent in round ``r`` is secagg's global model of round ``r``.
        Default: only for strategies that send the released model (FedAvg, FedAvgM
        without server optimization); the nodes must match it (``secagg-model-check``).
    release_timeout
        Seconds to wait for a round's release (default: the roster's round timeout plus
        :data:`~secagg.constants.FLOWER_RELEASE_GRACE_SECONDS`).
    """

    # Set by FedAvg (the base this mixin is combined with).
    arrayrecord_key: str
    weighted_by_key: str
    train_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord]

    def __init__(
        self,
        *args: Any,
        secagg_dir: Path | str,
        secagg_party: str = "admin",
        secagg_address: str | None = None,
        check_global_model: bool | None = None,
        release_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.secagg = ReleasedModels(Path(secagg_dir), secagg_party, secagg_address)
        self.roster = self.secagg.roster
        policy = self.roster.policy
        self.check_global_model = (
            self._sends_release() if check_global_model is None else check_global_model
        )
        self.release_timeout = release_timeout or (
            policy.round_timeout_seconds + C.FLOWER_RELEASE_GRACE_SECONDS
        )
        self._global: ArrayRecord | None = None  # the model sent in the round in progress

    def _sends_release(self) -> bool:
        """Whether the base strategy's next model is the released mean itself."""
        if isinstance(self, FedOpt):
            return False
        return not (isinstance(self, FedAvgM) and self.server_opt)

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Flower's ``Strategy.start``, after checking the run fits the deployment: at most
        the roster's rounds, from the roster's initial model."""
        if num_rounds > self.roster.policy.rounds:
            raise ConfigError(
                f"{num_rounds} Flower rounds; the deployment allows {self.roster.policy.rounds}"
            )
        self._check_model(1, initial_arrays, self.roster.initial_model_hash)
        return super().start(
            grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config, evaluate_fn
        )

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Wait for secagg's round ``server_round`` to collect, check the model, then let the
        base strategy sample nodes; refuse a sample too small for the secagg policy."""
        info = self.secagg.wait_collecting(server_round, timeout=self.release_timeout)
        if self.check_global_model:
            self._check_model(server_round, arrays, info.global_model_hash)
        self._global = ArrayRecord({k: arrays[k] for k in arrays})
        sampled = super().configure_train(server_round, arrays, config, grid)  # type: ignore[safe-super]
        messages = list(sampled)
        need = self.roster.policy.min_contributors
        if 0 < len(messages) < need:
            raise ConfigError(
                f"round {server_round}: {len(messages)} nodes sampled; the secagg policy "
                f"releases only aggregates of at least {need} uploads"
            )
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The base strategy's update from secagg's verified release of ``server_round``.

        Raises
        ------
        UpdateTampered
            A reply carries plaintext arrays, or a weight other than the signed one.
        TooFewContributors
            No valid reply (secagg's round cannot be released for Flower).
        ReleaseTimeout, SignatureInvalid, EndorsementMissing
            The release did not come in time, or does not verify.
        """
        sent = self._global
        if sent is None:
            raise WrongRound(f"round {server_round}: configure_train was not called")
        valid = []
        for reply in replies:
            if reply.has_error():
                log.warning(
                    "round %d: node %d failed: %s",
                    server_round,
                    reply.metadata.src_node_id,
                    reply.error.reason,
                )
            else:
                valid.append(reply)
        contributions = [self._contribution(server_round, reply) for reply in valid]
        clients = {c.statement.client_id for c in contributions}
        if len(clients) != len(contributions):
            raise DuplicateContributor(f"round {server_round}: a client replied twice")
        if not contributions:
            raise TooFewContributors(f"round {server_round}: no node uploaded")
        log.info(
            "round %d: %d signed uploads (%s); waiting for secagg's release (the base "
            "strategy then aggregates it as its one result)",
            server_round,
            len(clients),
            ", ".join(sorted(clients)),
        )
        mean = self.secagg.wait_release(server_round, timeout=self.release_timeout)
        arrays = self.aggregate_released(server_round, mean, sent)
        metrics = self.train_metrics_aggr_fn([r.content for r in valid], self.weighted_by_key)
        return arrays, metrics

    def aggregate_released(
        self, server_round: int, mean: F64, sent: ArrayRecord
    ) -> ArrayRecord | None:
        """The base strategy's aggregate of one reply carrying the released ``mean``.

        ``sent`` is the model this round sent (its layout and integer arrays); the base
        strategy's own state (FedOpt's and FedAvgM's current arrays) comes from its
        ``configure_train`` of the same round.
        """
        layout = ModelLayout.of(sent)
        released = layout.unflatten(mean, sent)
        content = RecordDict(
            {
                self.arrayrecord_key: released,
                "metrics": MetricRecord({self.weighted_by_key: 1}),
            }
        )
        # from no node: a message as FedAvg builds its own (the ServerApp's task identity)
        reply = Message(content, 0, MessageType.TRAIN, group_id=str(server_round))
        arrays, _ = super().aggregate_train(server_round, [reply])  # type: ignore[safe-super]
        if arrays is not None:
            for spec in layout.specs:
                if not spec.floating:
                    arrays[spec.key] = sent[spec.key]  # the integer policy
        return arrays

    def _contribution(self, server_round: int, reply: Message) -> Signed[UploadStatement]:
        """A reply's verified contribution to ``server_round`` (no plaintext, signed weight)."""
        if reply.content.array_records:
            raise UpdateTampered(
                f"round {server_round}: node {reply.metadata.src_node_id} sent plaintext "
                "arrays (a mod after the SecAgg mod, or no SecAgg mod)"
            )
        signed = signed_contribution(reply, self.roster)
        if signed.statement.round != server_round:
            raise WrongRound(
                f"a reply to round {server_round} signs round {signed.statement.round}"
            )
        for record in reply.content.metric_records.values():
            weight = record.get(self.weighted_by_key)
            if weight is not None and weight != signed.statement.weight:
                raise UpdateTampered(
                    f"round {server_round}: {signed.statement.client_id}'s reply says weight "
                    f"{weight}, its signed upload {signed.statement.weight}"
                )
        return signed

    def _check_model(self, server_round: int, arrays: ArrayRecord, expected: bytes) -> None:
        layout = ModelLayout.of(arrays)
        layout.check_length(self.roster)
        digest = hashlib.sha256(encode_model(server_round, layout.flatten(arrays))).digest()
        if digest != expected:
            raise UnverifiedGlobalModel(
                f"round {server_round}: the model to send is not secagg's global model of the "
                "round (round 1: secagg init --initial-model; later: the last release)"
            )


class SecAggFedAvg(SecAggStrategyMixin, FedAvg):
    """Flower's FedAvg, aggregated by secagg: the next model is the released mean."""


class SecAggFedAvgM(SecAggStrategyMixin, FedAvgM):
    """Flower's FedAvgM, aggregated by secagg: the pseudo-gradient is taken from the
    released mean (nodes need ``secagg-model-check='unchecked'`` with server momentum)."""


class SecAggFedAdam(SecAggStrategyMixin, FedAdam):
    """Flower's FedAdam, aggregated by secagg: the pseudo-gradient is taken from the
    released mean (nodes need ``secagg-model-check='unchecked'``)."""
