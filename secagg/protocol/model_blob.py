"""Plaintext global models on the wire (``ModelBlob`` in ``proto/service.proto``)."""

from __future__ import annotations

import numpy as np

from secagg import constants as C
from secagg._internal.envelope import parse, require
from secagg.encoding import F64
from secagg.errors import EncodingError
from secagg.proto import service_pb2


def encode_model(round_number: int, vector: F64) -> bytes:
    """Serialize the global model that is the input of ``round_number``."""
    flat = np.ascontiguousarray(vector, dtype="<f8")
    return service_pb2.ModelBlob(
        format_version=C.FORMAT_VERSION,
        round=round_number,
        length=flat.size,
        float64_le=flat.tobytes(),
    ).SerializeToString()


def model_blob_prefix(round_number: int, length: int) -> bytes:
    """The bytes of :func:`encode_model`'s blob that precede the model's doubles.

    ``float64_le`` is the message's last field, so the blob is this prefix followed by
    the ``8 * length`` little-endian doubles: a model can be hashed (or written) chunk
    by chunk without ever being held whole. ``tests/test_model_blob.py`` checks the
    equality with :func:`encode_model`.
    """
    fields = service_pb2.ModelBlob(
        format_version=C.FORMAT_VERSION, round=round_number, length=length
    ).SerializeToString()
    return fields + bytes([_FLOAT64_LE_TAG]) + _varint(8 * length)


_FLOAT64_LE_TAG = (4 << 3) | 2  # field 4 (float64_le), length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def model_blob_size(round_number: int, length: int) -> int:
    """Size in bytes of :func:`encode_model`'s blob of ``length`` values."""
    return len(model_blob_prefix(round_number, length)) + 8 * length


def decode_model_in_place(blob: bytes | bytearray, *, round_number: int, length: int) -> F64:
    """The model in :func:`encode_model`'s blob of ``round_number``, without copying it.

    The blob must be exactly the prefix of that round and length followed by the doubles
    (the canonical encoding every hash of a model is taken over); the returned array is a
    view of ``blob``'s memory. Raises :class:`EncodingError`.
    """
    prefix = model_blob_prefix(round_number, length)
    size = len(prefix) + 8 * length
    require(len(blob) == size, EncodingError, f"model blob of {len(blob)} bytes, {size} expected")
    require(
        bytes(memoryview(blob)[: len(prefix)]) == prefix,
        EncodingError,
        f"not the model blob of round {round_number} with {length} values",
    )
    vector = np.frombuffer(blob, dtype="<f8", count=length, offset=len(prefix))
    require(bool(np.isfinite(vector).all()), EncodingError, "model contains NaN or infinity")
    return vector


def decode_model(blob: bytes, *, length: int) -> tuple[int, F64]:
    """Parse a model blob of the expected length; raises :class:`EncodingError`."""
    msg = parse(service_pb2.ModelBlob, blob, EncodingError, C.MAX_SERIALIZED_BYTES)
    require(
        msg.length == length, EncodingError, f"model has length {msg.length}, expected {length}"
    )
    require(len(msg.float64_le) == 8 * length, EncodingError, "model payload has the wrong size")
    vector = np.frombuffer(msg.float64_le, dtype="<f8").astype(np.float64)
    require(bool(np.isfinite(vector).all()), EncodingError, "model contains NaN or infinity")
    return msg.round, vector
