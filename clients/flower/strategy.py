"""The Strategy mixin: a Flower strategy whose aggregate is secagg's released model.

``SecAggStrategyMixin`` goes first in the bases of any strategy derived from Flower's
``FedAvg`` (``FedAvg``, ``FedAvgM``, ``FedAdam``, ``FedOpt``'s family)::

    class MyFedAdam(SecAggStrategyMixin, FedAdam): ...
    strategy = MyFedAdam(secagg_dir="/path/dep", eta=0.1)

Round ``r`` of the Flower run is secagg round ``r`` (:mod:`clients.flower.released`).
``configure_train`` waits for that round to collect and checks that the model sent is the
round's global model as this strategy verified it itself (FedAvg: see
``check_global_model``): round 1 the roster's initial model, round ``r`` the model of the
release of round ``r - 1`` it verified (never the hash ``secagg serve`` states).
``aggregate_train`` checks each reply (a client-signed contribution to this round, no
plaintext arrays, the signed weight) and *skips* a bad one with one error line in the log
(naming the node and the reason), as it skips a second contribution of the same client;
it needs the roster's ``min_contributors`` valid contributions. It then waits for the
round's release, verifies it, and hands the released weighted mean to the base
strategy's update rule as the one reply it aggregates (weight 1: ``x * 1 / 1`` is exact):
FedAvg takes it; FedAvgM and FedAdam compute their pseudo-gradient from it and the model
they sent. Integer arrays keep the model's value (the integer policy of
:mod:`clients.flower.records`). The metrics are the base strategy's aggregate of the
valid replies' metrics.

Security
--------
The Flower server never sees an individual update: it receives signed statements; the
ciphertexts go from each node to ``secagg serve``; the key holders decrypt only the
aggregate their policy allows; the mixin believes a release only with ``t`` endorsements.
The released mean covers every upload secagg accepted in the round, which may include
roster clients that are not Flower nodes. The release does not depend on the replies, so
one bad reply (a malicious node, a misconfigured one) does not stop the Flower run: it is
skipped and logged. A reply with plaintext arrays is skipped and logged as a leak
(:class:`~secagg.errors.UpdateTampered`): a mod after the SecAgg mod added them, or the
SecAgg mod is missing, and the update has already leaked to this server. Text a node
controls (its error reason) is logged as one bounded printable ASCII line. The replies'
metrics are plaintext and not authenticated beyond the signed weight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, Result, Strategy
from flwr.serverapp.strategy.fedopt import FedOpt

from clients.flower.records import ModelLayout, model_hash, signed_contribution
from clients.flower.released import ReleasedModels
from secagg import constants as C
from secagg.encoding import F64
from secagg.errors import (
    ConfigError,
    DuplicateContributor,
    SecAggError,
    TooFewContributors,
    UnverifiedGlobalModel,
    UpdateTampered,
    WrongRound,
)
from secagg.protocol.statements import Signed, UploadStatement

log = logging.getLogger("flwr.secagg")  # shown in Flower's own log streams
_LOG_TEXT_CHARS = 200  # node-controlled text in the log: at most this many characters


def _printable(text: str | None) -> str:
    """Node-controlled ``text`` as one bounded line of printable ASCII for the log.

    Security
    --------
    Newlines (forged log lines), terminal escapes and bidirectional controls become
    ``?``; at most :data:`_LOG_TEXT_CHARS` characters are kept.
    """
    head = (text or "")[: _LOG_TEXT_CHARS + 1]
    line = "".join(c if c.isascii() and c.isprintable() else "?" for c in head)
    return line if len(line) <= _LOG_TEXT_CHARS else line[:_LOG_TEXT_CHARS] + "..."


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
        # (round, hash) of the global model this strategy verified itself: round 1 the
        # roster's initial model, round r + 1 the model of round r's verified release
        self._verified: tuple[int, bytes] = (1, self.roster.initial_model_hash)

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
        base strategy sample nodes; refuse a sample too small for the secagg policy.

        The model is checked (``check_global_model``) against the hash this strategy
        verified itself: the roster's initial model in round 1, the model of the release
        of ``server_round - 1`` it verified in ``aggregate_train`` (raises
        :class:`UnverifiedGlobalModel` if it verified no such release, or the model
        differs).
        """
        self.secagg.wait_collecting(server_round, timeout=self.release_timeout)
        if self.check_global_model:
            verified_round, expected = self._verified
            if verified_round != server_round:
                raise UnverifiedGlobalModel(
                    f"round {server_round}: this strategy verified no release of round "
                    f"{server_round - 1} (last verified: round {verified_round}'s model)"
                )
            self._check_model(server_round, arrays, expected)
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

        Each reply must carry a contribution to ``server_round`` signed by a roster client,
        no plaintext arrays, and one MetricRecord with the signed weight. A reply that
        does not (malformed or too large a record, a bad signature, an unknown client,
        another round, plaintext arrays, another weight) and a second contribution of a
        client are skipped, each with one error line in the log naming the node and the
        reason; an error reply is logged as a warning. The release does not depend on
        the replies: it covers the uploads ``secagg serve`` accepted. Metrics that do not
        aggregate (e.g. lists of different lengths) are logged and dropped (``None``).

        Raises
        ------
        WrongRound
            ``configure_train`` was not called for this round.
        TooFewContributors
            Fewer valid contributions than the roster's ``min_contributors`` remain.
        ReleaseTimeout, SignatureInvalid, EndorsementMissing, WrongRound
            The release did not come in time, or does not verify as this round's.
        """
        sent = self._global
        if sent is None:
            raise WrongRound(f"round {server_round}: configure_train was not called")
        valid: dict[str, Message] = {}  # by the client that signed the contribution
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                reason = _printable(reply.error.reason)
                log.warning("round %d: node %d failed: %s", server_round, node, reason)
                continue
            try:
                client = self._contribution(server_round, reply).statement.client_id
                if client in valid:
                    raise DuplicateContributor(f"a second contribution of client {client}")
            except SecAggError as exc:
                reason = _printable(f"{type(exc).__name__}: {exc}")
                log.error("round %d: node %d: reply skipped: %s", server_round, node, reason)
                continue
            valid[client] = reply
        need = self.roster.policy.min_contributors
        if len(valid) < need:
            raise TooFewContributors(
                f"round {server_round}: {len(valid)} valid contribution(s); the secagg "
                f"policy needs {need}"
            )
        log.info(
            "round %d: %d signed uploads (%s); waiting for secagg's release (the base "
            "strategy then aggregates it as its one result)",
            server_round,
            len(valid),
            ", ".join(sorted(valid)),
        )
        release = self.secagg.wait_release(server_round, timeout=self.release_timeout)
        self._verified = (server_round + 1, release.statement.model_hash)
        arrays = self.aggregate_released(server_round, release.model, sent)
        replies_content = [reply.content for reply in valid.values()]
        try:  # plaintext numbers the nodes chose: they never stop the run
            metrics = self.train_metrics_aggr_fn(replies_content, self.weighted_by_key)
        except (ValueError, TypeError, KeyError) as exc:
            reason = _printable(f"{type(exc).__name__}: {exc}")
            log.error("round %d: the replies' metrics do not aggregate: %s", server_round, reason)
            return arrays, None
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
        """A reply's verified contribution to ``server_round`` (no plaintext, signed weight).

        Raises :class:`UpdateTampered`, :class:`WrongRound`, and what
        :func:`~clients.flower.records.signed_contribution` raises.
        """
        if reply.content.array_records:
            raise UpdateTampered(
                "the reply carries plaintext arrays: this node's update leaked to this "
                "Flower server (a mod after the SecAgg mod, or no SecAgg mod)"
            )
        signed = signed_contribution(reply, self.roster)
        if signed.statement.round != server_round:
            raise WrongRound(
                f"a reply to round {server_round} signs round {signed.statement.round}"
            )
        records = list(reply.content.metric_records.values())
        weight = records[0].get(self.weighted_by_key) if len(records) == 1 else None
        if weight != signed.statement.weight:  # what the base strategy weighs metrics by
            raise UpdateTampered(
                f"{signed.statement.client_id}'s reply needs one MetricRecord with its signed "
                f"weight {signed.statement.weight} as {self.weighted_by_key!r}; it says "
                f"{weight!r} ({len(records)} MetricRecords)"
            )
        return signed

    def _check_model(self, server_round: int, arrays: ArrayRecord, expected: bytes) -> None:
        layout = ModelLayout.of(arrays)
        layout.check_length(self.roster)
        if model_hash(server_round, layout.flatten(arrays)) != expected:
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
