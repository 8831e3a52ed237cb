"""The three systems ``secagg bench`` compares: (a) secagg, (b) TenSEAL CKKS, (c) numpy."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal as ts

from secagg.aggregate import EncryptedAggregate, aggregate
from secagg.bench.measure import native_stdout_silenced, timed, timed_with_setup
from secagg.bench.results import Phase, SystemResult
from secagg.ciphertext import EncryptedVector, encrypt
from secagg.keys import JointPublicKey, KeySet
from secagg.params import Parameters
from secagg.threshold import PartialDecryption, combine, partial_decrypt

F64 = npt.NDArray[np.float64]

#: TenSEAL CKKS settings of NVIDIA FLARE's HE examples.
CKKS_POLY_MODULUS_DEGREE = 8192
CKKS_COEFF_MOD_BIT_SIZES = (60, 40, 40)
CKKS_SCALE_BITS = 40


def _record_uploads(
    res: SystemResult,
    serialize_samples: list[float],
    blobs: Sequence[bytes],
    size: int,
    parse: Callable[[], object],
    repeats: int,
) -> None:
    """Record serialization timings and upload size, then time the server parsing ``blobs``."""
    res.phases["serialize"] = Phase(tuple(serialize_samples), len(blobs) * size)
    res.upload_bytes_per_client = len(blobs[0])
    res.bytes_per_parameter = len(blobs[0]) / size
    parse_samples, _ = timed(parse, repeats)
    res.phases["parse"] = Phase(tuple(parse_samples), len(blobs) * size)


# --- (a) secagg ---------------------------------------------------------------------------
def _fresh_vector(vec: EncryptedVector) -> EncryptedVector:
    """A new view of the same residues, without cached payload or digest."""
    return EncryptedVector(vec.params, vec.public_key_id, vec.length, vec.residues)


def _fresh_views(vecs: Sequence[EncryptedVector]) -> list[EncryptedVector]:
    return [_fresh_vector(v) for v in vecs]


def _fresh_aggregate(agg: EncryptedAggregate) -> EncryptedAggregate:
    """A new view of an aggregate, as a key holder that just received it would hold."""
    return EncryptedAggregate(
        _fresh_vector(agg.vector), agg.total_weight, agg.weight_scale, agg.contributors
    )


def _encrypt_all(public_key: JointPublicKey, vectors: F64) -> list[EncryptedVector]:
    return [encrypt(public_key, x) for x in vectors]


def _serialize_all(vecs: Sequence[EncryptedVector]) -> list[bytes]:
    return [v.to_bytes() for v in vecs]


def _parse_all(blobs: Sequence[bytes], params: Parameters) -> list[EncryptedVector]:
    return [EncryptedVector.from_bytes(b, params) for b in blobs]


def bench_secagg(
    vectors: F64, weights: list[int], keys: KeySet, repeats: int, reference: F64
) -> SystemResult:
    clients, size = vectors.shape
    params = keys.public_key.params
    quorum = list(range(1, keys.public_key.threshold + 1))
    res = SystemResult()
    phases = res.phases

    samples, cts = timed(partial(_encrypt_all, keys.public_key, vectors), repeats)
    phases["encrypt"] = Phase(tuple(samples), clients * size)
    # to_bytes caches the packed payload and digest: serialize fresh views every time.
    samples, blobs = timed_with_setup(partial(_fresh_views, cts), _serialize_all, repeats)
    _record_uploads(res, samples, blobs, size, partial(_parse_all, blobs, params), repeats)
    del blobs

    samples, agg = timed(partial(aggregate, cts, weights=weights), repeats)
    phases["aggregate"] = Phase(tuple(samples), clients * size)
    del cts
    gc.collect()

    per_keyholder: list[float] = []
    parts: list[PartialDecryption] = []
    for _ in range(repeats):
        parts = []
        for index in quorum:
            view = _fresh_aggregate(agg)
            gc.collect()
            start = time.perf_counter()
            parts.append(partial_decrypt(keys.shares[index - 1], view, quorum=quorum))
            per_keyholder.append(time.perf_counter() - start)
    phases["partial_decrypt_per_keyholder"] = Phase(tuple(per_keyholder), size)
    samples, mean = timed_with_setup(
        partial(_fresh_aggregate, agg), partial(combine, partials=parts), repeats
    )
    phases["combine"] = Phase(tuple(samples), size)
    res.max_abs_error["weighted_mean"] = float(np.max(np.abs(mean - reference)))
    res.notes.append(
        f"threshold decryption by key holders {quorum} of {keys.public_key.keyholders}; "
        "partial_decrypt is timed per key holder (each computes the aggregate digest); "
        "key holders work in parallel, so end-to-end decryption is one partial plus combine"
    )
    return res


# --- (b) TenSEAL CKKS, NVIDIA FLARE style ---------------------------------------------
def ckks_context() -> Any:
    """The FLARE-style secret context (no Galois keys; one thread)."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=CKKS_POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=list(CKKS_COEFF_MOD_BIT_SIZES),
        n_threads=1,
    )
    ctx.global_scale = float(2**CKKS_SCALE_BITS)
    return ctx


