"""Dealerless key generation (DKG) for t-of-n threshold BFV: the algebra of one party.

All polynomials are handled per RNS prime in NTT form, where ring products are
pointwise. Protocol, per key holder ``i`` of ``n``:

1. ``commitment()`` publishes ``SHA-256(domain || i || seed_i)`` for a fresh 32-byte seed
   from ``os.urandom``; after all commitments are in, ``seed_i`` is revealed and
   :func:`common_seed` checks every reveal against its commitment and hashes all reveals
   (in index order) into the common seed. As long as one key holder's seed is random and
   was committed before any was revealed, nobody controls the common uniform polynomial
   ``a`` that :func:`common_polynomial` expands from it with SHAKE-256.
2. ``public_key_contribution(seed)`` returns ``b_i = -a * s_i + e_i`` (NTT form, key
   level: every prime including SEAL's special prime) for a ternary secret ``s_i`` and
   centered-binomial noise ``e_i`` (``eta = constants.CBD_ETA``), both from the CSPRNG.
   :func:`combine_public_key` sums them: ``pk = (sum b_i, a)``, an ordinary SEAL public
   key for the joint secret ``s = sum s_i``, which exists nowhere.
3. ``outgoing_shares()`` Shamir-shares ``s_i`` over ``Z_q`` for each data prime ``q``,
   coefficient-wise on its NTT form (sharing and the NTT are both linear, so these are
   shares of ``NTT(s_i)``), with a random polynomial ``f_i`` of degree ``t - 1``; the share
   ``f_i(j)`` goes to party ``j``. ``finalize`` sums the received ``f_i(j)`` into the key
   share ``S_j = sum_i f_i(j)``, a Shamir share of ``s`` itself: any ``t`` of them
   reconstruct ``s`` (Lagrange at 0, :mod:`secagg.threshold`), fewer reveal nothing.

This module is transport-free. In a deployment the key ceremony relays the messages
through the server: bodies are encoded by :mod:`secagg.protocol.ceremony`, every message
is signed by its sender (Ed25519), each share is sealed to its recipient
(:mod:`secagg.protocol.sealing`: X25519, HKDF-SHA256, ChaCha20-Poly1305), and every key
holder endorses the resulting joint public key before clients use it.

Security
--------
This module alone is semi-honest: nothing here detects a key holder that picks its
``b_i`` after seeing the others' (a rogue key whose secret it alone knows) or sends
inconsistent shares. The key ceremony adds what does: every key holder commits to
``b_i`` and to each share before any is revealed, and the joint key is test-decrypted
by every t-subset before anyone endorses it (:mod:`secagg.keycheck`,
:mod:`clients.keyholder.ceremony`). There are no proofs of knowledge of ``s_i``, ``e_i``
(see the threat model for what remains). Party state holds secrets; drop it after
``finalize``. :func:`dealerless_keygen` runs all parties in one process and is meant for
tests, benchmarks and demos, not for production keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

import numpy as np

from secagg import constants as C
from secagg._internal.modarith import U64, add_mod, mul_mod, neg_mod, signed_to_residues
from secagg._internal.sampling import Shake256Stream, centered_binomial, ternary, uniform_mod
from secagg._internal.seal_backend import backend_for
from secagg._internal.shamir import share
from secagg.errors import InvalidKeyMaterial, ParameterError
from secagg.keys import JointPublicKey, KeySet, KeyShare
from secagg.params import Parameters

SEED_BYTES = 32


def _check_roster(params: Parameters, n: int, t: int) -> None:
    if not 1 <= t <= n:
        raise ParameterError(f"threshold must satisfy 1 <= t <= n, got t={t}, n={n}")
    if n > params.max_keyholders:
        raise ParameterError(
            f"n={n} key holders exceeds the parameter budget of {params.max_keyholders}"
        )


def seed_commitment(index: int, seed: bytes) -> bytes:
    """Commitment to a seed contribution."""
    return hashlib.sha256(C.DOMAIN_SEED_COMMIT + index.to_bytes(4, "big") + seed).digest()


def common_seed(commitments: Mapping[int, bytes], reveals: Mapping[int, bytes]) -> bytes:
    """Check every reveal against its commitment; hash all reveals (index order) into one seed."""
    if set(commitments) != set(reveals) or not commitments:
        raise InvalidKeyMaterial("reveals do not match the set of commitments")
    h = hashlib.sha256(C.DOMAIN_COMMON_POLY)
    for i in sorted(reveals):
        seed = reveals[i]
        if len(seed) != SEED_BYTES or not hmac.compare_digest(
            seed_commitment(i, seed), commitments[i]
        ):
            raise InvalidKeyMaterial(f"seed reveal of key holder {i} does not match its commitment")
        h.update(i.to_bytes(4, "big") + seed)
    return h.digest()


def common_polynomial(params: Parameters, seed: bytes) -> U64:
    """The common uniform polynomial ``a`` (NTT form, key level) expanded from the seed."""
    stream = Shake256Stream(C.DOMAIN_COMMON_POLY, seed)
    return np.stack(
        [uniform_mod(q, params.poly_modulus_degree, stream) for q in params.coeff_modulus]
    )


class DkgParticipant:
    """One key holder's side of the key generation. Holds secrets until finalized."""

    def __init__(self, params: Parameters, *, index: int, keyholders: int, threshold: int) -> None:
        _check_roster(params, keyholders, threshold)
        if not 1 <= index <= keyholders:
            raise ParameterError(f"index must lie in 1..{keyholders}")
        self.params = params
        self.index = index
        self.keyholders = keyholders
        self.threshold = threshold
        self._seed = os.urandom(SEED_BYTES)
        n = params.poly_modulus_degree
        secret = ternary(n)
        noise = centered_binomial(n, C.CBD_ETA)
        polys = np.stack(
            [
                signed_to_residues(secret, params.coeff_modulus),
                signed_to_residues(noise, params.coeff_modulus),
            ]
        )
        ntt = backend_for(params).ntt_key_level(polys)
        self._secret_ntt: U64 = ntt[0]
        self._noise_ntt: U64 = ntt[1]

    def commitment(self) -> bytes:
        """Commitment to this party's seed contribution (publish first)."""
        return seed_commitment(self.index, self._seed)

    def reveal(self) -> bytes:
        """The seed contribution (publish after all commitments are in)."""
        return self._seed

    def public_key_contribution(self, seed: bytes) -> U64:
        """``b_i = -a * s_i + e_i`` for the common seed (NTT form, key level)."""
        a = common_polynomial(self.params, seed)
        out = np.empty_like(a)
        for j, q in enumerate(self.params.coeff_modulus):
            out[j] = add_mod(
                neg_mod(mul_mod(a[j], self._secret_ntt[j], q), q), self._noise_ntt[j], q
            )
        return out

    def outgoing_shares(self) -> dict[int, U64]:
        """Shamir shares ``f_i(j)`` of ``s_i`` for every party ``j`` (including this one)."""
        data = len(self.params.data_primes)
        return share(
            self._secret_ntt[:data], self.params.data_primes, n=self.keyholders, t=self.threshold
        )

    def finalize(self, received: Mapping[int, U64], public_key: JointPublicKey) -> KeyShare:
        """Sum the shares received from all ``n`` parties into ``S_index``."""
        if set(received) != set(range(1, self.keyholders + 1)):
            raise InvalidKeyMaterial("need exactly one share from every key holder")
        primes = self.params.data_primes
        shape = (len(primes), self.params.poly_modulus_degree)
        total = np.zeros(shape, dtype=np.uint64)
        for sender, piece in received.items():
            if piece.shape != shape or piece.dtype != np.uint64:
                raise InvalidKeyMaterial(f"share from key holder {sender} has the wrong shape")
            for j, q in enumerate(primes):
                if (piece[j] >= np.uint64(q)).any():
                    raise InvalidKeyMaterial(f"share from key holder {sender} is not reduced")
                total[j] = add_mod(total[j], piece[j], q)
        self._seed = b""
        return KeyShare(
            self.params, self.index, self.keyholders, self.threshold, public_key.id_bytes, total
        )


