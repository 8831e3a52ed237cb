"""Review of secrets at rest (issue 11): no file opens the sealed shares the server keeps.

The share is sealed at rest under a passphrase kept away from it. The review found the
key holder's X25519 ``exchange.key`` unencrypted in its party directory, while the sealed
Shamir shares ``f_i(j)`` it opens stay in the server's ceremony store (the malicious
server keeps them): with key holder 3 colluding (``t - 1 = 1``) and copies of key holders
1's and 2's party directories (not their passphrases), every sealed share opened, each
sender's polynomial ``f_i`` was interpolated from the shares to the others, and key
holder 1's joint share ``S_1 = sum_i f_i(1)`` came out exactly.

Three key holders run the REAL ceremony over mTLS against a relay double that keeps
every message, as the real server's store does. The attacker tries every X25519 private
key in every party directory, with every public input of the share contexts (the
transcript included); shares are now sealed to each ceremony's exchange key, which only
ever lived in memory (forward secrecy), so nothing opens.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from secagg._internal.modarith import U64
from secagg.errors import InvalidKeyMaterial
from secagg.keys import KeyShare
from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.sealing import open_sealed

from .test_ceremony_attacks import World, world

__all__ = ["world"]  # the fixture


def _stolen_exchange_keys(deployment: Path) -> list[X25519PrivateKey]:
    """Every X25519 private key in a party directory (what copies of them give away)."""
    found = []
    for path in sorted(deployment.rglob("*.key")):
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError):
            continue
        if isinstance(key, X25519PrivateKey):
            found.append(key)
    return found


def test_stolen_party_directories_and_the_servers_store_do_not_give_the_share(
    world: World,
) -> None:
    for index in (1, 2, 3):
        world.start_honest(index)
    world.join()
    shares = world.outcomes
    assert all(isinstance(s, KeyShare) for s in shares.values()), shares
    target = shares[1]
    assert isinstance(target, KeyShare)
    params, deployment_id = world.roster.params, world.roster.deployment_id
    # what the attacker holds: the relay's messages and every key file of the deployment
    stolen = _stolen_exchange_keys(world.directory)
    transcript = world.transcript()
    sealed = {
        (sender, recipient): message
        for (kind, sender, recipient), message in world.relay.messages.items()
        if kind == pb.ENCRYPTED_SHARE
    }
    assert len(sealed) == 6  # the server kept every sealed share
    opened: dict[tuple[int, int], U64] = {}
    for (sender, recipient), message in sealed.items():
        context = codec.share_context(
            deployment_id, sender, recipient, target.public_key_id, transcript=transcript
        )
        for key in stolen:
            try:
                plain = open_sealed(key, *codec.decode_sealed(message.body), context=context)
            except InvalidKeyMaterial:
                continue
            opened[sender, recipient] = codec.decode_share(plain, params, sender=sender)
    assert not opened, f"sealed shares opened with stolen key files: {sorted(opened)}"
