"""A server that lies about the round's state and releases (issue 10, item 1).

Before lock certificates the key holder asked the server: ``GetRound`` (refuse while
COLLECTING) and ``GetRelease`` (refuse once a signed release exists). Those answers are
the server's to choose, so they protected nothing: a server that wanted a second
aggregate decrypted said "DECRYPTING, nothing released". Now the key holder does not
ask. Whatever the double says, a real key holder decrypts exactly when the task carries
a lock certificate on its aggregate, and never calls ``GetRelease``.
"""

from __future__ import annotations

import hashlib

import pytest

from secagg.errors import LockMissing
from secagg.proto import service_pb2 as pb

from ._expect import partial, refused
from .conftest import Attack, Upload


def _uploads(attack: Attack) -> tuple[Upload, ...]:
    return tuple(attack.upload(f"c{i}", attack.encrypt(i)) for i in (1, 2, 3))


def _lie(attack: Attack, lie: str, uploads: tuple[Upload, ...]) -> None:
    """Set the double's answers: the round is collecting, released, or open for decryption."""
    if lie == "collecting":
        attack.double.round_info = pb.RoundInfo(round=1, state=pb.COLLECTING)
    elif lie == "released":
        attack.double.round_info = pb.RoundInfo(round=2, state=pb.COLLECTING)
        digest = attack.aggregate(*uploads).digest
        attack.double.releases[1] = attack.release(digest, hashlib.sha256(b"model").digest())
    else:
        attack.double.round_info = pb.RoundInfo(round=1, state=pb.DECRYPTING)


@pytest.mark.parametrize("lie", ["collecting", "released", "decrypting"])
def test_the_servers_round_state_does_not_change_the_decision(attack: Attack, lie: str) -> None:
    uploads = _uploads(attack)
    _lie(attack, lie, uploads)
    attack.start_keyholder(1)
    digest = attack.aggregate(*uploads).digest
    other = attack.aggregate(*uploads[:2]).digest

    refused(attack, attack.task(*uploads, locks=()), LockMissing)
    refused(attack, attack.task(*uploads, locks=attack.certificate(other)), LockMissing)
    refused(attack, attack.task(*uploads, locks=attack.certificate(digest)[:2]), LockMissing)
    partial(attack, attack.task(*uploads, locks=attack.certificate(digest)))
    assert attack.double.calls["GetRelease"] == 0
