"""Test decryption of a freshly generated joint key before anyone endorses it.

After the key ceremony's public contributions ``b_i`` and Shamir shares ``f_i(j)`` are
exchanged (:mod:`secagg.dkg`), every key holder checks, with the other key holders'
help, that the key works for every subset of ``t`` key holders, and finds out whose
material does not.

Rows. Besides the joint key ``pk = (sum b_i, a)`` (row 0), each contribution with the
common ``a`` is itself a public key ``pk_i = (b_i, a)`` (row ``i``) of key holder ``i``'s
secret ``s_i``, and the shares ``f_i(1..n)`` are Shamir shares of ``s_i``.

1. :func:`make_probe`: each key holder encrypts fresh random values from the CSPRNG
   under every row's key (:class:`KeyProbe`: the first ``C.CEREMONY_TEST_VALUES``
   coefficients of each ``c0``, the whole ``c1``; the joint row with its own encryption
   randomness, the ``n`` sender rows with one shared randomness).
2. :func:`probe_partials`: each key holder ``j`` decrypts every key holder's probe, for
   every test subset ``Q`` it belongs to (:func:`probe_quorums`), with
   :func:`secagg.threshold.partial_decrypt` (flooded partials): row 0 with its key share
   ``S_j``, row ``i`` with the share ``f_i(j)`` it received from key holder ``i``. Only the
   test coefficients of each partial are kept.
3. :func:`check_probes`: each key holder combines (:func:`secagg.threshold.combine`)
   every row of every probe under every subset: its own values must come back exactly,
   and every other probe must decrypt to one value under all subsets. Otherwise it
   raises :class:`~secagg.errors.KeyCheckFailed` naming who may have deviated: a key
   holder ``d`` explains a failed row if the row is ``d``'s key (its shares or its ``b_d``),
   the probe is ``d``'s, every subset without ``d`` decrypts correctly (``d`` lied in its
   partials), or, for the joint row, ``d``'s own row failed too. The named key holders are
   those that explain every failure: if exactly one key holder deviated, it is named.

Per key holder this decrypts ``n * (n + 1) * m`` test ciphertexts of
``C.CEREMONY_TEST_VALUES`` coefficients, ``m`` the number of test subsets it is in
(:func:`quorums_per_keyholder`); ``n * m`` of them with the joint key share.

Security
--------
This cannot decrypt a client's data: the joint key is fresh, nobody encrypts under it
before every key holder endorsed it (clients check the endorsements), probes are signed
by their key holder, and a partial of a probe reveals only its ``C.CEREMONY_TEST_VALUES``
test coefficients. A sender row's values are not secret (its key holder knows ``s_i``);
the joint row's values are, as long as one contribution is honest. A failure is found
only by a subset of key holders that did not all deviate: with ``t - 1`` colluders,
every t-subset (used while ``C(n, t) <= C.CEREMONY_ALL_QUORUMS_MAX``) includes an
honest-only one if ``n >= 2t - 1``; the cyclic windows used above the cap need not.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from secagg import constants as C
from secagg._internal.modarith import U64, add_mod, mul_mod, signed_to_residues
from secagg._internal.sampling import centered_binomial, ternary, uniform_mod
from secagg._internal.seal_backend import backend_for
from secagg.aggregate import EncryptedAggregate
from secagg.ciphertext import EncryptedVector
from secagg.encoding import F64, decode
from secagg.errors import KeyCheckFailed
from secagg.keys import JointPublicKey, KeyShare
from secagg.params import Parameters
from secagg.threshold import PartialDecryption, combine, partial_decrypt

Quorum = tuple[int, ...]
VALUES = C.CEREMONY_TEST_VALUES


def probe_quorums(n: int, t: int) -> tuple[Quorum, ...]:
    """Every t-subset of ``1..n`` while few enough, else the ``n`` cyclic windows."""
    if math.comb(n, t) <= C.CEREMONY_ALL_QUORUMS_MAX:
        return tuple(itertools.combinations(range(1, n + 1), t))
    return tuple(tuple(sorted((k + i) % n + 1 for i in range(t))) for k in range(n))


def quorums_per_keyholder(n: int, t: int) -> int:
    """How many test subsets each key holder belongs to (the same for all)."""
    return sum(1 for q in probe_quorums(n, t) if 1 in q)


def row_key_id(public_key_id: bytes, row: int) -> bytes:
    """The label under which a row's probe ciphertexts and shares are matched (row 0: pk)."""
    if row == 0:
        return public_key_id
    return hashlib.sha256(public_key_id + row.to_bytes(4, "big")).digest()


