"""A model blob is a prefix and the doubles: hashing it chunk by chunk gives the blob's hash."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from clients.connection import _receive_into
from secagg.errors import EncodingError
from secagg.proto import service_pb2 as pb
from secagg.protocol.model_blob import (
    decode_model,
    decode_model_in_place,
    encode_model,
    model_blob_prefix,
    model_blob_size,
)


@pytest.mark.parametrize("length", [1, 15, 16, 127, 128, 16_384, 300_001])
def test_the_prefix_and_the_doubles_are_the_blob(length: int) -> None:
    model = np.random.default_rng(length).normal(size=length)  # test data, not a secret
    blob = encode_model(7, model)
    streamed = hashlib.sha256(model_blob_prefix(7, length))
    for start in range(0, length, 65_536):
        streamed.update(model[start : start + 65_536].astype("<f8").tobytes())
    assert streamed.digest() == hashlib.sha256(blob).digest()
    assert blob == model_blob_prefix(7, length) + model.astype("<f8").tobytes()
    assert decode_model(blob, length=length)[0] == 7


def test_a_model_is_decoded_in_place_only_from_its_canonical_blob() -> None:
    model = np.arange(1000, dtype=np.float64) / 7
    blob = bytearray(encode_model(3, model))
    got = decode_model_in_place(blob, round_number=3, length=1000)
    assert np.array_equal(got, model)
    blob[-8:] = np.array([np.nan]).tobytes()
    with pytest.raises(EncodingError, match="NaN"):
        decode_model_in_place(blob, round_number=3, length=1000)
    with pytest.raises(EncodingError, match="round 4"):  # another round's model
        decode_model_in_place(encode_model(3, model), round_number=4, length=1000)
    with pytest.raises(EncodingError, match="expected"):  # another length
        decode_model_in_place(encode_model(3, model), round_number=3, length=999)
    assert model_blob_size(3, 1000) == len(encode_model(3, model))


def test_a_download_fills_one_buffer_of_the_expected_size() -> None:
    parts = [pb.Chunk(data=b"abc"), pb.Chunk(data=b"defg")]
    assert _receive_into(parts, 7) == bytearray(b"abcdefg")
    with pytest.raises(ValueError, match="longer"):
        _receive_into(parts, 6)
    with pytest.raises(ValueError, match="7 bytes, 8 expected"):
        _receive_into(parts, 8)
