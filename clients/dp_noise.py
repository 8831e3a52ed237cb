"""Randomness of local DP-SGD: Gaussian noise and Poisson sampling masks from ChaCha20.

Each round a client draws a fresh 256-bit key from ``os.urandom`` (:meth:`RoundKey.fresh`)
and reads two ChaCha20 keystreams under it, one for the Poisson sampling masks and one
for the Gaussian noise (:meth:`RoundKey.sampling`, :meth:`RoundKey.noise`); a third stream
of a separate key, drawn once per client, gives the noisy count that the client releases
instead of its dataset size (:meth:`RoundKey.count`, :func:`noisy_count`). From the
keystream:

* **uniforms**: 64-bit words shifted to 53-bit integers ``k``, ``u = (k + 1) / 2^53`` in
  ``(0, 1]`` — every value exact in float64;
* **Bernoulli(q) masks**: ``k < round(q * 2^53)`` (probability within ``2^-54`` of ``q``);
* **Gaussians**: Box-Muller on pairs of those uniforms (exact in real arithmetic), and each
  output is the sum of four such draws halved (``N(0, std^2)`` again), the mitigation
  Opacus' ``secure_mode`` applies against floating-point attacks.

Torch's and numpy's generators play no part: nothing about the noise or the masks
follows from their state.

Security
--------
The noise is only as unpredictable as the key: with :meth:`RoundKey.insecure_seeded` (the
demo's ``--insecure-noise-seed``) anyone who knows the seed recomputes the noise and the
masks and removes them, so that mode gives **no** privacy.

The Gaussian is computed in floating point and added to float32 gradients. Floating-point
samplers leak through the gaps in the set of values they can output (Mironov 2012 for the
Laplace mechanism; Jin et al. 2021, Holohan & Braghin 2021 for Gaussians, which shows
Box-Muller outputs can be inverted); summing four draws raises the cost of that inversion
(to about ``2^159`` by Holohan & Braghin's count) but is not a proof of DP for the
floating-point mechanism. A discrete Gaussian over integers (Canonne, Kamath & Steinke
2020) would be exact. One ChaCha20 stream yields ``2^38`` bytes before its 32-bit block
counter wraps; a round reads a few megabytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from secagg.constants import DOMAIN_INSECURE_NOISE_SEED

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

#: Length of a round key (ChaCha20 key) in bytes.
KEY_BYTES = 32
_UNIFORM_BITS = 53
_TWO_53 = float(2**_UNIFORM_BITS)
#: Gaussians summed (and halved) per output, as Opacus' secure mode does.
_GAUSSIANS_PER_OUTPUT = 4


class NoiseStream:
    """A ChaCha20 keystream read as uniforms, Bernoulli masks and Gaussians.

    Parameters
    ----------
    key
        A 32-byte ChaCha20 key.
    stream
        Which stream under that key (the 96-bit nonce); two streams of one key are
        independent.

    Security
    --------
    Deterministic given ``(key, stream)``: the key is the only secret. Reads are sequential,
    so the order of calls fixes the output (a reproducible run must read in one order).
    """

    def __init__(self, key: bytes, *, stream: int) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a noise key has {KEY_BYTES} bytes, not {len(key)}")
        if not 0 <= stream < 2**96:
            raise ValueError("stream must be an unsigned 96-bit number")
        nonce = bytes(4) + stream.to_bytes(12, "little")  # 32-bit block counter 0, then nonce
        self._keystream = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor()

    def _integers(self, count: int) -> npt.NDArray[np.uint64]:
        """``count`` uniform 53-bit integers (the top bits of 64-bit keystream words)."""
        raw = self._keystream.update(bytes(8 * count))
        words: npt.NDArray[np.uint64] = np.frombuffer(raw, dtype="<u8").astype(np.uint64)
        return words >> np.uint64(64 - _UNIFORM_BITS)

    def uniform(self, count: int) -> F64:
        """``count`` uniforms on the grid ``{1, ..., 2^53} / 2^53`` (never 0)."""
        return (self._integers(count).astype(np.float64) + 1.0) / _TWO_53

    def bernoulli(self, count: int, *, probability: float) -> Mask:
        """``count`` independent Bernoulli(``probability``) draws."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must lie in [0, 1]")
        threshold = np.uint64(round(probability * _TWO_53))
        mask: Mask = self._integers(count) < threshold
        return mask

    def standard_normal(self, count: int) -> F64:
        """``count`` N(0, 1) draws by Box-Muller (one per uniform)."""
        pairs = (count + 1) // 2
        u = self.uniform(2 * pairs).reshape(2, pairs)
        radius = np.sqrt(-2.0 * np.log(u[0]))
        angle = 2.0 * math.pi * u[1]
        return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]

    def gaussian(self, count: int, *, std: float) -> F64:
        """``count`` N(0, ``std``^2) draws, each the halved sum of four Box-Muller draws."""
        if not 0.0 <= std < math.inf:
            raise ValueError("std must be non-negative and finite")
        draws = self.standard_normal(_GAUSSIANS_PER_OUTPUT * count).reshape(-1, count)
        scale = std / math.sqrt(_GAUSSIANS_PER_OUTPUT)
        out: F64 = draws.sum(axis=0) * scale
        return out


