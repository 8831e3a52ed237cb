"""Key material in transit (sealed shares) and at rest (encrypted share files)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from secagg.errors import InvalidKeyMaterial
from secagg.protocol.sealing import decrypt_at_rest, encrypt_at_rest, open_sealed, seal_to

SECRET = b"share material " * 100


def test_sealed_share_opens_only_for_its_recipient_and_context() -> None:
    alice, mallory = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    eph, nonce, ct = seal_to(alice.public_key(), SECRET, context=b"dep/1->2")
    assert SECRET not in ct
    assert open_sealed(alice, eph, nonce, ct, context=b"dep/1->2") == SECRET
    with pytest.raises(InvalidKeyMaterial):
        open_sealed(mallory, eph, nonce, ct, context=b"dep/1->2")
    with pytest.raises(InvalidKeyMaterial):
        open_sealed(alice, eph, nonce, ct, context=b"dep/3->2")  # relabelled route
    tampered = bytes([ct[0] ^ 1]) + ct[1:]
    with pytest.raises(InvalidKeyMaterial):
        open_sealed(alice, eph, nonce, tampered, context=b"dep/1->2")


@pytest.mark.parametrize("is_passphrase", [True, False])
def test_share_at_rest_needs_the_right_secret(is_passphrase: bool) -> None:
    secret = b"correct horse battery staple" if is_passphrase else bytes(range(32))
    blob = encrypt_at_rest(SECRET, secret, is_passphrase=is_passphrase)
    assert SECRET not in blob
    assert decrypt_at_rest(blob, secret, is_passphrase=is_passphrase) == SECRET
    wrong = b"wrong" if is_passphrase else bytes(32)
    with pytest.raises(InvalidKeyMaterial):
        decrypt_at_rest(blob, wrong, is_passphrase=is_passphrase)
    with pytest.raises(InvalidKeyMaterial):
        decrypt_at_rest(blob[:-1] + bytes([blob[-1] ^ 1]), secret, is_passphrase=is_passphrase)
    with pytest.raises(InvalidKeyMaterial, match="other kind"):
        decrypt_at_rest(blob, secret, is_passphrase=not is_passphrase)


def test_key_file_must_be_32_bytes() -> None:
    with pytest.raises(InvalidKeyMaterial, match="32 bytes"):
        encrypt_at_rest(SECRET, b"short", is_passphrase=False)
