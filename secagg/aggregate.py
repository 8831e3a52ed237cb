"""Weighted aggregation on ciphertexts: ``sum_i w_i * ct_i`` with integer weights.

Integer weights (sample counts) are applied exactly. Real-valued weights ``alpha_i``
become ``round(alpha_i * weight_scale)`` with a power-of-two ``weight_scale`` chosen so
that the integer weights sum to at most ``Parameters.max_total_weight``; the relative
error of each weight is then at most ``Parameters.weight_resolution`` of the total.

:class:`Aggregator` streams: memory is O(model), not O(clients x model). It keeps two
uint64 accumulators, the low and high 32 bits of every residue times its weight, which
cannot overflow while the total weight stays below 2^31; :meth:`Aggregator.result`
reduces them modulo the primes once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from secagg import constants as C
from secagg._internal.envelope import digest_of, parse, require
from secagg._internal.modarith import reduce_wide
from secagg.ciphertext import EncryptedVector
from secagg.errors import InvalidCiphertext, WeightBudgetExceeded
from secagg.params import Parameters
from secagg.proto import core_pb2

_LOW32 = np.uint64(0xFFFFFFFF)


@dataclass(frozen=True, eq=False)
class EncryptedAggregate:
    """A weighted sum of encrypted vectors and what a decryptor needs to scale it."""

    vector: EncryptedVector
    total_weight: int
    weight_scale: float
    contributors: int

    @property
    def params(self) -> Parameters:
        """Parameters of the underlying ciphertexts."""
        return self.vector.params

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 binding the ciphertext digest and the weight metadata."""
        return aggregate_digest(self.vector.digest, self)

    def to_bytes(self) -> bytes:
        """Serialize as an ``EncryptedAggregate`` protobuf message."""
        return aggregate_message(self.vector.to_message(), self, self.digest).SerializeToString()

    @classmethod
    def from_bytes(
        cls, blob: bytes, params: Parameters, *, max_bytes: int | None = None
    ) -> EncryptedAggregate:
        """Parse and validate; raises :class:`InvalidCiphertext`."""
        msg = parse(core_pb2.EncryptedAggregate, blob, InvalidCiphertext, max_bytes)
        require(msg.HasField("vector"), InvalidCiphertext, "aggregate has no vector")
        vector = EncryptedVector.from_message(msg.vector, params)
        check_aggregate_fields(msg, params)
        agg = cls(vector, msg.total_weight, msg.weight_scale, msg.contributors)
        require(agg.digest == msg.digest, InvalidCiphertext, "aggregate digest mismatch")
        return agg


class WeightMeta(Protocol):
    """The weight fields an aggregate (whole or head) carries beside its vector."""

    @property
    def total_weight(self) -> int: ...

    @property
    def weight_scale(self) -> float: ...

    @property
    def contributors(self) -> int: ...


def aggregate_digest(vector_digest: bytes, meta: WeightMeta) -> bytes:
    """The digest of an aggregate: its vector's digest and its weight fields."""
    return digest_of(
        C.DOMAIN_AGGREGATE, vector_digest, meta.total_weight, meta.weight_scale, meta.contributors
    )


def aggregate_message(
    vector: core_pb2.EncryptedVector, meta: WeightMeta, digest: bytes
) -> core_pb2.EncryptedAggregate:
    """The protobuf form of an aggregate whose vector (whole or head) is ``vector``."""
    return core_pb2.EncryptedAggregate(
        format_version=C.FORMAT_VERSION,
        vector=vector,
        total_weight=meta.total_weight,
        weight_scale=meta.weight_scale,
        contributors=meta.contributors,
        digest=digest,
    )


def check_aggregate_fields(msg: core_pb2.EncryptedAggregate, params: Parameters) -> None:
    """Check an aggregate message's weight fields (whole or head); raises InvalidCiphertext."""
    require(
        1 <= msg.total_weight <= params.max_total_weight,
        InvalidCiphertext,
        "aggregate total weight outside the parameter budget",
    )
    require(
        math.isfinite(msg.weight_scale) and msg.weight_scale > 0,
        InvalidCiphertext,
        "aggregate weight scale must be positive and finite",
    )
    require(msg.contributors >= 1, InvalidCiphertext, "aggregate has no contributors")


def check_weight_scale(weight_scale: float) -> None:
    """Raise :class:`WeightBudgetExceeded` unless the weight scale is positive and finite."""
    if not (math.isfinite(weight_scale) and weight_scale > 0):
        raise WeightBudgetExceeded("weight_scale must be positive and finite")


