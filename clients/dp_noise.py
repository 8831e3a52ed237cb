"""Randomness of local DP-SGD: Gaussian noise and Poisson sampling masks from ChaCha20.

Each round a client draws a fresh 256-bit key from ``os.urandom`` (:meth:`RoundKey.fresh`)
and reads two ChaCha20 keystreams under it, one for the Poisson sampling masks and one
for the Gaussian noise (:meth:`RoundKey.sampling`, :meth:`RoundKey.noise`). From the
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

    #: Stream numbers of the two uses (masks and noise never share keystream).
    SAMPLING_STREAM = 0
    NOISE_STREAM = 1

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

    def __repr__(self) -> str:
        return "RoundKey(<secret>)"


@dataclass(frozen=True)
class SamplingPlan:
    """Poisson sampling of one client: the rate executed and accounted, and steps per round.

    ``sample_rate = min(1, batch_size / size)``, so a batch holds ``batch_size`` samples on
    average; ``steps = local_epochs * round(1 / sample_rate)`` (at least one per epoch).
    Computed once per client: the sampler executes this rate and the accountant charges it.
    """

    size: int
    sample_rate: float
    steps: int

    @classmethod
    def for_dataset(cls, *, size: int, batch_size: int, local_epochs: int) -> SamplingPlan:
        """The plan for ``size`` training samples."""
        if size < 1 or batch_size < 1 or local_epochs < 1:
            raise ValueError("size, batch_size and local_epochs must be positive")
        rate = min(1.0, batch_size / size)
        return cls(size, rate, local_epochs * max(1, round(1 / rate)))

    @property
    def expected_batch_size(self) -> float:
        """The mean batch size, the denominator of the noisy mean gradient."""
        return self.sample_rate * self.size


def poisson_batches(stream: NoiseStream, plan: SamplingPlan) -> Iterator[I64]:
    """Index sets of ``plan.steps`` batches, each sample in with ``plan.sample_rate``.

    Batches may be empty; DP-SGD must still take its (noise-only) step for them, or the
    released model tells an empty batch apart.
    """
    for _ in range(plan.steps):
        yield np.flatnonzero(stream.bernoulli(plan.size, probability=plan.sample_rate))
