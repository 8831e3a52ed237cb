"""Shamir sharing of RNS residues (every t-subset) and the dealerless key generation."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from _support import centered, intt, joint_secret

import secagg
from secagg import constants as C
from secagg import dkg
from secagg._internal import shamir
from secagg._internal.modarith import add_mod, mul_mod
from secagg._internal.sampling import uniform_mod

PARAMS = secagg.Parameters.default()
PRIMES = PARAMS.coeff_modulus  # all three: sharing works for any primes
WIDTH = 16


def random_secret(primes: tuple[int, ...] = PRIMES, width: int = WIDTH) -> np.ndarray:
    secret = np.stack([uniform_mod(q, width) for q in primes])
    secret[:, 0] = 0  # edge values ride along
    secret[:, 1] = [q - 1 for q in primes]
    return secret


@pytest.mark.parametrize("n,t", [(3, 2), (5, 3), (4, 4), (5, 1)])
def test_every_t_subset_reconstructs(n: int, t: int) -> None:
    secret = random_secret()
    shares = shamir.share(secret, PRIMES, n=n, t=t)
    assert sorted(shares) == list(range(1, n + 1))
    for x, s in shares.items():
        assert s.shape == secret.shape and s.dtype == np.uint64
        assert all(int(s[j].max()) < q for j, q in enumerate(PRIMES)), x
    for subset in combinations(range(1, n + 1), t):
        got = shamir.reconstruct({i: shares[i] for i in subset}, PRIMES)
        assert np.array_equal(got, secret), subset
    # More than t shares reconstruct too.
    if t < n:
        assert np.array_equal(shamir.reconstruct(shares, PRIMES), secret)


@pytest.mark.parametrize("n,t", [(3, 2), (5, 3), (4, 4)])
def test_no_t_minus_1_subset_reconstructs(n: int, t: int) -> None:
    secret = random_secret()
    shares = shamir.share(secret, PRIMES, n=n, t=t)
    for subset in combinations(range(1, n + 1), t - 1):
        got = shamir.reconstruct({i: shares[i] for i in subset}, PRIMES)
        # Each coefficient matches only by chance (probability ~2^-60 each).
        assert (got == secret).mean() < 0.25, subset


def test_threshold_one_shares_are_the_secret() -> None:
    secret = random_secret()
    shares = shamir.share(secret, PRIMES, n=5, t=1)
    assert all(np.array_equal(s, secret) for s in shares.values())


def test_shares_are_fresh() -> None:
    secret = random_secret()
    a = shamir.share(secret, PRIMES, n=3, t=2)
    b = shamir.share(secret, PRIMES, n=3, t=2)
    assert not np.array_equal(a[1], b[1])


def test_shares_lie_on_a_degree_t_minus_1_polynomial() -> None:
    """Share x is f(x) for one polynomial f of degree t-1 with f(0) = secret (per prime)."""
    n, t = 5, 3
    secret = random_secret()
    shares = shamir.share(secret, PRIMES, n=n, t=t)
    for j, q in enumerate(PRIMES):
        for k in range(WIDTH):
            # Interpolate from shares 1..t, predict shares t+1..n with Python ints.
            pts = {x: int(shares[x][j, k]) for x in range(1, t + 1)}
            for target in (0, *range(t + 1, n + 1)):
                value = 0
                for x, y in pts.items():
                    num = den = 1
                    for m in pts:
                        if m != x:
                            num *= target - m
                            den *= x - m
                    value += y * num * pow(den, -1, q)
                expected = int(secret[j, k]) if target == 0 else int(shares[target][j, k])
                assert value % q == expected


@pytest.mark.parametrize(
    "quorum", [(1,), (1, 2), (2, 5), (1, 2, 3), (1, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5, 6, 7, 8)]
)
@pytest.mark.parametrize("q", PRIMES)
def test_lagrange_at_zero(quorum: tuple[int, ...], q: int) -> None:
    lam = shamir.lagrange_at_zero(quorum, q)
    assert sorted(lam) == sorted(quorum)
    assert all(0 <= v < q for v in lam.values())
    assert sum(lam.values()) % q == 1  # interpolates the constant 1
    for power in range(1, len(quorum)):  # and x^k (0 < k < |Q|) to 0 at zero
        assert sum(v * pow(i, power, q) for i, v in lam.items()) % q == 0


def test_lagrange_ignores_order_and_duplicates() -> None:
    q = PRIMES[0]
    assert shamir.lagrange_at_zero([3, 1, 2, 1], q) == shamir.lagrange_at_zero((1, 2, 3), q)


@pytest.mark.parametrize("bad", [(0, 1), (-1, 2), (1, PRIMES[0])])
def test_lagrange_refuses_bad_members(bad: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        shamir.lagrange_at_zero(bad, PRIMES[0])


def test_share_refuses_bad_arguments() -> None:
    secret = random_secret()
    for n, t in ((3, 0), (3, 4)):
        with pytest.raises(ValueError):
            shamir.share(secret, PRIMES, n=n, t=t)
    with pytest.raises(ValueError):
        shamir.share(secret, PRIMES[:2], n=3, t=2)


def test_sharing_is_linear() -> None:
    """What the DKG relies on: summing shares shares the sum."""
    a, b = random_secret(), random_secret()
    sa, sb = shamir.share(a, PRIMES, n=4, t=3), shamir.share(b, PRIMES, n=4, t=3)
    total = {
        x: np.stack([add_mod(sa[x][j], sb[x][j], q) for j, q in enumerate(PRIMES)]) for x in sa
    }
    expected = np.stack([add_mod(a[j], b[j], q) for j, q in enumerate(PRIMES)])
    assert np.array_equal(shamir.reconstruct({x: total[x] for x in (1, 3, 4)}, PRIMES), expected)


# --- dealerless key generation ------------------------------------------------------------


@pytest.fixture(scope="module")
def keys42() -> secagg.KeySet:
    return secagg.dealerless_keygen(n=4, t=2, params=PARAMS)


def test_keyset_shape(keys42: secagg.KeySet) -> None:
    pk = keys42.public_key
    assert (pk.keyholders, pk.threshold) == (4, 2)
    n, k, L = PARAMS.poly_modulus_degree, len(PARAMS.coeff_modulus), len(PARAMS.data_primes)
    assert pk.residues.shape == (2, k, n)
    assert [s.index for s in keys42.shares] == [1, 2, 3, 4]
    for s in keys42.shares:
        assert (s.keyholders, s.threshold, s.public_key_id) == (4, 2, pk.id_bytes)
        assert s.residues.shape == (L, n)


def test_dkg_shares_reconstruct_one_secret(keys42: secagg.KeySet) -> None:
    pairs = list(combinations(range(1, 5), 2))
    secrets = [joint_secret(keys42, pair) for pair in pairs]
    for pair, s in zip(pairs, secrets, strict=True):
        assert np.array_equal(s, secrets[0]), pair
    # A single share is not the secret.
    assert not np.array_equal(keys42.shares[0].residues, secrets[0])


def test_dkg_joint_secret_is_small_and_matches_public_key(keys42: secagg.KeySet) -> None:
    """s = sum of 4 ternary secrets, and pk0 + pk1 * s = sum of the 4 noises (small)."""
    s_ntt = joint_secret(keys42, (2, 4))
    s = intt(PARAMS, s_ntt)
    for j, q in enumerate(PARAMS.data_primes):
        coeffs = [int(v) for v in centered(s[j], q)]
        assert max(abs(v) for v in coeffs) <= 4
        assert coeffs == [int(v) for v in centered(s[0], PARAMS.data_primes[0])]
    pk0, pk1 = keys42.public_key.residues
    e_ntt = np.stack(
        [add_mod(pk0[j], mul_mod(pk1[j], s_ntt[j], q), q) for j, q in enumerate(PARAMS.data_primes)]
    )
    e = intt(PARAMS, e_ntt)
    bound = 4 * C.CBD_BOUND
    for j, q in enumerate(PARAMS.data_primes):
        coeffs = centered(e[j], q)
        assert max(abs(int(v)) for v in coeffs) <= bound
        assert any(int(v) != 0 for v in coeffs)


def test_dkg_keys_are_fresh(keys42: secagg.KeySet) -> None:
    other = secagg.dealerless_keygen(n=4, t=2, params=PARAMS)
    assert other.public_key.id_bytes != keys42.public_key.id_bytes
    assert not np.array_equal(joint_secret(other, (1, 2)), joint_secret(keys42, (1, 2)))


def _participants(n: int = 3, t: int = 2) -> list[secagg.DkgParticipant]:
    return [
        secagg.DkgParticipant(PARAMS, index=i, keyholders=n, threshold=t) for i in range(1, n + 1)
    ]


def test_common_seed_checks_reveals() -> None:
    parts = _participants()
    commitments = {p.index: p.commitment() for p in parts}
    reveals = {p.index: p.reveal() for p in parts}
    seed = secagg.common_seed(commitments, reveals)
    assert len(seed) == 32 and seed == secagg.common_seed(commitments, dict(reveals))

    wrong = dict(reveals)
    wrong[2] = bytes(32)
    with pytest.raises(secagg.InvalidKeyMaterial):
        secagg.common_seed(commitments, wrong)
    swapped = dict(reveals)
    swapped[1], swapped[2] = reveals[2], reveals[1]
    with pytest.raises(secagg.InvalidKeyMaterial):
        secagg.common_seed(commitments, swapped)
    flipped = dict(reveals)
    flipped[3] = bytes([reveals[3][0] ^ 1]) + reveals[3][1:]
    with pytest.raises(secagg.InvalidKeyMaterial):
        secagg.common_seed(commitments, flipped)
    with pytest.raises(secagg.InvalidKeyMaterial):
        secagg.common_seed(commitments, {1: reveals[1], 2: reveals[2]})  # one missing
    with pytest.raises(secagg.InvalidKeyMaterial):
        secagg.common_seed(commitments, {**reveals, 4: bytes(32)})  # one too many
    with pytest.raises(secagg.InvalidKeyMaterial):
        secagg.common_seed({}, {})
    short = {1: reveals[1][:31]}
    with pytest.raises(secagg.InvalidKeyMaterial):
        secagg.common_seed({1: dkg.seed_commitment(1, short[1])}, short)


def test_manual_dkg_matches_dealerless_flow() -> None:
    """The per-party API run by hand yields a working key set."""
    n, t = 3, 2
    parts = _participants(n, t)
    seed = secagg.common_seed(
        {p.index: p.commitment() for p in parts}, {p.index: p.reveal() for p in parts}
    )
    pk = secagg.combine_public_key(
        PARAMS,
        seed,
        {p.index: p.public_key_contribution(seed) for p in parts},
        keyholders=n,
        threshold=t,
    )
    outgoing = {p.index: p.outgoing_shares() for p in parts}
    shares = [p.finalize({i: outgoing[i][p.index] for i in outgoing}, pk) for p in parts]
    keys = secagg.KeySet(pk, tuple(shares))
    x = np.linspace(-3, 3, 100)
    agg = secagg.aggregate([secagg.encrypt(pk, x)])
    parts13 = [secagg.partial_decrypt(shares[i - 1], agg, quorum=[1, 3]) for i in (1, 3)]
    assert np.max(np.abs(secagg.combine(agg, parts13) - x)) <= PARAMS.precision
    assert keys.public_key is pk


def test_finalize_and_combine_refuse_bad_material() -> None:
    n, t = 3, 2
    parts = _participants(n, t)
    seed = secagg.common_seed(
        {p.index: p.commitment() for p in parts}, {p.index: p.reveal() for p in parts}
    )
    contributions = {p.index: p.public_key_contribution(seed) for p in parts}
    with pytest.raises(secagg.InvalidKeyMaterial):
        secagg.combine_public_key(
            PARAMS, seed, {1: contributions[1], 2: contributions[2]}, keyholders=n, threshold=t
        )
    bad = dict(contributions)
    bad[2] = bad[2].copy()
    bad[2][0, 0] = np.uint64(PARAMS.coeff_modulus[0])
    with pytest.raises(secagg.InvalidKeyMaterial):
        secagg.combine_public_key(PARAMS, seed, bad, keyholders=n, threshold=t)
    pk = secagg.combine_public_key(PARAMS, seed, contributions, keyholders=n, threshold=t)
    outgoing = {p.index: p.outgoing_shares() for p in parts}
    received = {i: outgoing[i][1] for i in outgoing}
    with pytest.raises(secagg.InvalidKeyMaterial):
        parts[0].finalize({i: received[i] for i in (1, 2)}, pk)
    unreduced = dict(received)
    unreduced[3] = unreduced[3].copy()
    unreduced[3][1, 5] = np.uint64(PARAMS.data_primes[1])
    with pytest.raises(secagg.InvalidKeyMaterial):
        parts[0].finalize(unreduced, pk)
    wrong_shape = dict(received)
    wrong_shape[2] = wrong_shape[2][:, :100]
    with pytest.raises(secagg.InvalidKeyMaterial):
        parts[0].finalize(wrong_shape, pk)


@pytest.mark.parametrize(
    "n,t",
    [(3, 4), (2, 3), (3, 0), (0, 0), (PARAMS.max_keyholders + 1, 2), (20, 20)],
)
def test_dealerless_keygen_refuses_bad_roster(n: int, t: int) -> None:
    with pytest.raises(secagg.ParameterError):
        secagg.dealerless_keygen(n=n, t=t, params=PARAMS)


def test_participant_refuses_bad_roster() -> None:
    for kwargs in (
        {"index": 0, "keyholders": 3, "threshold": 2},
        {"index": 4, "keyholders": 3, "threshold": 2},
        {"index": 1, "keyholders": 3, "threshold": 4},
        {"index": 1, "keyholders": PARAMS.max_keyholders + 1, "threshold": 2},
    ):
        with pytest.raises(secagg.ParameterError):
            secagg.DkgParticipant(PARAMS, **kwargs)


def test_keygen_at_the_keyholder_limit() -> None:
    n = PARAMS.max_keyholders
    keys = secagg.dealerless_keygen(n=n, t=n, params=PARAMS)
    assert len(keys.shares) == n
    s_all = joint_secret(keys, range(1, n + 1))
    s = intt(PARAMS, s_all)
    assert max(abs(int(v)) for v in centered(s[0], PARAMS.data_primes[0])) <= n