def integer_weight(weight: float, scale: float) -> int:
    """``round(weight * scale)`` after checking the weight is finite and non-negative."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
        raise WeightBudgetExceeded(f"weight must be a number, got {type(weight).__name__}")
    if not math.isfinite(float(weight)) or weight < 0:
        raise WeightBudgetExceeded(f"weight must be finite and non-negative, got {weight}")
    return round(float(weight) * scale) if scale != 1.0 else _exact_int(weight)


def _exact_int(weight: float) -> int:
    if isinstance(weight, (int, np.integer)):
        return int(weight)
    if float(weight).is_integer():
        return int(weight)
    raise WeightBudgetExceeded(f"weight {weight} is not an integer; use a weight_scale")


def weight_scale_for(params: Parameters, weights: Sequence[float]) -> float:
    """1 for integer weights; else the power of two that fits real weights in the budget."""
    if all(
        isinstance(w, (int, np.integer)) or (isinstance(w, float) and w.is_integer())
        for w in weights
    ):
        return 1.0
    total = math.fsum(float(w) for w in weights)
    if not math.isfinite(total) or total <= 0:
        raise WeightBudgetExceeded("real-valued weights must be finite and sum to more than 0")
    room = params.max_total_weight - len(weights)
    if room <= 0:
        raise WeightBudgetExceeded("too many contributors for the weight budget")
    return 2.0 ** math.floor(math.log2(room / total))


class Aggregator:
    """Streaming weighted sum of encrypted vectors (the server's side).

    Parameters
    ----------
    params, public_key_id, length
        Every added vector must match these.
    weight_scale
        Integer weight = ``round(weight * weight_scale)``; 1 (default) for counts.
    """

    def __init__(
        self, params: Parameters, *, public_key_id: bytes, length: int, weight_scale: float = 1.0
    ) -> None:
        check_weight_scale(weight_scale)
        self.params = params
        self.public_key_id = public_key_id
        self.length = length
        self.weight_scale = weight_scale
        self.total_weight = 0
        self.contributors = 0
        count = -(-length // params.poly_modulus_degree)
        shape = (count, 2, len(params.data_primes), params.poly_modulus_degree)
        self._low = np.zeros(shape, dtype=np.uint64)
        self._high = np.zeros(shape, dtype=np.uint64)
        self._scratch = np.empty(shape, dtype=np.uint64)

    def add(self, vector: EncryptedVector, weight: float = 1) -> int:
        """Add ``weight * vector``; returns the integer weight applied.

        Raises
        ------
        InvalidCiphertext
            If the vector does not match the aggregator (parameters, key, length).
        WeightBudgetExceeded
            If the weight is invalid or the total would exceed the budget. Nothing is
            added in that case.
        """
        if vector.params.id_bytes != self.params.id_bytes:
            raise InvalidCiphertext("vector is for other parameters")
        if vector.public_key_id != self.public_key_id:
            raise InvalidCiphertext("vector is encrypted under another public key")
        if vector.length != self.length:
            raise InvalidCiphertext(f"vector has length {vector.length}, expected {self.length}")
        w = integer_weight(weight, self.weight_scale)
        if self.total_weight + w > self.params.max_total_weight:
            raise WeightBudgetExceeded(
                f"total weight {self.total_weight + w} would exceed the budget of "
                f"{self.params.max_total_weight} (Parameters.max_total_weight)"
            )
        if w:
            ww = np.uint64(w)
            np.bitwise_and(vector.residues, _LOW32, out=self._scratch)
            self._scratch *= ww
            self._low += self._scratch
            np.right_shift(vector.residues, np.uint64(32), out=self._scratch)
            self._scratch *= ww
            self._high += self._scratch
            self.total_weight += w
            self.contributors += 1
        return w

    def result(self) -> EncryptedAggregate:
        """The aggregate so far; raises :class:`WeightBudgetExceeded` if the total weight is 0."""
        if self.total_weight == 0:
            raise WeightBudgetExceeded("total weight is zero: nothing to aggregate")
        out = np.empty_like(self._low)
        for j, q in enumerate(self.params.data_primes):
            out[:, :, j] = reduce_wide(self._high[:, :, j], self._low[:, :, j], 32, q)
        vector = EncryptedVector(self.params, self.public_key_id, self.length, out)
        return EncryptedAggregate(vector, self.total_weight, self.weight_scale, self.contributors)


def aggregate(
    vectors: Sequence[EncryptedVector], weights: Sequence[float] | None = None
) -> EncryptedAggregate:
    """Weighted sum of encrypted vectors, computed on ciphertexts only.

    ``weights`` default to 1 each. Integer weights (sample counts) are exact; real
    weights are rounded to fixed point (see the module docstring).

    Raises
    ------
    WeightBudgetExceeded
        Negative, non-finite or all-zero weights, or a total above the budget.
    InvalidCiphertext
        Vectors with different parameters, public keys or lengths.
    """
    if not vectors:
        raise InvalidCiphertext("nothing to aggregate")
    if weights is None:
        weights = [1] * len(vectors)
    if len(weights) != len(vectors):
        raise WeightBudgetExceeded(f"{len(weights)} weights for {len(vectors)} vectors")
    first = vectors[0]
    scale = weight_scale_for(first.params, weights)
    ints = [integer_weight(w, scale) for w in weights]
    if sum(ints) > first.params.max_total_weight:
        raise WeightBudgetExceeded(
            f"total weight {sum(ints)} exceeds the budget of {first.params.max_total_weight} "
            f"(Parameters.max_total_weight)"
        )
    agg = Aggregator(
        first.params, public_key_id=first.public_key_id, length=first.length, weight_scale=scale
    )
    for vec, w in zip(vectors, weights, strict=True):
        agg.add(vec, w)
    return agg.result()
