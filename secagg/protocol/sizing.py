"""Sizes and timeouts derived from the model length (``secagg init``'s defaults).

One upload is ``ceil(model_length / N)`` ciphertexts of ``N x bytes_per_parameter`` bytes
plus a small envelope (:func:`upload_bytes`). The upload cap, the transfer timeout and the
round timeout that ``secagg init`` writes into the roster's policy are derived from that
size, at the documented rates of :mod:`secagg.constants` (``TRANSFER_SECONDS_PER_MB``,
``ROUND_SECONDS_PER_MB``) with today's values as floors, so small models keep the
timeouts they always had (600 s per transfer, 60 s per round).

Notes
-----
These are defaults; ``secagg init --max-upload-bytes``, ``--transfer-timeout`` and
``--round-timeout`` override them. The rates assume a sustained link of about 8 Mbit/s
per transfer; slower links need larger timeouts, given explicitly.
"""

from __future__ import annotations

from secagg import constants as C
from secagg.params import Parameters

_MB = 1_000_000


def upload_bytes(params: Parameters, model_length: int) -> int:
    """Size in bytes of one serialized upload of ``model_length`` values (with envelope)."""
    ciphertexts = -(-model_length // params.poly_modulus_degree)
    full = ciphertexts * params.poly_modulus_degree * params.bytes_per_parameter
    return int(full) + C.UPLOAD_ENVELOPE_BYTES


def smallest_upload_cap(params: Parameters, model_length: int) -> int:
    """The smallest upload cap that still admits an upload of ``model_length`` values."""
    return upload_bytes(params, model_length) - C.UPLOAD_ENVELOPE_BYTES + 1024


def transfer_timeout_for(size: int) -> float:
    """Deadline of one streaming transfer of ``size`` bytes (seconds, at least 600)."""
    derived = C.TRANSFER_SECONDS_PER_MB * size / _MB
    return min(C.MAX_TIMEOUT_SECONDS, max(C.TRANSFER_TIMEOUT_SECONDS, round(derived, 1)))


def round_timeout_for(size: int) -> float:
    """How long a round collects uploads of ``size`` bytes each (seconds, at least 60)."""
    derived = C.ROUND_SECONDS_PER_MB * size / _MB
    return min(C.MAX_TIMEOUT_SECONDS, max(C.DEFAULT_ROUND_TIMEOUT_SECONDS, round(derived, 1)))
