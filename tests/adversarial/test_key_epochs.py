"""A server that asks for decryption under a key the key holder retired (issue 11).

Key epochs: key holders hold a share of the key of epoch 1 and, after a rotation, of
epoch 2. Once the REAL key-holder agent has locked a round under the key of epoch 2, the
key of epoch 1 is retired for it (durably, its share deleted): the malicious server
double asks again for a partial decryption of an aggregate under the old key, by name
and by lying about the key, and is refused both times, also after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

import secagg
from clients.client import TrainingClient
from clients.keyholder.storage import KeyHolderState
from clients.trainer import SyntheticTrainer
from secagg.errors import InvalidKeyMaterial, KeyRetired
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.statements import CeremonyStatement, Signed
from secagg.rpc.transport import identity

from ._expect import locked, partial, refused
from ._signatures import key_bundle
from .conftest import PASSPHRASE, Attack, Upload


def _state(attack: Attack, index: int) -> KeyHolderState:
    layout = DeploymentLayout(attack.directory)
    name = f"kh{index}"
    return KeyHolderState(
        layout.party_dir(name, "keyholder"),
        layout.state_dir(name, "keyholder"),
        passphrase=PASSPHRASE,
    )


def _second_epoch(attack: Attack) -> secagg.KeySet:
    """Every key holder gets its share of a new key as epoch 2 (as after a rotation)."""
    keys = secagg.dealerless_keygen(n=3, t=2, params=attack.roster.params)
    for share in keys.shares:
        _state(attack, share.index).save_share(share, epoch=2)
    return keys


def _task(
    attack: Attack,
    uploads: Sequence[Upload],
    *,
    key: JointPublicKey,
    kind: pb.TaskKind,
    round_number: int,
    quorum: tuple[int, ...] = (1, 2),
) -> pb.DecryptionTask:
    """A task for key holder 1 naming ``key`` (the server's hint) as the aggregate's key."""
    aggregate = attack.aggregate(*uploads)
    task = attack._task(uploads, aggregate, round_number, kind=kind)
    task.public_key_id = key.id_bytes
    if kind == pb.TASK_DECRYPT:
        task.quorum.extend(quorum)
        task.locks.extend(attack.certificate(aggregate.digest, round_number=round_number))
        task.task_id = next(attack._task_ids)
        task.log_size, task.log_head = 1, bytes(32)
    attack.double.give(task, to=1)
    return task


def test_a_retired_key_is_refused(attack: Attack) -> None:
    old = attack.keys.public_key
    new = _second_epoch(attack)
    attack.start_keyholder(1)
    round1 = [attack.upload(c, attack.encrypt(i)) for i, c in enumerate(("c1", "c2"))]
    partial(attack, _task(attack, round1, key=old, kind=pb.TASK_DECRYPT, round_number=1))

    vectors = [secagg.encrypt(new.public_key, attack.update(10 + i)) for i in range(2)]
    round2 = [
        attack.upload(c, v, round_number=2) for c, v in zip(("c1", "c2"), vectors, strict=True)
    ]
    locked(attack, 1, _task(attack, round2, key=new.public_key, kind=pb.TASK_LOCK, round_number=2))
    assert not _state(attack, 1).share_path(1).exists()  # the retired share is deleted

    again = _task(attack, round1, key=old, kind=pb.TASK_DECRYPT, round_number=1, quorum=(1, 3))
    assert "is retired" in refused(attack, again, KeyRetired)
    lying = _task(  # the old key's aggregate, named as under the new key
        attack, round1, key=new.public_key, kind=pb.TASK_DECRYPT, round_number=1, quorum=(1, 3)
    )
    refused(attack, lying, InvalidKeyMaterial)

    attack.stop_keyholders()  # durable: a restarted key holder still refuses
    attack.double.bundle = key_bundle(attack.directory, attack.roster, new)
    attack.start_keyholder(1)
    after = _task(attack, round1, key=old, kind=pb.TASK_DECRYPT, round_number=1, quorum=(1, 3))
    refused(attack, after, KeyRetired)
    lock_old = _task(attack, round1, key=old, kind=pb.TASK_LOCK, round_number=3)
    answer = attack.double.wait_lock(1, lock_old.aggregate_digest)
    assert isinstance(answer, pb.Refusal) and answer.reason.startswith("KEY_RETIRED: ")


def _bundle(attack: Attack, keys: secagg.KeySet, *, epoch: int) -> pb.PublicKeyBundle:
    """``keys``'s joint key with every key holder's endorsement signed in key epoch ``epoch``."""
    key_id = keys.public_key.id_bytes
    endorsements = []
    for kh in attack.roster.keyholders:
        statement = CeremonyStatement.of_body(
            attack.roster.deployment_id,
            kind=pb.ENDORSEMENT,
            sender=kh.index,
            recipient=0,
            body=key_id,
            epoch=epoch,
        )
        signed = Signed.create(statement, identity(attack.directory, kh.name).signing_key())
        endorsements.append(statement.to_proto(key_id, signed.signature))
    return pb.PublicKeyBundle(public_key=keys.public_key.to_bytes(), endorsements=endorsements)


def test_a_client_refuses_a_rollback_to_an_older_key(attack: Attack, tmp_path: Path) -> None:
    """After the key of epoch 2, the server serves the (genuinely endorsed) key of epoch 1."""
    new = secagg.dealerless_keygen(n=3, t=2, params=attack.roster.params)
    trainer = SyntheticTrainer(seed=1, weight=10, record_dir=tmp_path / "updates")
    client = TrainingClient(identity(attack.directory, "c1"), trainer, address=attack.address)
    try:
        attack.double.bundle = _bundle(attack, new, epoch=2)
        assert client.endorsed_public_key().id_bytes == new.public_key.id_bytes
        attack.double.bundle = _bundle(attack, attack.keys, epoch=1)
        with pytest.raises(InvalidKeyMaterial, match="epoch 1 after one of epoch 2"):
            client.endorsed_public_key()
    finally:
        client.conn.close()