def _public_copy(ctx: Any) -> Any:
    """What clients and the server hold: the context without the secret key."""
    pub = ctx.copy()
    pub.make_context_public()
    return pub


def _ckks_encrypt_all(ctx: Any, vectors: F64) -> list[Any]:
    with native_stdout_silenced():  # once per batch: no per-vector cost
        return [ts.ckks_vector(ctx, x) for x in vectors]


def _ckks_serialize_all(vecs: Sequence[Any]) -> list[bytes]:
    return [v.serialize() for v in vecs]


def _ckks_parse_all(ctx: Any, blobs: Sequence[bytes]) -> list[Any]:
    return [ts.ckks_vector_from(ctx, b) for b in blobs]


def _ckks_server_weighted(vecs: Sequence[Any], fractions: Sequence[float]) -> Any:
    """``sum_i (w_i / W) * ct_i``: one plaintext multiply (and rescale) per client."""
    total = vecs[0] * fractions[0]
    for vec, fraction in zip(vecs[1:], fractions[1:], strict=True):
        total = total + vec * fraction
    return total


def _ckks_flare_default(preweighted: Sequence[Any], total_weight: float) -> Any:
    """FLARE's default: add client-pre-weighted ciphertexts, scale the sum by ``1/W`` once."""
    total = preweighted[0]
    for vec in preweighted[1:]:
        total = total + vec
    return total * (1.0 / total_weight)


def bench_ckks(
    vectors: F64, weights: list[int], secret_ctx: Any, repeats: int, reference: F64
) -> SystemResult:
    clients, size = vectors.shape
    pub = _public_copy(secret_ctx)
    secret_key = secret_ctx.secret_key()
    total_weight = float(sum(weights))
    fractions = [w / total_weight for w in weights]
    res = SystemResult()
    phases = res.phases

    samples, encrypted = timed(partial(_ckks_encrypt_all, pub, vectors), repeats)
    phases["encrypt"] = Phase(tuple(samples), clients * size)
    samples, blobs = timed(partial(_ckks_serialize_all, encrypted), repeats)
    _record_uploads(res, samples, blobs, size, partial(_ckks_parse_all, pub, blobs), repeats)
    del blobs

    samples, agg = timed(partial(_ckks_server_weighted, encrypted, fractions), repeats)
    phases["aggregate_server_weighted"] = Phase(tuple(samples), clients * size)
    del encrypted
    samples, decrypted = timed(partial(agg.decrypt, secret_key), repeats)
    phases["decrypt"] = Phase(tuple(samples), size)
    res.max_abs_error["server_weighted"] = float(np.max(np.abs(np.asarray(decrypted) - reference)))
    del agg, decrypted
    gc.collect()

    # Clients pre-weight before encrypting (untimed: the same cost as "encrypt").
    preweighted = _ckks_encrypt_all(pub, vectors * np.asarray(weights, dtype=np.float64)[:, None])
    samples, agg = timed(partial(_ckks_flare_default, preweighted, total_weight), repeats)
    phases["aggregate_flare_default"] = Phase(tuple(samples), clients * size)
    del preweighted
    decrypted = np.asarray(agg.decrypt(secret_key))
    res.max_abs_error["flare_default"] = float(np.max(np.abs(decrypted - reference)))
    res.notes += [
        "single-key decryption: whoever holds the secret key can decrypt every upload",
        "aggregate_server_weighted multiplies each ciphertext by w_i/sum(w) and adds; "
        "aggregate_flare_default adds client-pre-weighted ciphertexts and multiplies the "
        "sum by 1/sum(w) once (FLARE's default: HEModelEncryptor weigh_by_local_iter=True)",
        "FLARE's server-side weighting followed by its separate 1/sum(w) multiply needs two "
        "rescales, which [60, 40, 40] does not have ('scale out of bounds'): the "
        "server-weighted variant folds 1/sum(w) into each weight",
        "decrypt times CKKSVector.decrypt() with the secret key (returns a Python list)",
    ]
    return res


# --- (c) plaintext ------------------------------------------------------------------------
def bench_plaintext(vectors: F64, weights: list[int], repeats: int) -> tuple[SystemResult, F64]:
    clients, size = vectors.shape
    w = np.asarray(weights, dtype=np.float64)
    samples, mean = timed(lambda: np.average(vectors, axis=0, weights=w), repeats)
    res = SystemResult(bytes_per_parameter=8.0, upload_bytes_per_client=8 * size)
    res.phases["aggregate"] = Phase(tuple(samples), clients * size)
    res.notes.append("numpy.average over float64 vectors; it is also the reference mean")
    return res, np.asarray(mean, dtype=np.float64)
