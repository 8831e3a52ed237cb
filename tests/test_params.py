"""The parameter calculator and the validation of every parameter set."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest
import tenseal.sealapi as seal

import secagg
from secagg import constants as C
from secagg.noise import fresh_noise_bound

DEFAULT = secagg.Parameters.default()


def test_default_security_and_budget() -> None:
    p = DEFAULT
    assert p.security_level == 128
    assert p.statistical_security >= 40
    assert p.precision <= 1e-8
    assert p.bytes_per_parameter <= 45
    assert p.decryption_margin_bits > 0
    assert p.poly_modulus_degree == 8192
    assert len(p.data_primes) == 3 and p.coeff_modulus[:-1] == p.data_primes
    assert [q.bit_length() for q in p.coeff_modulus] == [53, 53, 52, 60]
    assert p.max_total_weight == 2**16 and p.max_keyholders == 8
    assert p.value_bound == 16.0
    assert p.plain_modulus == 2**p.plain_modulus_bits
    assert p.plain_modulus_bits >= p.message_bits


def test_default_decryption_budget() -> None:
    """2^32 coefficients at least: e.g. 100 rounds x 10^7 parameters x 3 quorums ~ 2^31.5."""
    p = DEFAULT
    assert p.decryption_budget_bits == C.DEFAULT_DECRYPTION_BUDGET_BITS
    assert p.decryption_budget == 2**p.decryption_budget_bits >= 2**32
    assert p.decryption_budget >= 100 * 10**7 * 3
    # The flooding is sized for the whole budget: 2^-40 over 2^beta coefficients.
    assert 2.0**p.flooding_bits >= 2.0 ** (40 + p.decryption_budget_bits) * p.noise_bound
    assert p.decryption_budget * 2.0**-p.statistical_security_per_coefficient <= 2.0**-40


def test_default_fits_seal_128_bit_table() -> None:
    total = sum(q.bit_length() for q in DEFAULT.coeff_modulus)
    assert total <= seal.CoeffModulus.MaxBitCount(8192, seal.SEC_LEVEL_TYPE.TC128)
    for q in DEFAULT.coeff_modulus:
        assert q % (2 * DEFAULT.poly_modulus_degree) == 1


def test_derived_quantities_are_consistent() -> None:
    p = DEFAULT
    assert p.precision == 2.0 ** -(p.fractional_bits + 1)
    assert p.noise_bound == pytest.approx(
        p.max_total_weight * fresh_noise_bound(p.poly_modulus_degree, p.max_keyholders, 40)
    )
    per_coefficient = p.flooding_bits - math.log2(p.noise_bound)
    assert p.statistical_security_per_coefficient == pytest.approx(per_coefficient)
    assert p.statistical_security == pytest.approx(per_coefficient - p.decryption_budget_bits)
    worst = p.noise_bound + p.max_keyholders * 2.0**p.flooding_bits
    q_data = math.prod(p.data_primes)
    assert p.decryption_margin_bits == pytest.approx(
        math.log2(q_data / (2 * p.plain_modulus) / worst)
    )
    assert p.bytes_per_parameter == 2 * len(p.data_primes) * 60 / 8
    assert p.weight_resolution == 1 / p.max_total_weight


def test_id_is_stable_and_distinguishes_budgets() -> None:
    a, b = secagg.Parameters.default(), secagg.Parameters.calculate()
    assert a.id == b.id and a.id_bytes == b.id_bytes and a == b
    assert len(a.id_bytes) == C.PARAMS_ID_BYTES and a.id == a.id_bytes.hex()
    others = [
        secagg.Parameters.calculate(max_total_weight=2**10),
        secagg.Parameters.calculate(max_total_weight=2**16 - 1),
        secagg.Parameters.calculate(max_keyholders=4),
        secagg.Parameters.calculate(value_bound=8.0),
        dataclasses.replace(DEFAULT, max_keyholders=4),
        secagg.Parameters.calculate(decryption_budget_bits=32),
        dataclasses.replace(DEFAULT, decryption_budget_bits=DEFAULT.decryption_budget_bits - 1),
    ]
    ids = {a.id, *(o.id for o in others)}
    assert len(ids) == len(others) + 1


def test_id_is_a_pure_function_of_the_fields() -> None:
    rebuilt = secagg.Parameters(
        **{f.name: getattr(DEFAULT, f.name) for f in dataclasses.fields(DEFAULT)}
    )
    assert rebuilt.id == DEFAULT.id


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_total_weight": 2**10},
        {"max_total_weight": 1},
        {"max_total_weight": 2**17},
        {"max_keyholders": 2},
        {"max_keyholders": 16},
        {"value_bound": 1.0},
        {"value_bound": 1000.0, "precision": 1e-6},
        {"statistical_security": 50, "precision": 1e-5},
        {"precision": 1e-5},
        {"decryption_budget_bits": 0},
        {"decryption_budget_bits": 32, "precision": 1e-9},
        {"decryption_budget_bits": 41},
    ],
    ids=repr,
)
def test_calculated_sets_meet_their_targets(kwargs: dict[str, Any]) -> None:
    p = secagg.Parameters.calculate(**kwargs)
    assert p.statistical_security >= kwargs.get("statistical_security", 40) - 1e-9
    bits = kwargs.get("decryption_budget_bits", C.DEFAULT_DECRYPTION_BUDGET_BITS)
    assert p.decryption_budget == 2**bits
    assert p.precision <= kwargs.get("precision", C.DEFAULT_PRECISION)
    assert p.decryption_margin_bits > 0
    assert p.value_bound >= kwargs.get("value_bound", C.DEFAULT_VALUE_BOUND)
    assert p.plain_modulus_bits >= p.message_bits


@pytest.mark.parametrize(
    "kwargs",
    [
        {"precision": 1e-30},
        {"precision": 1e-12},
        {"max_total_weight": 2**24},
        {"statistical_security": 39},
        {"statistical_security": 0},
        {"value_bound": 0.0},
        {"value_bound": -1.0},
        {"value_bound": float("inf")},
        {"value_bound": float("nan")},
        {"max_total_weight": 0},
        {"max_keyholders": 0},
        {"decryption_budget_bits": -1},
        {"decryption_budget_bits": 64},
    ],
    ids=repr,
)
def test_calculate_refuses_impossible_targets(kwargs: dict[str, Any]) -> None:
    with pytest.raises(secagg.ParameterError):
        secagg.Parameters.calculate(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"decryption_budget_bits": 42},  # 2^-23 misses the default precision of 1e-7
        {"decryption_budget_bits": 60},
        {"decryption_budget_bits": 39, "precision": 1e-8},
        {"decryption_budget_bits": 32, "coeff_modulus_bits": (60, 60, 60)},
    ],
    ids=repr,
)
def test_calculate_refuses_a_budget_that_does_not_fit(kwargs: dict[str, Any]) -> None:
    with pytest.raises(secagg.ParameterError, match="decryption_budget_bits"):
        secagg.Parameters.calculate(**kwargs)


def test_the_old_ring_fits_no_budget_at_the_old_precision() -> None:
    """Two 60-bit data primes: f = 26 only without a lifetime budget (why the ring grew)."""
    old = secagg.Parameters.calculate(coeff_modulus_bits=(60, 60, 60), decryption_budget_bits=0)
    assert old.fractional_bits == 26 and old.bytes_per_parameter == 30
    assert DEFAULT.fractional_bits == old.fractional_bits
    assert DEFAULT.bytes_per_parameter == 45


def test_a_set_at_seals_plain_modulus_limit_round_trips() -> None:
    """A small budget leaves t = 2^59, the largest SEAL accepts (2^60 has 61 bits)."""
    p = secagg.Parameters.calculate(decryption_budget_bits=0)
    assert p.plain_modulus_bits == C.MAX_PLAIN_MODULUS_BITS == 59
    keys = secagg.dealerless_keygen(n=3, t=2, params=p)
    xs = [[1.5, -2.25, 3.0], [0.5, 0.25, -1.0]]
    agg = secagg.aggregate([secagg.encrypt(keys.public_key, x) for x in xs], weights=[3, 1])
    parts = [secagg.partial_decrypt(keys.shares[i - 1], agg, quorum=[1, 3]) for i in (1, 3)]
    mean = secagg.combine(agg, parts)
    assert list(mean) == pytest.approx([1.25, -1.625, 2.0], abs=p.precision)


def _seal_primes(bits: list[int], n: int = 8192) -> tuple[int, ...]:
    return tuple(m.value() for m in seal.CoeffModulus.Create(n, bits))


@pytest.mark.parametrize(
    "changes,problem",
    [
        ({"flooding_bits": DEFAULT.flooding_bits - 2}, "statistical security"),
        ({"flooding_bits": 40}, "statistical security"),
        ({"decryption_budget_bits": DEFAULT.decryption_budget_bits + 1}, "statistical security"),
        ({"decryption_budget_bits": -1}, "decryption_budget_bits must lie"),
        ({"decryption_budget_bits": 64}, "decryption_budget_bits must lie"),
        ({"plain_modulus_bits": 59}, "decryption fails"),
        ({"plain_modulus_bits": 60}, "plain_modulus_bits must lie in [2, 59]"),
        ({"plain_modulus_bits": DEFAULT.plain_modulus_bits + 1}, "decryption fails"),
        ({"flooding_bits": DEFAULT.flooding_bits + 2}, "decryption fails"),
        ({"plain_modulus_bits": DEFAULT.message_bits - 1}, "cannot hold a weighted sum"),
        ({"plain_modulus_bits": 61}, "plain_modulus_bits"),
        ({"coeff_modulus": _seal_primes([60, 60, 60, 60])}, "128-bit security"),
        ({"coeff_modulus": _seal_primes([60])}, "at least one data prime"),
        ({"coeff_modulus": (DEFAULT.coeff_modulus[0],) * 3}, "distinct"),
        ({"coeff_modulus": (*DEFAULT.data_primes, 2**61 - 1)}, "NTT-friendly"),
        ({"coeff_modulus": (*DEFAULT.data_primes, 1000003)}, "NTT-friendly"),
        ({"poly_modulus_degree": 1000}, "poly_modulus_degree"),
        ({"fractional_bits": 0}, "fractional_bits"),
        ({"max_total_weight": 2**31}, "below 2^31"),
        ({"max_total_weight": 0}, "must be positive"),
        ({"value_bound": -1.0}, "must be positive"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_direct_construction_validates(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(secagg.ParameterError, match=re.escape(problem)):
        dataclasses.replace(DEFAULT, **changes)


def test_all_problems_are_named_at_once() -> None:
    with pytest.raises(secagg.ParameterError) as info:
        dataclasses.replace(DEFAULT, plain_modulus_bits=61, fractional_bits=0)
    assert "plain_modulus_bits" in str(info.value) and "fractional_bits" in str(info.value)


def test_describe_has_the_documented_keys() -> None:
    d: dict[str, Any] = DEFAULT.describe()
    expected = {
        "id",
        "scheme",
        "poly_modulus_degree",
        "coeff_modulus_bits",
        "data_primes",
        "plain_modulus_bits",
        "fractional_bits",
        "value_bound",
        "max_abs_value",
        "max_total_weight",
        "max_keyholders",
        "flooding_bits",
        "decryption_budget_bits",
        "decryption_budget_coefficients",
        "statistical_security_bits",
        "statistical_security_per_coefficient_bits",
        "security_level_bits",
        "precision_mean",
        "weight_resolution",
        "decryption_margin_bits",
        "bytes_per_parameter",
    }
    assert set(d) == expected
    assert d["id"] == DEFAULT.id
    assert d["security_level_bits"] == 128
    assert d["statistical_security_bits"] >= 40
    assert d["decryption_budget_bits"] == DEFAULT.decryption_budget_bits
    assert d["decryption_budget_coefficients"] == DEFAULT.decryption_budget >= 2**32
    assert d["statistical_security_per_coefficient_bits"] == pytest.approx(
        DEFAULT.statistical_security + DEFAULT.decryption_budget_bits, abs=0.01
    )
    assert d["precision_mean"] == DEFAULT.precision
    assert d["coeff_modulus_bits"] == [53, 53, 52, 60]
    assert d["data_primes"] == 3
    import json

    json.dumps(d)  # JSON-friendly
