"""Threshold decryption: partial decryptions with flooding noise, and their combination.

Algebra, per data prime. Key holder ``j`` holds ``S_j``, its Shamir share of the joint
secret ``s`` (NTT form, :mod:`secagg.dkg`). For an aggregate ``(c0, c1)`` and a quorum
``Q`` with ``|Q| >= t``, key holder ``j`` returns

    ``d_j = lambda_j^Q * S_j * c1 + E_j``

where ``lambda_j^Q`` is the Lagrange coefficient of ``j`` at 0 for ``Q``. BFV ciphertexts
are in coefficient form: the product is computed by SEAL (``c1`` to NTT form, times the
NTT-form plaintext ``lambda_j^Q * S_j``, back to coefficient form) and the flooding noise
``E_j``, fresh and uniform in ``[-2^b, 2^b)`` per coefficient from ``os.urandom``
(``b = params.flooding_bits``), is added in coefficient form. Since
``sum_{j in Q} lambda_j^Q * S_j = s``, combining gives
``c0 + sum d_j = c0 + c1 * s + sum E_j = Delta * m + v + sum E_j`` with
``Delta = floor(q/t)`` and ``v`` the aggregate's noise; :class:`~secagg.params.Parameters`
keeps ``|v| + |Q| * 2^b`` below ``q/(2t)``, so rounding ``t/q`` times the sum gives ``m``
exactly. :mod:`secagg._internal.rns_decode` does that rounding exactly in numpy, on the
residues (for parameter sets it does not cover, SEAL does: the sum goes into a ciphertext
``(c0 + sum d_j, 0)`` that SEAL decrypts with an arbitrary secret key, a zero second
polynomial making the key drop out). Every quorum gives the same result; ``t - 1``
partials give only noise.

Why flooding: a partial decryption without it reveals ``c0 + c1 * s`` up to the
message, i.e. the aggregate's noise, which depends on the secret key; from enough such
values the key can be recovered (Li and Micciancio, Eurocrypt 2021, for CKKS; the same
applies to threshold BFV). Noise ``2^kappa`` times wider than the aggregate's noise bound
hides it to statistical distance ``2^-kappa`` per coefficient (``kappa >= 40`` here; see
:mod:`secagg.params`).

Security
--------
Whoever combines the partials learns the aggregate. A key holder should only call
:func:`partial_decrypt` on an aggregate that satisfies its policy (enough distinct
contributors, weight caps, one decryption per round); the library checks the
cryptographic consistency only. Flooding protects the key only if the aggregate's noise
is within the parameter budget, i.e. its inputs were honestly encrypted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np
import tenseal.sealapi as seal

from secagg import constants as C
from secagg._internal.envelope import (
    Envelope,
    parse,
    require,
    require_reduced,
    unpack_residues,
)
from secagg._internal.modarith import U64, add_mod, mul_mod
from secagg._internal.rns_decode import scale_and_round, usable
from secagg._internal.sampling import flooding_noise
from secagg._internal.seal_backend import backend_for
from secagg._internal.shamir import lagrange_at_zero
from secagg.aggregate import EncryptedAggregate
from secagg.encoding import F64, decode
from secagg.errors import InvalidPartialDecryption, QuorumNotMet
from secagg.keys import KeyShare
from secagg.params import Parameters
from secagg.proto import core_pb2


class AggregateMeta(Protocol):
    """What scaling a decoded aggregate needs (an aggregate or its head)."""

    @property
    def total_weight(self) -> int: ...

    @property
    def weight_scale(self) -> float: ...


@dataclass(frozen=True, eq=False)
class PartialDecryption(Envelope[core_pb2.PartialDecryption]):
    """Key holder ``keyholder_index``'s flooded share of one aggregate's decryption.

    Its :attr:`digest` covers every field: it is what the key holder signs.
    """

    DOMAIN: ClassVar[bytes] = C.DOMAIN_PARTIAL
    CHUNKED: ClassVar[bool] = True
    params: Parameters
    public_key_id: bytes
    aggregate_digest: bytes
    keyholder_index: int
    threshold: int
    quorum: tuple[int, ...]
    residues: U64 = field(repr=False)  # (ciphertexts, data primes, N)

    def _digested_header(self) -> tuple[int | bytes, ...]:
        return partial_header(self, int(self.residues.shape[0]))

    def _header_message(self) -> core_pb2.PartialDecryption:  # fields in core.proto order
        return core_pb2.PartialDecryption(
            public_key_id=self.public_key_id,
            aggregate_digest=self.aggregate_digest,
            keyholder_index=self.keyholder_index,
            quorum=list(self.quorum),
            threshold=self.threshold,
            ciphertext_count=int(self.residues.shape[0]),
        )

    @classmethod
    def from_bytes(
        cls, blob: bytes, params: Parameters, *, max_bytes: int | None = None
    ) -> PartialDecryption:
        """Parse and validate; raises :class:`InvalidPartialDecryption`."""
        err = InvalidPartialDecryption
        msg = parse(core_pb2.PartialDecryption, blob, err, max_bytes)
        quorum = check_partial_header(msg, params)
        require(not msg.chunk_digests, err, "a whole partial lists no chunk digests")
        n, count = params.poly_modulus_degree, msg.ciphertext_count
        wrong_length = "partial payload has the wrong length"
        payload = bytes(msg.payload)
        residues = unpack_residues(payload, (count, len(params.data_primes), n), err, wrong_length)
        part = cls(
            params,
            bytes(msg.public_key_id),
            bytes(msg.aggregate_digest),
            msg.keyholder_index,
            msg.threshold,
            quorum,
            residues,
        )
        part._adopt_payload(payload)
        require(part.digest == msg.digest, err, "partial digest mismatch")
        require_reduced(residues, params.data_primes, err, "partial residue not reduced")
        return part


class PartialFields(Protocol):
    """The header fields of a partial decryption (whole or head)."""

    @property
    def public_key_id(self) -> bytes: ...

    @property
    def aggregate_digest(self) -> bytes: ...

    @property
    def keyholder_index(self) -> int: ...

    @property
    def threshold(self) -> int: ...

    @property
    def quorum(self) -> tuple[int, ...]: ...


def partial_header(partial: PartialFields, ciphertexts: int) -> tuple[int | bytes, ...]:
    """The header fields a partial's digest covers, in order (whole form and head alike)."""
    return (
        partial.public_key_id,
        partial.aggregate_digest,
        partial.keyholder_index,
        partial.threshold,
        b"".join(i.to_bytes(4, "little") for i in partial.quorum),
        ciphertexts,
    )


