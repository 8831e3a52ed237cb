"""The joint public key a client may encrypt under: endorsed by every key holder.

Security
--------
:func:`verify_public_key_bundle` is what stops a server from substituting its own public
key; :func:`endorsed_epoch` is the key epoch the key holders signed with their
endorsements, which a client uses to refuse a rollback to an older key.
"""

from __future__ import annotations

from secagg.errors import InvalidKeyMaterial
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CeremonyStatement


def verify_public_key_bundle(bundle: pb.PublicKeyBundle, roster: Roster) -> JointPublicKey:
    """The bundle's joint public key, if every roster key holder endorsed exactly that key.

    Raises
    ------
    InvalidKeyMaterial
        A missing endorsement, or a key whose threshold or size differ from the roster.
    SignatureInvalid
        An endorsement whose signature does not verify under the key holder's roster key.
    UnknownParty
        An endorsement from a key holder the roster does not know.

    Security
    --------
    This check is what stops a server from substituting its own public key: never
    encrypt under a key that did not pass it.
    """
    key = JointPublicKey.from_bytes(bundle.public_key, roster.params)
    endorsed = set()
    for e in bundle.endorsements:
        if e.kind != pb.ENDORSEMENT or e.body != key.id_bytes:
            continue
        endorsed.add(CeremonyStatement.from_proto(roster.deployment_id, e).verify(roster).sender)
    if endorsed != {k.index for k in roster.keyholders}:
        raise InvalidKeyMaterial("the joint public key is not endorsed by every key holder")
    if key.threshold != roster.policy.threshold or key.keyholders != roster.policy.keyholders:
        raise InvalidKeyMaterial("the joint public key does not match the roster's threshold")
    return key


def endorsed_epoch(bundle: pb.PublicKeyBundle, key: JointPublicKey) -> int:
    """The key epoch of a verified bundle's key (signed in each endorsement of it).

    Call only on a bundle :func:`verify_public_key_bundle` accepted for ``key``: every
    endorsement naming ``key`` was verified with its epoch; the lowest one counts.
    """
    return min(e.epoch for e in bundle.endorsements if e.body == key.id_bytes)
