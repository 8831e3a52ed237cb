"""Review of secrets at rest (issue 11): ``exchange.key`` unlocks what the passphrase protects.

The share is sealed at rest under a passphrase kept away from it, but the key holder's
X25519 ``exchange.key`` sits unencrypted in its party directory, and the sealed Shamir
shares ``f_i(j)`` it opens stay in the server's ceremony store (the malicious server
keeps them). Three key holders run the REAL ceremony over mTLS against a relay double
that keeps every message, as the real server's store does. The attacker is the server,
with key holder 3 colluding (``t - 1 = 1``) and copies of key holders 1's and 2's party
directories (not their passphrases): every sealed share opens, each sender's polynomial
``f_i`` is interpolated from the shares to the others, and key holder 1's joint share
``S_1 = sum_i f_i(1)`` comes out exactly; with key holder 3's own share that is ``t``
shares of the joint secret key.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from secagg._internal.modarith import U64, add_mod, mul_mod
from secagg.keys import KeyShare
from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.sealing import open_sealed
from secagg.rpc.transport import identity

from .test_ceremony_attacks import World, world

__all__ = ["world"]  # the fixture


def _at(points: Mapping[int, U64], x: int, primes: tuple[int, ...]) -> U64:
    """The polynomial through ``points`` (index -> residues per prime) evaluated at ``x``."""
    out = np.zeros_like(next(iter(points.values())))
    for j, q in enumerate(primes):
        for p, value in points.items():
            num, den = 1, 1
            for m in points:
                if m != p:
                    num, den = num * (x - m) % q, den * (p - m) % q
            weight = num * pow(den, -1, q) % q
            out[j] = add_mod(out[j], mul_mod(value[j], weight, q), q)
    return out


@pytest.mark.xfail(
    strict=True,
    reason="review R: exchange.key is stored unencrypted and the sealed shares it opens stay "
    "with the server, so the passphrase on share.enc does not protect the share",
)
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
    primes = tuple(params.data_primes)
    # what the attacker holds: the relay's messages and the three exchange.key files
    opened: dict[tuple[int, int], U64] = {}
    for (kind, sender, recipient), message in world.relay.messages.items():
        if kind != pb.ENCRYPTED_SHARE:
            continue
        key = identity(world.directory, f"kh{recipient}").exchange_key()
        context = codec.share_context(deployment_id, sender, recipient, target.public_key_id)
        plain = open_sealed(key, *codec.decode_sealed(message.body), context=context)
        opened[sender, recipient] = codec.decode_share(plain, params, sender=sender)
    recovered = np.zeros_like(target.residues)
    for sender in (1, 2, 3):
        if sender == 1:  # f_1(1) was never sent: interpolate f_1 from f_1(2), f_1(3)
            piece = _at({r: opened[1, r] for r in (2, 3)}, 1, primes)
        else:
            piece = opened[sender, 1]
        for j, q in enumerate(primes):
            recovered[j] = add_mod(recovered[j], piece[j], q)
    assert not np.array_equal(recovered, target.residues), (
        "key holder 1's joint key share recovered without its passphrase"
    )
