"""The parameter calculator and the validation of every parameter set."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import tenseal.sealapi as seal

import secagg
from secagg import constants as C
from secagg.params import fresh_noise_bound

DEFAULT = secagg.Parameters.default()


def test_default_security_and_budget() -> None:
    p = DEFAULT
    assert p.security_level == 128
    assert p.statistical_security >= 40
    assert p.precision <= 1e-7
    assert p.bytes_per_parameter <= 33
    assert p.decryption_margin_bits > 0
    assert p.poly_modulus_degree == 8192
    assert len(p.data_primes) == 2 and p.coeff_modulus[:-1] == p.data_primes
    assert all(q.bit_length() == 60 for q in p.coeff_modulus)
    assert p.max_total_weight == 2**16 and p.max_keyholders == 8
    assert p.value_bound == 16.0
    assert p.plain_modulus == 2**p.plain_modulus_bits
    assert p.plain_modulus_bits >= p.message_bits


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
    assert p.statistical_security == pytest.approx(p.flooding_bits - math.log2(p.noise_bound))
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
    ],
    ids=repr,
)
def test_calculated_sets_meet_their_targets(kwargs: dict) -> None:
    p = secagg.Parameters.calculate(**kwargs)
    assert p.statistical_security >= kwargs.get("statistical_security", 40) - 1e-9
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
    ],
    ids=repr,
)
def test_calculate_refuses_impossible_targets(kwargs: dict) -> None:
    with pytest.raises(secagg.ParameterError):
        secagg.Parameters.calculate(**kwargs)


def _seal_primes(bits: list[int], n: int = 8192) -> tuple[int, ...]:
    return tuple(m.value() for m in seal.CoeffModulus.Create(n, bits))


@pytest.mark.parametrize(
    "changes,problem",
    [
        ({"flooding_bits": DEFAULT.flooding_bits - 2}, "statistical security"),
        ({"flooding_bits": 40}, "statistical security"),
        ({"plain_modulus_bits": 60}, "decryption fails"),
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
def test_direct_construction_validates(changes: dict, problem: str) -> None:
    with pytest.raises(secagg.ParameterError, match=re.escape(problem)):
        dataclasses.replace(DEFAULT, **changes)


def test_all_problems_are_named_at_once() -> None:
    with pytest.raises(secagg.ParameterError) as info:
        dataclasses.replace(DEFAULT, plain_modulus_bits=61, fractional_bits=0)
    assert "plain_modulus_bits" in str(info.value) and "fractional_bits" in str(info.value)


def test_describe_has_the_documented_keys() -> None:
    d = DEFAULT.describe()
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
        "statistical_security_bits",
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
    assert d["precision_mean"] == DEFAULT.precision
    assert d["coeff_modulus_bits"] == [60, 60, 60]
    assert d["data_primes"] == 2
    import json

    json.dumps(d)  # JSON-friendly
