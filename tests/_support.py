"""Helpers shared by the tests and by the fuzz worker (not a test module).

The message builders re-create secagg's wire messages by hand, with digests computed
through :func:`secagg._internal.envelope.digest_of` exactly as the library defines them, so that a
test can produce a message whose *only* defect is the one it wants to exercise.
``tests/test_fuzz_ciphertext.py`` checks that each builder reproduces the library's own
serialization byte for byte, so the builders cannot silently drift from the library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

import secagg
from secagg import constants as C
from secagg._internal.envelope import chunk_digest, digest_of, root_digest, split_payload
from secagg._internal.modarith import pack60
from secagg._internal.seal_backend import backend_for
from secagg.proto import core_pb2

# --- decryption shortcuts ---------------------------------------------------------------


def partials_for(
    keys: secagg.KeySet, agg: secagg.EncryptedAggregate, quorum: Sequence[int]
) -> list[secagg.PartialDecryption]:
    """Every quorum member's partial decryption (public API)."""
    return [secagg.partial_decrypt(keys.shares[i - 1], agg, quorum=quorum) for i in quorum]


def decrypt(
    keys: secagg.KeySet,
    agg: secagg.EncryptedAggregate,
    quorum: Sequence[int] | None = None,
    *,
    mean: bool = True,
) -> np.ndarray:
    """Threshold-decrypt ``agg`` with ``quorum`` (default: the first ``t`` key holders)."""
    if quorum is None:
        quorum = list(range(1, keys.shares[0].threshold + 1))
    return secagg.combine(agg, partials_for(keys, agg, quorum), mean=mean)


# --- exact integer views of RNS data ----------------------------------------------------


def crt(residues: np.ndarray, primes: Sequence[int]) -> tuple[np.ndarray, int]:
    """CRT of ``residues`` (first axis = primes) to Python ints in ``[0, Q)``; returns (x, Q)."""
    modulus = math.prod(primes)
    acc: object = 0
    for r, q in zip(residues, primes, strict=True):
        m = modulus // q
        acc = acc + np.asarray(r).astype(object) * (m * pow(m, -1, q))
    return np.asarray(acc, dtype=object) % modulus, modulus