@dataclass(frozen=True, eq=False)
class KeyProbe:
    """One key holder's test ciphertexts: row 0 under the joint key, row ``i`` under ``pk_i``.

    ``c0`` holds the first ``VALUES`` coefficients of each row's ``c0``, shape
    ``(n + 1, data primes, VALUES)``; ``c1`` the whole ``c1`` of the joint row and the one
    the sender rows share, shape ``(2, data primes, N)``; coefficient form.
    """

    params: Parameters
    public_key_id: bytes
    c0: U64
    c1: U64

    @property
    def rows(self) -> int:
        """``n + 1``."""
        return int(self.c0.shape[0])

    def ciphertext(self, row: int) -> EncryptedAggregate:
        """Row ``row`` as a one-ciphertext aggregate of ``VALUES`` values (``c0`` zero-padded)."""
        residues = np.zeros((1, 2, *self.c1.shape[1:]), dtype=np.uint64)
        residues[0, 0, :, :VALUES] = self.c0[row]
        residues[0, 1] = self.c1[min(row, 1)]
        vector = EncryptedVector(self.params, row_key_id(self.public_key_id, row), VALUES, residues)
        return EncryptedAggregate(vector, total_weight=1, weight_scale=1.0, contributors=1)


def _encrypt_rows(params: Parameters, a: U64, keys: list[U64], values: U64) -> tuple[U64, U64]:
    """``(c1, c0 of each key)`` for one fresh ternary ``u``: ``c1 = a*u + e``,
    ``c0_k = b_k*u + e_k + Delta*m_k`` (data level; ``a``, ``b_k`` NTT form, data primes)."""
    primes, n = params.data_primes, params.poly_modulus_degree
    u = signed_to_residues(ternary(n), params.coeff_modulus)
    backend = backend_for(params)
    u_ntt = backend.ntt_key_level(u[None])[0][: len(primes)]
    ntt = np.stack(
        [np.stack([mul_mod(p[j], u_ntt[j], q) for j, q in enumerate(primes)]) for p in [a, *keys]]
    )
    coeff = np.empty_like(ntt)
    for k in range(0, len(ntt), 2):  # SEAL transforms ciphertexts: go through pairs
        pair = ntt[k : k + 2] if k + 1 < len(ntt) else np.stack([ntt[k], ntt[k]])
        ct = backend.to_ciphertext(pair, ntt=True, secret=True)  # a*u, b_k*u: of u
        backend.evaluator.transform_from_ntt_inplace(ct)
        coeff[k : k + 2] = backend.from_ciphertext(ct)[: len(ntt) - k]
    delta = math.prod(primes) // params.plain_modulus
    for k in range(len(ntt)):
        noise = signed_to_residues(centered_binomial(n, C.CBD_ETA), primes)
        for j, q in enumerate(primes):
            coeff[k, j] = add_mod(coeff[k, j], noise[j], q)
            if k:
                scaled = mul_mod(values[k - 1] % np.uint64(q), delta % q, q)
                coeff[k, j, :VALUES] = add_mod(coeff[k, j, :VALUES], scaled, q)
    return coeff[0], coeff[1:, :, :VALUES]


