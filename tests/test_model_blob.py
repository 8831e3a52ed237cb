"""A model blob is a prefix and the doubles: hashing it chunk by chunk gives the blob's hash."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from secagg.protocol.model_blob import decode_model, encode_model, model_blob_prefix


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
