"""Encryption parameters and the calculator that chooses them.

A :class:`Parameters` value fixes everything both sides must agree on: the BFV ring
(degree ``N``, RNS primes), the power-of-two plaintext modulus ``t``, the fixed-point
fractional bits ``f``, the budgets (value bound, maximum total weight, maximum number of
key holders, lifetime decryption budget of a key share) and the flooding-noise width.
:meth:`Parameters.calculate` derives ``t``, ``f`` and the flooding width from the budgets
(see *Bit budget* below) and validates the result; construction of any other combination
is validated the same way.

Notes
-----
*Encoding.* A value ``x`` becomes the integer ``round(x * 2^f)``, stored as one
coefficient of a BFV plaintext modulo ``t = 2^plain_modulus_bits`` (no batching, so ``t``
need not be prime). Weights are integers (real weights are scaled to integers first), so
the server's weighted sum is exact modulo ``t`` and decryption is exact: the only error
of a decrypted weighted mean is the ``2^-(f+1)`` of the rounding. No level is consumed:
the ciphertexts live on the data primes (every prime of ``coeff_modulus`` but the last,
SEAL's special prime, which only the keys use).

*Bit budget.* Write ``X = ceil(log2 value_bound)``, ``W = ceil(log2 max_total_weight)``,
``n = max_keyholders``, ``lambda`` the statistical security over a key's lifetime,
``beta`` the decryption-budget bits (a key share decrypts at most ``2^beta`` coefficients
in its lifetime), ``B`` the noise bound of an aggregate (below), ``b`` the flooding bits
and ``q`` the product of the data primes.

* The message: a signed weighted sum needs ``X + W + f + 1`` bits
  (:attr:`Parameters.message_bits`), so ``log2 t >= X + W + f + 1``.
* The flooding: ``2^b >= 2^(lambda + beta) * B`` (see *Flooding* below).
* Decryption: the combined noise of the aggregate and of up to ``n`` flooded partials
  must stay below ``q / (2t)``, i.e. ``B + n * 2^b < q / (2t)``
  (:attr:`Parameters.decryption_margin_bits` is the log2 of the slack).

:meth:`Parameters.calculate` takes ``b = ceil(lambda + beta + log2 B)``, gives ``t`` every
bit that decryption leaves, ``log2 t = floor(log2 q - 1 - log2(B + n * 2^b))`` (at most 59:
SEAL wants ``t`` below 2^60), and then ``f = log2 t - 1 - X - W``; it refuses the budgets
when ``f < 1`` or ``2^-(f+1)`` misses the requested precision. Roughly,
``log2 q ~ X + 2W + f + lambda + beta + log2 n + log2(fresh noise) + 2``: the total weight
enters twice (in the message and in the noise), which is why its default is a modest
``2^16``, and every bit of lifetime budget costs a bit of ``q``.
The defaults (``N = 8192``, data primes of 53/53/52 bits and a 60-bit special prime, so
``q ~ 2^158`` and the modulus uses all 218 bits of SEAL's 128-bit table
(``CoeffModulus.MaxBitCount``); ``X = 4``, ``W = 16``, ``n = 8``, ``lambda = 40``,
``beta = 38``) give ``B ~ 2^27.6``, ``b = 106``, ``t = 2^47`` and ``f = 26`` (error of a
mean at most ``2^-27 ~ 7.5e-9``), with a 1-bit decryption margin: a budget of ``2^38 ~
2.7e11`` coefficients per key share (e.g. 100 rounds of a 10^7-parameter model with 3
cross-checking quorums per key holder is ``~2^31.5``). The price of the third data prime
is the upload: 45 bytes per parameter instead of 30. Two 60-bit data primes (``q ~
2^120``) leave no room for any lifetime budget at this precision.

*Noise model.* See :mod:`secagg.noise`: ``B`` is ``max_total_weight`` times the bound on a
fresh ciphertext's noise (:func:`~secagg.noise.fresh_noise_bound`).

*Flooding.* Each partial decryption adds noise uniform in ``[-2^b, 2^b)`` per
coefficient. For one coefficient whose aggregate noise is at most ``B``, the statistical
distance between the flooded partial and one computed without the aggregate's noise is at
most ``B / 2^b <= 2^-(lambda + beta)``. Every decrypted coefficient adds its own term, so a
key share that decrypts ``D`` coefficients in its lifetime reveals at most
``D * 2^-(lambda + beta)`` in total (union bound): at most ``2^-lambda`` while ``D <= 2^beta``,
:attr:`Parameters.decryption_budget`. The key holder counts every partial it computes
(each cross-checking quorum included) and refuses past the budget
(``clients.keyholder.budget``). Nothing bounds the leak past the budget: the key must
then be replaced by a new ceremony. The bound assumes honestly generated ciphertexts
whose noise respects ``B`` (a client that crafts a ciphertext with huge noise defeats
flooding; see the threat model), and the Hoeffding bound on ``B`` itself holds except with
probability ``2^-kappa`` (``kappa = 40``) per fresh ciphertext.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from functools import cached_property

from secagg import constants as C
from secagg._internal.seal_limits import SUPPORTED_DEGREES, seal_max_bits, seal_primes
from secagg.errors import ParameterError
from secagg.noise import fresh_noise_bound


@dataclass(frozen=True, kw_only=True)
class Parameters:
    """A validated BFV parameter set with fixed-point encoding and threshold budgets.

    Build it with :meth:`default` or :meth:`calculate`; direct construction validates too
    and raises :class:`~secagg.errors.ParameterError`.

    Security
    --------
    Computational security is checked against SEAL's 128-bit table for ``N``. Statistical
    security of the flooding noise is :attr:`statistical_security` bits over a key share's
    whole lifetime of :attr:`decryption_budget` decrypted coefficients (see the module
    notes); the constructor refuses less than 40 bits. The budget holds only if key
    holders count what they decrypt and refuse past it.
    """

    poly_modulus_degree: int
    coeff_modulus: tuple[int, ...]
    plain_modulus_bits: int
    fractional_bits: int
    value_bound: float
    max_total_weight: int
    max_keyholders: int
    flooding_bits: int
    decryption_budget_bits: int

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ParameterError("invalid parameters: " + "; ".join(problems))

    # --- construction ---------------------------------------------------------------
    @classmethod
    def default(cls) -> Parameters:
        """The default set: N=8192, three data primes, 2^16 total weight, 8 key holders.

        Each key share may decrypt ``2^38`` coefficients (see the module notes).
        """
        return cls.calculate()

    @classmethod
    def calculate(
        cls,
        *,
        value_bound: float = C.DEFAULT_VALUE_BOUND,
        max_total_weight: int = C.DEFAULT_MAX_TOTAL_WEIGHT,
        precision: float = C.DEFAULT_PRECISION,
        statistical_security: int = C.DEFAULT_STATISTICAL_SECURITY,
        max_keyholders: int = C.DEFAULT_MAX_KEYHOLDERS,
        poly_modulus_degree: int = C.DEFAULT_POLY_MODULUS_DEGREE,
        coeff_modulus_bits: tuple[int, ...] = C.DEFAULT_COEFF_MODULUS_BITS,
        decryption_budget_bits: int = C.DEFAULT_DECRYPTION_BUDGET_BITS,
    ) -> Parameters:
        """Derive ``t``, ``f`` and the flooding width from the budgets.

        Parameters
        ----------
        value_bound
            Every encrypted value must satisfy ``|x| < value_bound`` (precisely:
            ``|x| < max_abs_value = value_bound - 2^-(f+1)``, so that it rounds inside).
        max_total_weight
            Largest sum of (integer) aggregation weights the modulus is budgeted for.
        precision
            Required bound on the absolute error of a decrypted weighted mean.
        statistical_security
            Bits of statistical security of the flooding noise over a key share's whole
            lifetime (>= 40).
        max_keyholders
            Largest number of key holders ``n`` (the joint secret's norm and the
            number of flooded partials grow with it).
        poly_modulus_degree, coeff_modulus_bits
            The ring: ``N`` and the bit sizes of the RNS primes, SEAL's special prime last.
        decryption_budget_bits
            A key share may decrypt ``2^decryption_budget_bits`` coefficients in its
            lifetime; the flooding grows by one bit per bit of budget.

        Raises
        ------
        ParameterError
            If no fractional bit count meets ``precision`` within the modulus budget (a
            budget too large for the ring), or an argument is out of range.
        """
        if statistical_security < C.MIN_STATISTICAL_SECURITY:
            raise ParameterError(
                f"statistical_security must be >= {C.MIN_STATISTICAL_SECURITY} bits"
            )
        if not value_bound > 0 or not math.isfinite(value_bound):
            raise ParameterError("value_bound must be a positive finite number")
        if max_total_weight < 1 or max_keyholders < 1:
            raise ParameterError("max_total_weight and max_keyholders must be positive")
        if not 0 <= decryption_budget_bits <= C.MAX_DECRYPTION_BUDGET_BITS:
            raise ParameterError(
                f"decryption_budget_bits must lie in [0, {C.MAX_DECRYPTION_BUDGET_BITS}]"
            )
        primes = seal_primes(poly_modulus_degree, coeff_modulus_bits)
        data_q = math.prod(primes[:-1])
        noise = max_total_weight * fresh_noise_bound(
            poly_modulus_degree, max_keyholders, statistical_security
        )
        flooding_bits = math.ceil(statistical_security + decryption_budget_bits + math.log2(noise))
        # Decryption is correct while noise + n * 2^b < q / (2t).
        headroom = math.log2(data_q) - 1 - math.log2(noise + max_keyholders * 2.0**flooding_bits)
        plain_bits = min(math.floor(headroom - 1e-9), C.MAX_PLAIN_MODULUS_BITS)
        x_bits = math.ceil(math.log2(value_bound))
        w_bits = math.ceil(math.log2(max_total_weight))
        fractional_bits = plain_bits - 1 - x_bits - w_bits
        if fractional_bits < 1 or 2.0 ** -(fractional_bits + 1) > precision:
            raise ParameterError(
                f"cannot reach precision {precision:g} with a decryption budget of "
                f"2^{decryption_budget_bits} coefficients: the modulus leaves "
                f"{fractional_bits} fractional bits; lower max_total_weight, value_bound, "
                f"max_keyholders or decryption_budget_bits, or use a larger ring"
            )
        return cls(
            poly_modulus_degree=poly_modulus_degree,
            coeff_modulus=primes,
            plain_modulus_bits=plain_bits,
            fractional_bits=fractional_bits,
            value_bound=float(2**x_bits),
            max_total_weight=max_total_weight,
            max_keyholders=max_keyholders,
            flooding_bits=flooding_bits,
            decryption_budget_bits=decryption_budget_bits,
        )

    # --- validation ----------------------------------------------------------------
    def _problems(self) -> list[str]:
        """Collect every problem, so the error names them all at once."""
        p: list[str] = []
        n = self.poly_modulus_degree
        if n not in SUPPORTED_DEGREES:
            p.append(f"poly_modulus_degree must be one of {SUPPORTED_DEGREES}")
            return p
        if len(self.coeff_modulus) < 2:
            p.append("coeff_modulus needs at least one data prime and the special prime")
        if len(set(self.coeff_modulus)) != len(self.coeff_modulus):
            p.append("coeff_modulus primes must be distinct")
        for q in self.coeff_modulus:
            if not 2 < q < 2**60 or q % (2 * n) != 1 or pow(3, q - 1, q) != 1:
                p.append(f"coeff_modulus entry {q} is not an NTT-friendly prime below 2^60")
        total_bits = sum(q.bit_length() for q in self.coeff_modulus)
        if total_bits > seal_max_bits(n):
            p.append(
                f"coeff_modulus has {total_bits} bits; 128-bit security allows "
                f"{seal_max_bits(n)} for N={n}"
            )
        if not 2 <= self.plain_modulus_bits <= C.MAX_PLAIN_MODULUS_BITS:
            p.append(f"plain_modulus_bits must lie in [2, {C.MAX_PLAIN_MODULUS_BITS}]")
        if not 0 <= self.decryption_budget_bits <= C.MAX_DECRYPTION_BUDGET_BITS:
            p.append(f"decryption_budget_bits must lie in [0, {C.MAX_DECRYPTION_BUDGET_BITS}]")
        if self.value_bound <= 0 or self.max_total_weight < 1 or self.max_keyholders < 1:
            p.append("value_bound, max_total_weight and max_keyholders must be positive")
        if self.max_total_weight >= 2**31:
            p.append("max_total_weight must be below 2^31")
        if self.fractional_bits < 1:
            p.append("fractional_bits must be positive")
        if p:
            return p
        if self.plain_modulus_bits < self.message_bits:
            p.append(
                f"plain modulus of {self.plain_modulus_bits} bits cannot hold a weighted sum "
                f"of {self.message_bits} bits"
            )
        if self.statistical_security < C.MIN_STATISTICAL_SECURITY:
            p.append(
                f"flooding gives {self.statistical_security:.1f} bits of statistical "
                f"security over a budget of 2^{self.decryption_budget_bits} coefficients; "
                f"at least {C.MIN_STATISTICAL_SECURITY} required"
            )
        if self.decryption_margin_bits <= 0:
            p.append("flooding noise of a full quorum would exceed q/(2t): decryption fails")
        return p

    # --- derived quantities ---------------------------------------------------------
    @property
    def data_primes(self) -> tuple[int, ...]:
        """RNS primes of the ciphertexts (all but SEAL's special prime)."""
        return self.coeff_modulus[:-1]

    @property
    def plain_modulus(self) -> int:
        """The plaintext modulus ``t = 2^plain_modulus_bits``."""
        return 1 << self.plain_modulus_bits

    @property
    def message_bits(self) -> int:
        """Bits needed by a signed weighted sum: ``X + W + f + 1``."""
        x_bits = math.ceil(math.log2(self.value_bound))
        w_bits = math.ceil(math.log2(self.max_total_weight)) if self.max_total_weight > 1 else 0
        return x_bits + w_bits + self.fractional_bits + 1

    @property
    def max_abs_value(self) -> float:
        """Largest accepted ``|x|``: ``value_bound - 2^-(f+1)`` (values round to ``2^-f``)."""
        return self.value_bound - 2.0 ** -(self.fractional_bits + 1)

    @property
    def precision(self) -> float:
        """Bound on the absolute error of a decrypted weighted mean: ``2^-(f+1)``."""
        return 2.0 ** -(self.fractional_bits + 1)

    @property
    def weight_resolution(self) -> float:
        """Real-valued weights are rounded to multiples of this fraction of their sum."""
        return 1.0 / self.max_total_weight

    @property
    def noise_bound(self) -> float:
        """Bound on the noise of an aggregate of total weight ``max_total_weight``."""
        return self.max_total_weight * fresh_noise_bound(
            self.poly_modulus_degree, self.max_keyholders, C.DEFAULT_STATISTICAL_SECURITY
        )

    @property
    def statistical_security_per_coefficient(self) -> float:
        """Bits of statistical security of the flooding noise for one decrypted coefficient."""
        return self.flooding_bits - math.log2(self.noise_bound)

    @property
    def statistical_security(self) -> float:
        """Bits of statistical security over a key share's lifetime (the union bound).

        ``statistical_security_per_coefficient - decryption_budget_bits``: it holds while
        the share decrypts at most :attr:`decryption_budget` coefficients.
        """
        return self.statistical_security_per_coefficient - self.decryption_budget_bits

    @property
    def decryption_budget(self) -> int:
        """Coefficients a key share may decrypt in its lifetime: ``2^decryption_budget_bits``.

        A partial decryption of ``k`` ciphertexts spends ``k * poly_modulus_degree``.
        """
        return 1 << self.decryption_budget_bits

    @property
    def security_level(self) -> int:
        """Computational security in bits (SEAL's HE-standard table)."""
        return C.SECURITY_LEVEL_BITS

    @property
    def decryption_margin_bits(self) -> float:
        """log2 of q/(2t) over the worst-case noise after combining ``max_keyholders`` partials."""
        data_q = math.prod(self.data_primes)
        worst = self.noise_bound + self.max_keyholders * 2.0**self.flooding_bits
        return math.log2(data_q) - 1 - self.plain_modulus_bits - math.log2(worst)

    @property
    def bytes_per_parameter(self) -> float:
        """Ciphertext bytes per encrypted value (two polynomials, 60-bit packed residues)."""
        return 2 * len(self.data_primes) * 60 / 8

    @cached_property
    def canonical_bytes(self) -> bytes:
        """Canonical encoding hashed into :attr:`id`."""
        head = struct.pack(
            "<IIIIdQIII",
            C.FORMAT_VERSION,
            self.poly_modulus_degree,
            self.plain_modulus_bits,
            self.fractional_bits,
            self.value_bound,
            self.max_total_weight,
            self.max_keyholders,
            self.flooding_bits,
            self.decryption_budget_bits,
        )
        primes = b"".join(q.to_bytes(8, "little") for q in self.coeff_modulus)
        return C.DOMAIN_PARAMS_ID + head + len(self.coeff_modulus).to_bytes(4, "little") + primes

    @cached_property
    def id_bytes(self) -> bytes:
        """Stable identifier: truncated SHA-256 of the canonical encoding."""
        return hashlib.sha256(self.canonical_bytes).digest()[: C.PARAMS_ID_BYTES]

    @property
    def id(self) -> str:
        """Stable identifier as hex."""
        return self.id_bytes.hex()

    def describe(self) -> dict[str, object]:
        """A JSON-friendly report of the set, its precision and its security.

        ``statistical_security_bits`` is the lifetime bound, valid while a key share
        decrypts at most ``decryption_budget_coefficients``.
        """
        return {
            "id": self.id,
            "scheme": "BFV (fixed-point coefficient encoding)",
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_modulus_bits": [q.bit_length() for q in self.coeff_modulus],
            "data_primes": len(self.data_primes),
            "plain_modulus_bits": self.plain_modulus_bits,
            "fractional_bits": self.fractional_bits,
            "value_bound": self.value_bound,
            "max_abs_value": self.max_abs_value,
            "max_total_weight": self.max_total_weight,
            "max_keyholders": self.max_keyholders,
            "flooding_bits": self.flooding_bits,
            "decryption_budget_bits": self.decryption_budget_bits,
            "decryption_budget_coefficients": self.decryption_budget,
            "statistical_security_bits": round(self.statistical_security, 2),
            "statistical_security_per_coefficient_bits": round(
                self.statistical_security_per_coefficient, 2
            ),
            "security_level_bits": self.security_level,
            "precision_mean": self.precision,
            "weight_resolution": self.weight_resolution,
            "decryption_margin_bits": round(self.decryption_margin_bits, 2),
            "bytes_per_parameter": self.bytes_per_parameter,
        }