def make_probe(
    public_key: JointPublicKey, contributions: Mapping[int, U64]
) -> tuple[KeyProbe, U64]:
    """This key holder's probe and its secret values, shape ``(n + 1, VALUES)`` mod ``t``.

    Security
    --------
    Keep the values until :func:`check_probes`; publish only the probe.
    """
    params = public_key.params
    data = len(params.data_primes)
    n = public_key.keyholders
    values = uniform_mod(params.plain_modulus, (n + 1) * VALUES).reshape(n + 1, VALUES)
    a = public_key.residues[1][:data]
    joint_c1, joint_c0 = _encrypt_rows(params, a, [public_key.residues[0][:data]], values[:1])
    senders = [contributions[i][:data] for i in range(1, n + 1)]
    rows_c1, rows_c0 = _encrypt_rows(params, a, senders, values[1:])
    probe = KeyProbe(
        params,
        public_key.id_bytes,
        np.concatenate([joint_c0, rows_c0]),
        np.stack([joint_c1, rows_c1]),
    )
    return probe, values


def probe_partials(
    probes: Mapping[int, KeyProbe],
    joint_share: KeyShare,
    shares: Mapping[int, U64],
) -> U64:
    """This key holder's partials of every probe (author order) for its test subsets.

    Shape ``(n authors, subsets containing it, n + 1 rows, data primes, VALUES)``: row 0
    decrypted with ``joint_share``, row ``i`` with ``shares[i]`` (``f_i(index)``).
    """
    me, n, t = joint_share.index, joint_share.keyholders, joint_share.threshold
    params = joint_share.params
    row_shares = [joint_share] + [
        KeyShare(params, me, n, t, row_key_id(joint_share.public_key_id, i), shares[i])
        for i in range(1, n + 1)
    ]
    mine = [q for q in probe_quorums(n, t) if me in q]
    out = np.empty((n, len(mine), n + 1, len(params.data_primes), VALUES), dtype=np.uint64)
    for position, author in enumerate(sorted(probes)):
        for row, share in enumerate(row_shares):
            ciphertext = probes[author].ciphertext(row)
            for k, quorum in enumerate(mine):
                part = partial_decrypt(share, ciphertext, quorum=quorum)
                out[position, k, row] = part.residues[0, :, :VALUES]
    return out


def _decryptions(
    probe: KeyProbe, row: int, author: int, partials: Mapping[int, U64], t: int
) -> dict[Quorum, F64]:
    """Row ``row`` of ``author``'s probe combined under every test subset."""
    ciphertext = probe.ciphertext(row)
    n = probe.rows - 1
    quorums = probe_quorums(n, t)
    out = {}
    for quorum in quorums:
        parts = []
        for j in quorum:
            position = [q for q in quorums if j in q].index(quorum)
            padded = np.zeros_like(ciphertext.vector.residues[:, 1])
            padded[0, :, :VALUES] = partials[j][author - 1, position, row]
            key_id = ciphertext.vector.public_key_id
            parts.append(
                PartialDecryption(probe.params, key_id, ciphertext.digest, j, t, quorum, padded)
            )
        out[quorum] = combine(ciphertext, parts, mean=False)
    return out


def check_probes(
    index: int,
    probes: Mapping[int, KeyProbe],
    values: U64,
    partials: Mapping[int, U64],
    *,
    threshold: int,
) -> None:
    """Check every probe under every test subset (module docstring); raises KeyCheckFailed."""
    mine = probes[index]
    expected = [decode(mine.params, row) for row in values]
    results = {
        (author, row): _decryptions(probes[author], row, author, partials, threshold)
        for author in sorted(probes)
        for row in range(mine.rows)
    }

    def consistent(author: int, row: int, without: int = 0) -> bool:
        found = [v for q, v in results[author, row].items() if without not in q]
        if author == index:
            return all(np.array_equal(v, expected[row]) for v in found)
        return all(np.array_equal(v, found[0]) for v in found[1:])

    failed = [key for key in results if not consistent(*key)]
    if not failed:
        return
    own_bad_rows = {row for author, row in failed if author == index and row}

    def explains(d: int, author: int, row: int) -> bool:
        return (
            d in (author, row)
            or consistent(author, row, without=d)
            or (not row and d in own_bad_rows)
        )

    culprits = tuple(
        d
        for d in range(1, mine.rows)
        if d != index and all(explains(d, author, row) for author, row in failed)
    )
    rows = sorted({row for _, row in failed})
    raise KeyCheckFailed(
        f"key holder {index}: test decryption failed (key rows {rows}: 0 is the joint key)",
        culprits=culprits,
    )
