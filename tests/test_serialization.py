"""Wire round trips, upload size, and refusal of objects from another key set."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _support import decrypt, partials_for

import secagg

LENGTH = 20_000


@pytest.fixture(scope="module")
def objects(params: secagg.Parameters, keys32: secagg.KeySet) -> dict:
    rng = np.random.default_rng(7)
    xs = rng.uniform(-10, 10, size=(3, LENGTH))
    cts = [secagg.encrypt(keys32.public_key, x) for x in xs]
    agg = secagg.aggregate(cts, weights=[3, 1, 2])
    parts = partials_for(keys32, agg, (1, 3))
    return {"xs": xs, "cts": cts, "agg": agg, "parts": parts}


def test_encrypted_vector_round_trip(params: secagg.Parameters, objects: dict) -> None:
    ct = objects["cts"][0]
    blob = ct.to_bytes()
    back = secagg.EncryptedVector.from_bytes(blob, params)
    assert back.digest == ct.digest
    assert back.length == ct.length == LENGTH
    assert back.public_key_id == ct.public_key_id
    assert back.params.id == params.id
    assert back.residues.dtype == np.uint64 and np.array_equal(back.residues, ct.residues)
    assert back.to_bytes() == blob
    # Any bytes-like input.
    assert secagg.EncryptedVector.from_bytes(bytearray(blob), params).digest == ct.digest
    assert secagg.EncryptedVector.from_bytes(memoryview(blob), params).digest == ct.digest


def test_encrypted_aggregate_round_trip(params: secagg.Parameters, keys32, objects: dict) -> None:
    agg = objects["agg"]
    blob = agg.to_bytes()
    back = secagg.EncryptedAggregate.from_bytes(blob, params)
    assert back.digest == agg.digest
    assert (back.total_weight, back.weight_scale, back.contributors) == (6, 1.0, 3)
    assert np.array_equal(back.vector.residues, agg.vector.residues)
    assert back.to_bytes() == blob
    # The parsed aggregate decrypts like the original, with the original's partials.
    expected = (3 * objects["xs"][0] + objects["xs"][1] + 2 * objects["xs"][2]) / 6
    result = secagg.combine(back, objects["parts"])
    assert np.max(np.abs(result - expected)) <= params.precision


def test_real_weight_aggregate_round_trip(params: secagg.Parameters, objects: dict) -> None:
    agg = secagg.aggregate(objects["cts"][:2], weights=[0.3, 0.7])
    back = secagg.EncryptedAggregate.from_bytes(agg.to_bytes(), params)
    assert back.weight_scale == agg.weight_scale != 1.0
    assert back.digest == agg.digest


def test_partial_decryption_round_trip(params: secagg.Parameters, objects: dict) -> None:
    agg = objects["agg"]
    parsed = []
    for part in objects["parts"]:
        blob = part.to_bytes()
        back = secagg.PartialDecryption.from_bytes(blob, params)
        assert back.digest == part.digest
        assert (back.keyholder_index, back.threshold, back.quorum) == (
            part.keyholder_index,
            part.threshold,
            part.quorum,
        )
        assert back.aggregate_digest == agg.digest and back.public_key_id == part.public_key_id
        assert np.array_equal(back.residues, part.residues)
        assert back.to_bytes() == blob
        parsed.append(back)
    expected = (3 * objects["xs"][0] + objects["xs"][1] + 2 * objects["xs"][2]) / 6
    assert np.max(np.abs(secagg.combine(agg, parsed) - expected)) <= params.precision


def test_public_key_round_trip(params: secagg.Parameters, keys32: secagg.KeySet) -> None:
    pk = keys32.public_key
    blob = pk.to_bytes()
    back = secagg.JointPublicKey.from_bytes(blob, params)
    assert back.id_bytes == pk.id_bytes and back.id == pk.id
    assert (back.keyholders, back.threshold) == (3, 2)
    assert np.array_equal(back.residues, pk.residues)
    assert back.to_bytes() == blob
    # Encrypting under the parsed key decrypts with the original shares.
    x = np.linspace(-5, 5, 1000)
    agg = secagg.aggregate([secagg.encrypt(back, x)])
    assert np.max(np.abs(decrypt(keys32, agg, (2, 3)) - x)) <= params.precision


def test_key_share_round_trip(params: secagg.Parameters, keys32: secagg.KeySet) -> None:
    shares = []
    for share in keys32.shares:
        blob = share.to_bytes()
        back = secagg.KeyShare.from_bytes(blob, params)
        assert (back.index, back.keyholders, back.threshold) == (share.index, 3, 2)
        assert back.public_key_id == share.public_key_id == keys32.public_key.id_bytes
        assert np.array_equal(back.residues, share.residues)
        assert back.to_bytes() == blob
        shares.append(back)
    x = np.linspace(-5, 5, 1000)
    agg = secagg.aggregate([secagg.encrypt(keys32.public_key, x)])
    parts = [secagg.partial_decrypt(shares[i - 1], agg, quorum=(1, 2)) for i in (1, 2)]
    assert np.max(np.abs(secagg.combine(agg, parts) - x)) <= params.precision


def test_key_material_refuses_corruption(params: secagg.Parameters, keys32: secagg.KeySet) -> None:
    for cls, blob in (
        (secagg.JointPublicKey, keys32.public_key.to_bytes()),
        (secagg.KeyShare, keys32.shares[0].to_bytes()),
    ):
        for pos in (0, 5, len(blob) // 2, len(blob) - 1):
            corrupt = bytearray(blob)
            corrupt[pos] ^= 0x10
            with pytest.raises(secagg.InvalidKeyMaterial):
                cls.from_bytes(bytes(corrupt), params)
        for cut in (0, 1, 40, len(blob) - 1):
            with pytest.raises(secagg.InvalidKeyMaterial):
                cls.from_bytes(blob[:cut], params)
        other = secagg.Parameters.calculate(max_total_weight=2**10)
        with pytest.raises(secagg.InvalidKeyMaterial):
            cls.from_bytes(blob, other)


def test_key_share_repr_hides_secret(keys32: secagg.KeySet) -> None:
    share = keys32.shares[0]
    text = repr(share) + str(share) + repr(keys32)
    assert "residues" not in text
    for value in share.residues[:, :8].ravel():
        assert str(int(value)) not in text
    assert len(text) < 2000


@pytest.mark.parametrize("length", [100_000, 1_000_000])
def test_upload_size_per_parameter(params: secagg.Parameters, keys32, length: int) -> None:
    x = np.random.default_rng(length).uniform(-15, 15, size=length)
    start = time.perf_counter()
    ct = secagg.encrypt(keys32.public_key, x)
    elapsed = time.perf_counter() - start
    size = len(ct.to_bytes())
    per_param = size / length
    print(f"{length} values: {size} bytes, {per_param:.2f} B/param, encrypt {elapsed:.2f} s")
    assert per_param <= 48  # 45 per value (three data primes), padded to whole ciphertexts
    assert per_param >= params.bytes_per_parameter  # the header is not free


def test_ciphertexts_of_another_key_refused(keys32, other_keys32, objects: dict) -> None:
    foreign = secagg.encrypt(other_keys32.public_key, objects["xs"][0])
    with pytest.raises(secagg.InvalidCiphertext):
        secagg.aggregate([objects["cts"][0], foreign])
    with pytest.raises(secagg.InvalidCiphertext):
        secagg.aggregate([foreign, objects["cts"][0]])


def test_vectors_of_other_length_refused(keys32, objects: dict) -> None:
    short = secagg.encrypt(keys32.public_key, objects["xs"][0][:-1])
    with pytest.raises(secagg.InvalidCiphertext):
        secagg.aggregate([objects["cts"][0], short])
    with pytest.raises(secagg.InvalidCiphertext):
        secagg.aggregate([])


def test_partial_decrypt_with_share_of_another_key_refused(
    keys32, other_keys32, objects: dict
) -> None:
    with pytest.raises(secagg.InvalidPartialDecryption):
        secagg.partial_decrypt(other_keys32.shares[0], objects["agg"], quorum=(1, 2))


def test_combine_refuses_partials_of_another_key(other_keys32, objects: dict) -> None:
    foreign_ct = secagg.encrypt(other_keys32.public_key, objects["xs"][0])
    foreign_agg = secagg.aggregate([foreign_ct])
    foreign = partials_for(other_keys32, foreign_agg, (1, 3))
    with pytest.raises(secagg.InvalidPartialDecryption):
        secagg.combine(objects["agg"], foreign)
    with pytest.raises(secagg.InvalidPartialDecryption):
        secagg.combine(objects["agg"], [objects["parts"][0], foreign[1]])


def test_objects_of_other_parameters_refused(params: secagg.Parameters, objects: dict) -> None:
    other = secagg.Parameters.calculate(max_total_weight=2**10)
    with pytest.raises(secagg.InvalidCiphertext, match="other parameters"):
        secagg.EncryptedVector.from_bytes(objects["cts"][0].to_bytes(), other)
    with pytest.raises(secagg.InvalidCiphertext, match="other parameters"):
        secagg.EncryptedAggregate.from_bytes(objects["agg"].to_bytes(), other)
    with pytest.raises(secagg.InvalidPartialDecryption, match="other parameters"):
        secagg.PartialDecryption.from_bytes(objects["parts"][0].to_bytes(), other)