@dataclass(frozen=True, repr=False)
class RoundKey:
    """The secret behind one round's DP randomness (a ChaCha20 key).

    Build it with :meth:`fresh` in a deployment; :meth:`insecure_seeded` exists for the
    demo's comparison against a plaintext baseline with identical noise only.
    """

    key: bytes

    #: Stream numbers of the three uses (masks, noise and the noisy count never share
    #: keystream).
    SAMPLING_STREAM = 0
    NOISE_STREAM = 1
    COUNT_STREAM = 2

    @classmethod
    def fresh(cls) -> RoundKey:
        """A key from the kernel CSPRNG (``os.urandom``)."""
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def insecure_seeded(cls, seed: int, *, client_seed: int, round_number: int) -> RoundKey:
        """A key anyone who knows ``seed`` can recompute: no privacy (demo only).

        SHA-256 of a domain tag and the canonical JSON of ``[seed, client_seed,
        round_number]``, so clients and rounds get different streams.
        """
        label = json.dumps([seed, client_seed, round_number]).encode()
        return cls(hashlib.sha256(DOMAIN_INSECURE_NOISE_SEED + label).digest())

    def sampling(self) -> NoiseStream:
        """The stream the Poisson masks are drawn from."""
        return NoiseStream(self.key, stream=self.SAMPLING_STREAM)

    def noise(self) -> NoiseStream:
        """The stream the Gaussian noise is drawn from."""
        return NoiseStream(self.key, stream=self.NOISE_STREAM)

    def count(self) -> NoiseStream:
        """The stream the noisy count is drawn from (:func:`noisy_count`)."""
        return NoiseStream(self.key, stream=self.COUNT_STREAM)

    def __repr__(self) -> str:
        return "RoundKey(<secret>)"


@dataclass(frozen=True)
class SamplingPlan:
    """Poisson sampling of one client: the rate executed and accounted, and steps per round.

    ``size`` is the number of records the sampler runs over (the true ``N``, private);
    ``public_size`` is the count the client releases (its noisy count ``N~``, or ``N``
    itself without DP). Everything the released model depends on besides the data is a
    function of ``public_size`` only: ``sample_rate = min(1, batch_size / public_size)``,
    ``steps = local_epochs * max(1, round(1 / sample_rate))`` and the normaliser
    :attr:`expected_batch_size`. Computed once per client: the sampler executes this rate
    and the accountant charges it.

    Security
    --------
    Poisson subsampling includes each of the ``size`` records independently with
    probability ``sample_rate``; its amplification depends on that rate alone, so the
    DP-SGD accounting holds for the true dataset, whatever ``size`` is. Building a plan
    with ``public_size=size`` under DP would make ``q``, the step count and the normaliser
    reveal ``N`` (a perfect distinguisher of add/remove neighbours).
    """

    size: int
    sample_rate: float
    steps: int
    public_size: int

    @classmethod
    def for_dataset(
        cls, *, size: int, public_size: int, batch_size: int, local_epochs: int
    ) -> SamplingPlan:
        """The plan for ``size`` training samples whose released count is ``public_size``."""
        if min(size, public_size, batch_size, local_epochs) < 1:
            raise ValueError("size, public_size, batch_size and local_epochs must be positive")
        rate = min(1.0, batch_size / public_size)
        return cls(size, rate, local_epochs * max(1, round(1 / rate)), public_size)

    @property
    def expected_batch_size(self) -> float:
        """The normaliser of the noisy gradient sum: ``sample_rate * public_size``.

        That is ``batch_size`` (or ``public_size`` when it is below ``batch_size``): public,
        never the true ``size``.
        """
        return self.sample_rate * self.public_size


def poisson_batches(stream: NoiseStream, plan: SamplingPlan) -> Iterator[I64]:
    """Index sets of ``plan.steps`` batches, each sample in with ``plan.sample_rate``.

    Batches may be empty; DP-SGD must still take its (noise-only) step for them, or the
    released model tells an empty batch apart.
    """
    for _ in range(plan.steps):
        yield np.flatnonzero(stream.bernoulli(plan.size, probability=plan.sample_rate))


def noisy_count(size: int, *, std: float, low: int, high: int, stream: NoiseStream) -> int:
    """``round(size + N(0, std^2))`` clamped to ``[low, high]``: the Gaussian mechanism.

    A record added or removed moves ``size`` by one, so this is the Gaussian mechanism of
    sensitivity 1 and noise multiplier ``std`` (Opacus history entry ``(std, 1.0, 1)``);
    the rounding and the clamping are post-processing.

    Security
    --------
    Draw it once per client and reuse it (every round's weight, sampling rate and step
    count): each fresh draw is another release to account. ``std = 0`` releases ``size``.
    """
    if not 1 <= low <= high:
        raise ValueError("the count range must satisfy 1 <= low <= high")
    noisy = round(size + float(stream.gaussian(1, std=std)[0]))
    return min(high, max(low, noisy))
