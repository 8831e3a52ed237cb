"""A deployment, a real key ceremony's shares, the server double and real key-holder agents.

The ``attack`` fixture gives a test an :class:`Attack`: a fresh deployment (4 clients,
3 key holders, threshold 2, ``min_weight`` 5; ``attack4``: 4 key holders, threshold 2),
key shares from a local dealerless key generation stored with the key holder's own
storage code, the malicious server double serving the joint key with every key holder's
signed endorsement, and helpers to craft client-signed uploads, LOCK and DECRYPT tasks
and the signatures of any party (the test plays the colluding ones: clients, corrupt key
holders, the server). Key holders run as real agents in threads.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import secagg
from clients.connection import Connection
from clients.keyholder import KeyHolder
from clients.keyholder.storage import KeyHolderState
from secagg import constants as C
from secagg.encoding import F64
from secagg.proto import service_pb2 as pb
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Roster
from secagg.protocol.statements import Signed, UploadStatement
from secagg.rpc.transport import identity

from ._expect import locked
from ._server_double import ServerDouble, aggregate_parts, start_double
from ._signatures import Signatures, key_bundle

LENGTH = 16
MIN_WEIGHT = 5
#: The key holders' share passphrase (generated per test session).
PASSPHRASE = secrets.token_urlsafe(24).encode()


@dataclass(frozen=True)
class Upload:
    """A client-signed upload: the contribution a task lists and its ciphertext (the
    signed ``ciphertext_hash`` is the ciphertext's digest)."""

    contribution: pb.Contribution
    vector: secagg.EncryptedVector


@dataclass
class Attack(Signatures):
    """One deployment under a malicious server (see the module docstring)."""

    directory: Path
    roster: Roster
    keys: secagg.KeySet
    double: ServerDouble
    address: str
    agents: list[tuple[KeyHolder, threading.Thread]] = field(default_factory=list)
    _task_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------ crafting
    def update(self, seed: int) -> F64:
        """A random model update (what :meth:`encrypt` encrypts for ``seed``)."""
        return np.random.default_rng(seed).uniform(-1.0, 1.0, LENGTH)

    def encrypt(self, seed: int) -> secagg.EncryptedVector:
        """A fresh ciphertext of a random model update."""
        return secagg.encrypt(self.keys.public_key, self.update(seed))

    def upload(
        self,
        client: str,
        vector: secagg.EncryptedVector,
        *,
        weight: int = 10,
        round_number: int = 1,
        epsilon: float = 0.0,
    ) -> Upload:
        """``client`` signs ``vector`` as its upload (served by the double, honestly)."""
        model = self.roster.initial_model_hash if round_number == 1 else bytes(32)
        nonce = hashlib.sha256(vector.digest + client.encode()).digest()
        statement = UploadStatement(
            deployment_id=self.roster.deployment_id,
            round=round_number,
            client_id=client,
            nonce=nonce[: C.UPLOAD_NONCE_BYTES],
            global_model_hash=model,
            ciphertext_hash=vector.digest,
            weight=weight,
            epsilon=epsilon,
        )
        signed = Signed.create(statement, identity(self.directory, client).signing_key())
        self.double.serve_vectors(vector)
        return Upload(statement.to_contribution(signed.signature), vector)

    def aggregate(self, *uploads: Upload) -> secagg.EncryptedAggregate:
        """The weighted sum of ``uploads``, as an honest server computes it."""
        return secagg.aggregate(
            [u.vector for u in uploads], [u.contribution.weight for u in uploads]
        )

    def task(
        self,
        *uploads: Upload,
        round_number: int = 1,
        quorum: tuple[int, ...] = (1, 2),
        locks: Iterable[pb.Lock] | None = None,
        to: int | None = None,
    ) -> pb.DecryptionTask:
        """Queue a DECRYPT task over the weighted sum of ``uploads``; the task (ids are fresh).

        ``locks`` default to a full lock certificate, every key holder's lock signed by the
        test (playing the key holders that locked): the key holder's own checks are what
        is exercised. ``to``: only key holder ``to`` gets the task.
        """
        aggregate = self.aggregate(*uploads)
        if locks is None:
            locks = self.certificate(aggregate.digest, round_number=round_number)
        task = self._task(uploads, aggregate, round_number, kind=pb.TASK_DECRYPT)
        task.quorum.extend(quorum)
        task.locks.extend(locks)
        task.task_id = next(self._task_ids)
        task.log_size, task.log_head = 1, bytes(32)
        self.double.give(task, to=to)
        return task

    def lock_task(self, *uploads: Upload, to: int, round_number: int = 1) -> pb.DecryptionTask:
        """Queue for key holder ``to`` a LOCK task of the round to the sum of ``uploads``."""
        aggregate = self.aggregate(*uploads)
        task = self._task(uploads, aggregate, round_number, kind=pb.TASK_LOCK)
        self.double.give(task, to=to)
        return task

    def _task(
        self,
        uploads: Iterable[Upload],
        aggregate: secagg.EncryptedAggregate,
        round_number: int,
        *,
        kind: pb.TaskKind,
    ) -> pb.DecryptionTask:
        """The task; the double serves the aggregate too (a key holder fetches it only for
        an ENDORSE task of a round it has no own aggregate of) unless the test serves
        something else under its digest already."""
        if aggregate.digest not in self.double.chunked:
            self.double.serve_chunked(aggregate.digest, aggregate_parts(aggregate))
        return pb.DecryptionTask(
            pending=True,
            kind=kind,
            round=round_number,
            aggregate_hash=aggregate.digest,
            aggregate_digest=aggregate.digest,
            contributions=[u.contribution for u in uploads],
        )

    def endorse_task(
        self,
        *uploads: Upload,
        partials: Iterable[pb.QuorumPartials],
        model_hash: bytes,
        locks: Iterable[pb.Lock] | None = None,
        to: int,
    ) -> pb.DecryptionTask:
        """Queue for key holder ``to`` an ENDORSE task: these quorums' partials, this model.

        ``locks`` default to a full certificate signed by the test; serve the partials
        with :meth:`ServerDouble.serve_chunked`.
        """
        aggregate = self.aggregate(*uploads)
        task = self._task((), aggregate, 1, kind=pb.TASK_ENDORSE)  # the server lists none
        task.locks.extend(self.certificate(aggregate.digest) if locks is None else locks)
        task.partials.extend(partials)
        task.model_hash = model_hash
        self.double.give(task, to=to)
        return task

    def locked_by(self, *keyholders: int, uploads: Iterable[Upload]) -> list[pb.Lock]:
        """Real agents ``keyholders`` lock round 1 to the sum of ``uploads`` (each must lock)."""
        task = self.lock_task(*uploads, to=keyholders[0])
        for k in keyholders[1:]:
            self.double.give(task, to=k)
        return [locked(self, k, task) for k in keyholders]

    # ------------------------------------------------------------ key holders
    def start_keyholder(self, index: int) -> KeyHolder:
        """Run key holder ``index``'s real agent in a thread, against the double."""
        me = identity(self.directory, f"kh{index}")
        agent = KeyHolder(me, passphrase=PASSPHRASE)
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


def _world(tmp_path: Path, *, keyholders: int, threshold: int) -> Iterator[Attack]:
    directory = tmp_path / "deployment"
    roster = init_deployment(
        directory,
        clients=4,
        keyholders=keyholders,
        threshold=threshold,
        model_length=LENGTH,
        min_weight=MIN_WEIGHT,
    )
    keys = secagg.dealerless_keygen(n=keyholders, t=threshold, params=roster.params)
    layout = DeploymentLayout(directory)
    for share in keys.shares:
        name = f"kh{share.index}"
        state = KeyHolderState(
            layout.party_dir(name, "keyholder"),
            layout.state_dir(name, "keyholder"),
            passphrase=PASSPHRASE,
        )
        state.save_share(share)
    double = ServerDouble(key_bundle(directory, roster, keys))
    server, address = start_double(directory, double)
    world = Attack(directory, roster, keys, double, address)
    try:
        yield world
    finally:
        world.stop_keyholders()
        server.stop(grace=None)


@pytest.fixture
def attack(tmp_path: Path) -> Iterator[Attack]:
    """3 key holders, threshold 2 (the default deployment): a lock needs all 3."""
    yield from _world(tmp_path, keyholders=3, threshold=2)


@pytest.fixture
def attack4(tmp_path: Path) -> Iterator[Attack]:
    """4 key holders, threshold 2: two disjoint quorums exist; a lock needs 3."""
    yield from _world(tmp_path, keyholders=4, threshold=2)