def centered(x: np.ndarray, modulus: int) -> np.ndarray:
    """The representative in ``(-modulus/2, modulus/2]`` of every entry (Python ints)."""
    x = np.asarray(x).astype(object) % modulus
    return np.where(x > modulus // 2, x - modulus, x)


# --- NTT through SEAL (data level) -----------------------------------------------------


def _transform(params: secagg.Parameters, poly: np.ndarray, *, to_ntt: bool) -> np.ndarray:
    backend = backend_for(params)
    ct = backend.to_ciphertext(np.stack([poly, poly]), ntt=not to_ntt)
    if to_ntt:
        backend.evaluator.transform_to_ntt_inplace(ct)
    else:
        backend.evaluator.transform_from_ntt_inplace(ct)
    return backend.from_ciphertext(ct)[0]


def ntt(params: secagg.Parameters, poly: np.ndarray) -> np.ndarray:
    """Forward negacyclic NTT of a data-level polynomial of shape ``(primes, N)``."""
    return _transform(params, poly, to_ntt=True)


def intt(params: secagg.Parameters, poly: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ntt`."""
    return _transform(params, poly, to_ntt=False)


def joint_secret(keys: secagg.KeySet, members: Sequence[int]) -> np.ndarray:
    """NTT(s) on the data primes, reconstructed from the shares of ``members``."""
    params = keys.public_key.params
    return secagg._internal.shamir.reconstruct(
        {i: keys.shares[i - 1].residues for i in members}, params.data_primes
    )


# --- hand-built wire messages -----------------------------------------------------------


def _chunked(
    domain: bytes, params_id: bytes, header: tuple, payload: bytes, residues: np.ndarray
) -> bytes:
    """The chunked digest of a payload (chunks of ``C.CHUNK_CIPHERTEXTS`` ciphertexts)."""
    per_ciphertext = int(residues[0].size) if residues.shape[0] else 16
    chunks = split_payload(payload, per_ciphertext)
    return root_digest(
        domain, params_id, header, [chunk_digest(i, c) for i, c in enumerate(chunks)]
    )


def vector_message(
    params: secagg.Parameters,
    public_key_id: bytes,
    length: int,
    residues: np.ndarray,
    *,
    count: int | None = None,
    params_id: bytes | None = None,
    format_version: int = C.FORMAT_VERSION,
) -> core_pb2.EncryptedVector:
    """An ``EncryptedVector`` with a digest consistent with its fields under ``params``."""
    payload = pack60(residues)
    count = int(residues.shape[0]) if count is None else count
    header = (public_key_id, length, count)
    digest = _chunked(C.DOMAIN_CIPHERTEXT, params.id_bytes, header, payload, residues)
    return core_pb2.EncryptedVector(
        format_version=format_version,
        params_id=params.id_bytes if params_id is None else params_id,
        public_key_id=public_key_id,
        length=length,
        ciphertext_count=count,
        payload=payload,
        digest=digest,
    )


def aggregate_message(
    vector: core_pb2.EncryptedVector,
    *,
    total_weight: int,
    weight_scale: float,
    contributors: int,
    format_version: int = C.FORMAT_VERSION,
) -> core_pb2.EncryptedAggregate:
    """An ``EncryptedAggregate`` whose digest matches its (possibly invalid) fields."""
    digest = digest_of(
        C.DOMAIN_AGGREGATE, bytes(vector.digest), total_weight, weight_scale, contributors
    )
    return core_pb2.EncryptedAggregate(
        format_version=format_version,
        vector=vector,
        total_weight=total_weight,
        weight_scale=weight_scale,
        contributors=contributors,
        digest=digest,
    )


def partial_message(
    params: secagg.Parameters,
    *,
    public_key_id: bytes,
    aggregate_digest: bytes,
    keyholder_index: int,
    threshold: int,
    quorum: Sequence[int],
    residues: np.ndarray,
    count: int | None = None,
    params_id: bytes | None = None,
    format_version: int = C.FORMAT_VERSION,
) -> core_pb2.PartialDecryption:
    """A ``PartialDecryption`` whose digest matches its (possibly invalid) fields."""
    payload = pack60(residues)
    count = int(residues.shape[0]) if count is None else count
    header = (
        public_key_id,
        aggregate_digest,
        keyholder_index,
        threshold,
        b"".join(int(i).to_bytes(4, "little") for i in quorum),
        count,
    )
    digest = _chunked(C.DOMAIN_PARTIAL, params.id_bytes, header, payload, residues)
    return core_pb2.PartialDecryption(
        format_version=format_version,
        params_id=params.id_bytes if params_id is None else params_id,
        public_key_id=public_key_id,
        aggregate_digest=aggregate_digest,
        keyholder_index=keyholder_index,
        threshold=threshold,
        quorum=list(quorum),
        ciphertext_count=count,
        payload=payload,
        digest=digest,
    )


def vector_message_of(vec: secagg.EncryptedVector, **overrides: object) -> core_pb2.EncryptedVector:
    """:func:`vector_message` for the fields of ``vec``, some of them overridden."""
    fields: dict[str, object] = {
        "params": vec.params,
        "public_key_id": vec.public_key_id,
        "length": vec.length,
        "residues": vec.residues,
    }
    fields.update(overrides)
    return vector_message(**fields)  # type: ignore[arg-type]


def partial_message_of(
    part: secagg.PartialDecryption, **overrides: object
) -> core_pb2.PartialDecryption:
    """:func:`partial_message` for the fields of ``part``, some of them overridden."""
    fields: dict[str, object] = {
        "params": part.params,
        "public_key_id": part.public_key_id,
        "aggregate_digest": part.aggregate_digest,
        "keyholder_index": part.keyholder_index,
        "threshold": part.threshold,
        "quorum": part.quorum,
        "residues": part.residues,
    }
    fields.update(overrides)
    return partial_message(**fields)  # type: ignore[arg-type]


def with_residue(residues: np.ndarray, index: tuple[int, ...], value: int) -> np.ndarray:
    """A copy of ``residues`` with one entry replaced."""
    out = residues.copy()
    out[index] = np.uint64(value)
    return out