def check_partial_header(msg: core_pb2.PartialDecryption, params: Parameters) -> tuple[int, ...]:
    """Check a partial message's header fields (whole or head); returns its quorum.

    Raises :class:`InvalidPartialDecryption` naming the field that is wrong.
    """
    err = InvalidPartialDecryption
    require(msg.params_id == params.id_bytes, err, "partial is for other parameters")
    require(len(msg.aggregate_digest) == C.DIGEST_BYTES, err, "missing aggregate digest")
    quorum = tuple(msg.quorum)
    _check_quorum(quorum, msg.threshold, params.max_keyholders, err, short=err)
    require(msg.keyholder_index in quorum, err, "key holder is not in its quorum")
    n, count = params.poly_modulus_degree, msg.ciphertext_count
    require(1 <= count <= C.MAX_VECTOR_LENGTH // n + 1, err, "partial payload has the wrong length")
    return quorum


def _check_quorum(
    quorum: tuple[int, ...],
    threshold: int,
    keyholders: int,
    err: type[Exception],
    short: type[Exception] = QuorumNotMet,
) -> None:
    if list(quorum) != sorted(set(quorum)) or any(i < 1 or i > keyholders for i in quorum):
        raise err(f"quorum {list(quorum)} must be sorted, distinct indices in 1..{keyholders}")
    if threshold < 1:
        raise err("threshold must be positive")
    if len(quorum) < threshold:
        raise short(f"quorum of {len(quorum)} key holders; the threshold is {threshold}")


def partial_decrypt(
    share: KeyShare, aggregate: EncryptedAggregate, *, quorum: Iterable[int]
) -> PartialDecryption:
    """This key holder's partial decryption of ``aggregate`` for ``quorum``.

    Raises
    ------
    QuorumNotMet
        If the quorum has fewer than ``t`` members.
    InvalidPartialDecryption
        If the share does not belong to the aggregate's key or is not in the quorum.

    Security
    --------
    Check the decryption policy before calling (see the module docstring). Every call
    draws fresh flooding noise; never reuse a partial for another quorum.
    """
    q = check_share_for(share, quorum, aggregate.params, aggregate.vector.public_key_id)
    return _partial_decrypt_unchecked(share, aggregate, q)


def check_share_for(
    share: KeyShare, quorum: Iterable[int], params: Parameters, public_key_id: bytes
) -> tuple[int, ...]:
    """The sorted quorum, once ``share`` may partially decrypt for it under this key.

    Raises :class:`QuorumNotMet` (too small) or :class:`InvalidPartialDecryption`.
    """
    q = tuple(sorted(set(int(i) for i in quorum)))
    _check_quorum(q, share.threshold, share.keyholders, InvalidPartialDecryption)
    if share.index not in q:
        raise InvalidPartialDecryption(f"key holder {share.index} is not in the quorum {list(q)}")
    if share.params.id_bytes != params.id_bytes:
        raise InvalidPartialDecryption("key share and aggregate use different parameters")
    if share.public_key_id != public_key_id:
        raise InvalidPartialDecryption("aggregate is encrypted under another public key")
    return q


def _partial_decrypt_unchecked(
    share: KeyShare, aggregate: EncryptedAggregate, quorum: tuple[int, ...]
) -> PartialDecryption:
    """Internal: the ring algebra without quorum checks (tests force bad quorums with it)."""
    out = partial_rows(share.params, partial_factor(share, quorum), aggregate.vector.residues[:, 1])
    return PartialDecryption(
        share.params,
        share.public_key_id,
        aggregate.digest,
        share.index,
        share.threshold,
        quorum,
        out,
    )


def partial_factor(share: KeyShare, quorum: tuple[int, ...]) -> seal.Plaintext:
    """``lambda_j^Q * S_j`` as an NTT-form SEAL plaintext (no quorum checks: the caller's)."""
    params = share.params
    scaled = np.empty_like(share.residues)
    for j, q in enumerate(params.data_primes):
        scaled[j] = mul_mod(share.residues[j], lagrange_at_zero(quorum, q)[share.index], q)
    return backend_for(params).to_ntt_plaintext(scaled)


def partial_rows(params: Parameters, factor: seal.Plaintext, c1: U64) -> U64:
    """``factor * c1 + E`` for ciphertext rows ``c1`` of shape ``(k, primes, N)``.

    SEAL computes the ring product; the flooding noise ``E`` is fresh from ``os.urandom``
    on every call. Any number of rows: a whole aggregate or one chunk of it.
    """
    backend = backend_for(params)
    primes = params.data_primes
    count, n = c1.shape[0], params.poly_modulus_degree
    out = np.empty_like(c1)
    ct = None
    for k in range(0, count, 2):
        pair = c1[k : k + 2] if k + 1 < count else np.stack([c1[k], c1[k]])
        ct = backend.refill_ciphertext(ct, pair)
        backend.evaluator.transform_to_ntt_inplace(ct)
        backend.evaluator.multiply_plain_inplace(ct, factor)
        backend.evaluator.transform_from_ntt_inplace(ct)
        prod = backend.from_ciphertext(ct)
        out[k : k + 2] = prod[: min(2, count - k)]
    noise = flooding_noise(count * n, params.flooding_bits, primes).reshape(len(primes), count, n)
    for j, q in enumerate(primes):
        out[:, j] = add_mod(out[:, j], noise[j], q)
    return out


def check_partial(aggregate: EncryptedAggregate, partial: PartialDecryption) -> None:
    """Check that ``partial`` can take part in decrypting ``aggregate``; raises otherwise.

    The checks ``combine`` makes of each partial on its own: same aggregate, key and
    parameter set, the key holder inside its quorum, one residue row per ciphertext
    and prime. A service calls it before it stores a partial, so a malformed one is
    refused at once instead of wedging the round at combination time.

    Raises
    ------
    InvalidPartialDecryption
        The partial is for another aggregate, key or parameter set, names a quorum
        without its own key holder, or has the wrong shape.
    """
    p = partial
    if p.aggregate_digest != aggregate.digest:
        raise InvalidPartialDecryption(
            f"partial from key holder {p.keyholder_index} is for another aggregate"
        )
    if (
        p.params.id_bytes != aggregate.params.id_bytes
        or p.public_key_id != aggregate.vector.public_key_id
    ):
        raise InvalidPartialDecryption(
            f"partial from key holder {p.keyholder_index} is for another key or parameter set"
        )
    if p.keyholder_index not in p.quorum:
        raise InvalidPartialDecryption(
            f"key holder {p.keyholder_index} is not in the partial's quorum {list(p.quorum)}"
        )
    if p.residues.shape != aggregate.vector.residues[:, 1].shape:
        raise InvalidPartialDecryption("partial has the wrong shape")


def combine(
    aggregate: EncryptedAggregate, partials: Sequence[PartialDecryption], *, mean: bool = True
) -> F64:
    """Combine a quorum's partial decryptions into the decrypted aggregate.

    Returns the weighted mean ``sum w_i x_i / sum w_i`` (default) or, with
    ``mean=False``, the weighted sum ``sum alpha_i x_i``.

    Raises
    ------
    InvalidPartialDecryption
        A partial for another aggregate, key or parameter set, or partials that disagree
        on the quorum.
    QuorumNotMet
        Fewer than ``t`` distinct key holders, or a member of the quorum is missing.
    """
    if not partials:
        raise QuorumNotMet("no partial decryptions")
    first = partials[0]
    by_index: dict[int, PartialDecryption] = {}
    for p in partials:
        check_partial(aggregate, p)
        if p.quorum != first.quorum or p.threshold != first.threshold:
            raise InvalidPartialDecryption("partials were computed for different quorums")
        by_index[p.keyholder_index] = p
    if len(by_index) < first.threshold:
        raise QuorumNotMet(
            f"{len(by_index)} distinct partial decryptions; the threshold is {first.threshold}"
        )
    missing = set(first.quorum) - set(by_index)
    if missing:
        raise QuorumNotMet(f"missing partial decryptions from key holders {sorted(missing)}")
    return _combine_unchecked(aggregate, list(by_index.values()), mean=mean)


def _combine_unchecked(
    aggregate: EncryptedAggregate, partials: Sequence[PartialDecryption], *, mean: bool
) -> F64:
    """Internal: ``c0 + sum d_j``, scale-and-round, decode; no quorum checks."""
    c0 = aggregate.vector.residues[:, 0]
    coeffs = combine_rows(aggregate.params, c0, [p.residues for p in partials])
    return scale_total(aggregate, decode(aggregate.params, coeffs[: aggregate.vector.length]), mean)


def combine_rows(params: Parameters, c0: U64, parts: Sequence[U64]) -> U64:
    """Plaintext coefficients of ``c0 + sum parts`` (reduced rows ``(k, primes, N)``).

    Scale-and-round in numpy (:mod:`secagg._internal.rns_decode`, exact), or by SEAL for
    parameter sets it does not cover.
    """
    primes, t = params.data_primes, params.plain_modulus
    if usable(primes, t, 1 + len(parts)):
        total = np.array(c0, dtype=np.uint64, copy=True)
        for part in parts:
            total += part  # below 2^57: no reduction needed before the decode
        return scale_and_round(total, primes, t).reshape(-1)
    backend = backend_for(params)
    m = c0.copy()
    for part in parts:
        for j, q in enumerate(params.data_primes):
            m[:, j] = add_mod(m[:, j], part[:, j], q)
    return np.concatenate([backend.decode_transparent(m[k]) for k in range(m.shape[0])])


def scale_total(aggregate: EncryptedAggregate | AggregateMeta, total: F64, mean: bool) -> F64:
    """The weighted mean (``mean``) or the weighted sum of a decoded aggregate total."""
    if mean:
        return total / float(aggregate.total_weight)
    return total / aggregate.weight_scale
