"""A deployment, a real key ceremony's shares, the server double and real key-holder agents.

The ``attack`` fixture gives a test an :class:`Attack`: a fresh deployment (4 clients,
3 key holders, threshold 2, ``min_weight`` 5), key shares from a local dealerless key
generation stored with the key holder's own storage code, the malicious server double
serving the joint key with every key holder's signed endorsement, and helpers to craft
client-signed uploads and decryption tasks. Key holders run as real agents in threads.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import secagg
from clients.connection import Connection
from clients.keyholder import KeyHolder
from clients.keyholder.storage import KeyHolderState
from secagg import constants as C
from secagg.proto import service_pb2 as pb
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CeremonyStatement, Signed, UploadStatement
from secagg.rpc.transport import identity

from ._server_double import ServerDouble, start_double

LENGTH = 16
MIN_WEIGHT = 5


@dataclass(frozen=True)
class Upload:
    """A client-signed upload: the contribution a task lists, its blob and its ciphertext."""

    contribution: pb.Contribution
    blob: bytes
    vector: secagg.EncryptedVector


@dataclass
class Attack:
    """One deployment under a malicious server (see the module docstring)."""

    directory: Path
    roster: Roster
    keys: secagg.KeySet
    double: ServerDouble
    address: str
    agents: list[tuple[KeyHolder, threading.Thread]] = field(default_factory=list)
    _task_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------ crafting
    def encrypt(self, seed: int) -> secagg.EncryptedVector:
        """A fresh ciphertext of a random model update."""
        update = np.random.default_rng(seed).uniform(-1.0, 1.0, LENGTH)
        return secagg.encrypt(self.keys.public_key, update)

    def upload(
        self,
        client: str,
        vector: secagg.EncryptedVector,
        *,
        weight: int = 10,
        round_number: int = 1,
        blob: bytes | None = None,
    ) -> Upload:
        """``client`` signs ``vector`` (or ``blob``, another encoding of it) as its upload."""
        data = vector.to_bytes() if blob is None else blob
        model = self.roster.initial_model_hash if round_number == 1 else bytes(32)
        statement = UploadStatement(
            deployment_id=self.roster.deployment_id,
            round=round_number,
            client_id=client,
            nonce=hashlib.sha256(data + client.encode()).digest()[: C.UPLOAD_NONCE_BYTES],
            global_model_hash=model,
            ciphertext_hash=hashlib.sha256(data).digest(),
            weight=weight,
        )
        signed = Signed.create(statement, identity(self.directory, client).signing_key())
        return Upload(statement.to_contribution(signed.signature), data, vector)

    def task(
        self, *uploads: Upload, round_number: int = 1, quorum: tuple[int, ...] = (1, 2)
    ) -> pb.DecryptionTask:
        """Queue a task over the weighted sum of ``uploads``; the task (ids are fresh)."""
        aggregate = secagg.aggregate(
            [u.vector for u in uploads], [u.contribution.weight for u in uploads]
        )
        blob = aggregate.to_bytes()
        task = pb.DecryptionTask(
            pending=True,
            round=round_number,
            aggregate_hash=hashlib.sha256(blob).digest(),
            aggregate_digest=aggregate.digest,
            contributions=[u.contribution for u in uploads],
            quorum=list(quorum),
            task_id=next(self._task_ids),
            log_size=1,
            log_head=bytes(32),
        )
        self.double.give(task, blob, *(u.blob for u in uploads))
        return task

    # ------------------------------------------------------------ key holders
    def start_keyholder(self, index: int) -> KeyHolder:
        """Run key holder ``index``'s real agent in a thread, against the double."""
        me = identity(self.directory, f"kh{index}")
        agent = KeyHolder(me)
        agent.conn = Connection(me, self.address, stop=agent.stop)
        thread = threading.Thread(target=agent.run, name=f"kh{index}", daemon=True)
        thread.start()
        self.agents.append((agent, thread))
        return agent

    def stop_keyholders(self) -> None:
        """Stop every agent (bounded); raise if one does not stop."""
        for agent, _ in self.agents:
            agent.stop.set()
        for agent, thread in self.agents:
            thread.join(timeout=30)
            assert not thread.is_alive(), f"key holder {agent.index} did not stop"
            agent.conn.close()
        self.agents.clear()


def _bundle(directory: Path, roster: Roster, keys: secagg.KeySet) -> pb.PublicKeyBundle:
    """The joint key with every key holder's signed endorsement (as after a ceremony)."""
    key_id = keys.public_key.id_bytes
    endorsements = []
    for kh in roster.keyholders:
        statement = CeremonyStatement.of_body(
            roster.deployment_id, kind=pb.ENDORSEMENT, sender=kh.index, recipient=0, body=key_id
        )
        signed = Signed.create(statement, identity(directory, kh.name).signing_key())
        endorsements.append(statement.to_proto(key_id, signed.signature))
    return pb.PublicKeyBundle(public_key=keys.public_key.to_bytes(), endorsements=endorsements)


@pytest.fixture
def attack(tmp_path: Path) -> Iterator[Attack]:
    directory = tmp_path / "deployment"
    roster = init_deployment(
        directory, clients=4, keyholders=3, threshold=2, model_length=LENGTH, min_weight=MIN_WEIGHT
    )
    keys = secagg.dealerless_keygen(n=3, t=2, params=roster.params)
    layout = DeploymentLayout(directory)
    for share in keys.shares:
        name = f"kh{share.index}"
        state = KeyHolderState(
            layout.party_dir(name, "keyholder"), layout.state_dir(name, "keyholder")
        )
        state.save_share(share)
    double = ServerDouble(_bundle(directory, roster, keys))
    server, address = start_double(directory, double)
    world = Attack(directory, roster, keys, double, address)
    try:
        yield world
    finally:
        world.stop_keyholders()
        server.stop(grace=None)