def combine_public_key(
    params: Parameters,
    seed: bytes,
    contributions: Mapping[int, U64],
    *,
    keyholders: int,
    threshold: int,
) -> JointPublicKey:
    """``pk = (sum_i b_i, a)`` from every party's contribution."""
    _check_roster(params, keyholders, threshold)
    if set(contributions) != set(range(1, keyholders + 1)):
        raise InvalidKeyMaterial("need one public-key contribution from every key holder")
    a = common_polynomial(params, seed)
    pk0 = np.zeros_like(a)
    for i, b in contributions.items():
        if b.shape != a.shape:
            raise InvalidKeyMaterial(f"contribution of key holder {i} has the wrong shape")
        for j, q in enumerate(params.coeff_modulus):
            if (b[j] >= np.uint64(q)).any():
                raise InvalidKeyMaterial(f"contribution of key holder {i} is not reduced")
            pk0[j] = add_mod(pk0[j], b[j], q)
    return JointPublicKey(params, keyholders, threshold, np.stack([pk0, a]))


def dealerless_keygen(*, n: int, t: int, params: Parameters) -> KeySet:
    """Run the DKG for ``n`` parties with threshold ``t`` inside this process.

    Security
    --------
    Every party's secret passes through this one process: use it for tests, benchmarks
    and local demos. Real deployments run :class:`DkgParticipant` in separate key holders.
    It makes no commitments and runs no test decryption: every party here is this
    process, so there is nobody to check (:mod:`secagg.keycheck` is what the ceremony adds).
    """
    _check_roster(params, n, t)
    parties = [DkgParticipant(params, index=i, keyholders=n, threshold=t) for i in range(1, n + 1)]
    seed = common_seed(
        {p.index: p.commitment() for p in parties}, {p.index: p.reveal() for p in parties}
    )
    pk = combine_public_key(
        params,
        seed,
        {p.index: p.public_key_contribution(seed) for p in parties},
        keyholders=n,
        threshold=t,
    )
    outgoing = {p.index: p.outgoing_shares() for p in parties}
    shares = tuple(p.finalize({i: outgoing[i][p.index] for i in outgoing}, pk) for p in parties)
    return KeySet(pk, shares)
