"""Key epochs in the server: a rotation's key is used from the next round on, never mid-round.

The server opens the ceremony of epoch 2 (``secagg admin rotate-key``) while round 1 runs
under the key of epoch 1; once every key holder endorsed the new key, round 2 (the next
round opened) uses it: its ``RoundInfo.public_key_id``, the bundle ``GetPublicKey``
serves, the key its uploads must be under, the key id its tasks name. The audit log holds
both ceremonies and both keys, each key logged before any aggregate under it. A ceremony
message of epoch 1 is refused in epoch 2 (its signature binds its epoch).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

import secagg
from clients.client import verify_public_key_bundle
from secagg import constants as C
from secagg.errors import InvalidCiphertext, PolicyViolation, SignatureInvalid
from secagg.proto import service_pb2 as pb

from ._epochs import ceremony_message, exchange_key, run_ceremony
from ._keyholders import run
from .conftest import CLIENTS, Server
from .test_uploads import send


def _fill(server: Server) -> None:
    for client in CLIENTS:
        header, blob, _ = server.world.upload(client, server.info())
        send(server, client, header, blob)


def _released(server: Server, round_number: int) -> None:
    for k in (1, 2, 3):
        server.manager.seen(k)
    run(server, (1, 2, 3))
    assert server.manager.release(round_number) is not None


def test_rounds_switch_key_at_a_round_boundary(server: Server) -> None:
    old = server.world.keys.public_key
    _fill(server)  # round 1 closes under the key of epoch 1
    assert server.manager.epochs.rotate() == 2
    assert server.manager.task_for(1).ceremony_epoch == 2
    new = run_ceremony(server, 2)  # while round 1 is being decrypted
    assert new.public_key.id_bytes != old.id_bytes
    assert server.info().public_key_id == old.id_bytes  # round 1 keeps its key
    task = server.manager.task_for(1)
    assert task.pending and task.public_key_id == old.id_bytes

    _released(server, 1)
    info = server.info()
    assert info.round == 2 and info.state == pb.COLLECTING
    assert info.public_key_id == new.public_key.id_bytes  # round 2: the new key
    bundle = server.manager.epochs.bundle()
    assert bundle is not None
    verified = verify_public_key_bundle(bundle, server.world.roster)
    assert verified.id_bytes == new.public_key.id_bytes

    header, blob, _ = server.world.upload("c1", info)  # still under the old key
    with pytest.raises(InvalidCiphertext, match="joint public key"):
        send(server, "c1", header, blob)
    server.world = dataclasses.replace(server.world, keys=new)
    _fill(server)
    assert server.manager.task_for(1).public_key_id == new.public_key.id_bytes
    _released(server, 2)

    entries = [json.loads(line) for line in server.audit_path.read_text().splitlines()]
    types = [e["type"] for e in entries]
    keys = [e["data"] for e in entries if e["type"] == "public_key"]
    assert [k["id"] for k in keys] == [old.id_bytes.hex(), new.public_key.id_bytes.hex()]
    assert {e["data"]["epoch"] for e in entries if e["type"] == "ceremony"} == {2}  # 1: a known key
    second_key = types.index("public_key", types.index("public_key") + 1)
    aggregates = [i for i, t in enumerate(types) if t == "aggregate"]
    assert aggregates[0] < second_key < aggregates[1]  # each key before its aggregates


def test_a_message_of_epoch_1_is_refused_in_epoch_2(server: Server) -> None:
    server.manager.epochs.rotate()
    replayed = ceremony_message(server, pb.EXCHANGE_KEY, 1, exchange_key(), epoch=1)
    with pytest.raises(PolicyViolation, match="open key ceremony is epoch 2"):
        server.manager.post_ceremony_message(1, replayed)
    replayed.epoch = 2  # relabelled: the signature covers epoch 1
    with pytest.raises(SignatureInvalid):
        server.manager.post_ceremony_message(1, replayed)
    assert server.ctx.store.ceremony_messages(pb.EXCHANGE_KEY, epoch=2) == []


def test_a_running_ceremony_is_not_used_until_complete(server: Server) -> None:
    server.manager.epochs.rotate()
    msg = ceremony_message(server, pb.EXCHANGE_KEY, 1, exchange_key(), epoch=2)
    server.manager.post_ceremony_message(1, msg)
    _fill(server)
    _released(server, 1)
    assert server.info().round == 2
    assert server.info().public_key_id == server.world.keys.public_key.id_bytes


def test_the_server_rotates_when_a_key_holder_budget_runs_low(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = server.world.roster.params
    one_partial = secagg.ciphertext.ciphertext_count(
        params, server.world.roster.policy.model_length
    )
    fraction = 1.5 * one_partial * params.poly_modulus_degree / params.decryption_budget
    monkeypatch.setattr(C, "KEY_ROTATION_BUDGET_FRACTION", fraction)  # two partials each
    _fill(server)
    _released(server, 1)  # 3 quorums of 2: every key holder sends two partials
    assert server.manager.ceremony.open_epoch() == 2
    assert server.manager.task_for(1).ceremony_epoch == 2
