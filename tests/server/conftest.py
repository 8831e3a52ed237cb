"""In-process fixtures of the server tier: a roster, keys, both stores, a manager.

Nothing here starts a process or opens a socket: the round manager runs on a store
(SQLite in a temporary directory, or in memory) with the real cryptography at a small
model length, and time is an injected clock the tests step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import secagg
import secagg.errors
from secagg.chunked import VectorHead, payload_chunks
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_log import AuditLog
from secagg.protocol.model_blob import encode_model
from secagg.protocol.roster import Party, Policy, Roster
from secagg.protocol.statements import Signed, UploadStatement
from server.audit_trail import AuditTrail
from server.context import Context
from server.liveness import Liveness
from server.rounds import RoundManager
from server.store import BlobStore, MemoryStore, SqliteStore, Store

LENGTH = 100
DEPLOYMENT = "test-deployment"
CLIENTS = ("c1", "c2", "c3", "c4")


class Clock:
    """A clock the test steps."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class World:
    """A roster with its private signing keys and a joint key set."""

    roster: Roster
    server_key: Ed25519PrivateKey
    keyholder_keys: dict[int, Ed25519PrivateKey]
    client_keys: dict[str, Ed25519PrivateKey]
    keys: secagg.KeySet
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(5))

    def with_policy(self, **changes: object) -> World:
        policy = dataclasses.replace(self.roster.policy, **changes)  # type: ignore[arg-type]
        roster = dataclasses.replace(self.roster, policy=policy)
        return World(
            roster, self.server_key, self.keyholder_keys, self.client_keys, self.keys, self.rng
        )

    def upload(
        self,
        client: str,
        info: pb.RoundInfo,
        *,
        weight: int = 10,
        vector: np.ndarray | None = None,
        ciphertext: secagg.EncryptedVector | None = None,
        head: bytes | None = None,
        **overrides: object,
    ) -> tuple[pb.UploadHeader, list[bytes], np.ndarray]:
        """A signed upload header (with the ciphertext's head), its chunks and the plaintext.

        ``head``: other head bytes in the header (the signature is over their digest if
        they parse, else over ``ciphertext_hash`` from ``overrides`` or zeros).
        """
        if vector is None:
            vector = self.rng.uniform(-1.0, 1.0, LENGTH)
        if ciphertext is None:
            ciphertext = secagg.encrypt(self.keys.public_key, vector)
        chunks = [bytes(c) for c in payload_chunks(ciphertext)]
        if head is None:
            head = VectorHead.of(ciphertext).to_bytes()
        try:
            digest = VectorHead.from_bytes(head, self.roster.params).digest
        except secagg.errors.SecAggError:
            digest = bytes(32)
        fields: dict[str, object] = {
            "deployment_id": DEPLOYMENT,
            "round": info.round,
            "client_id": client,
            "nonce": os.urandom(16),
            "global_model_hash": info.global_model_hash,
            "ciphertext_hash": digest,
            "weight": weight,
            "epsilon": 0.5,
        }
        fields.update(overrides)
        statement = UploadStatement(**fields)  # type: ignore[arg-type]
        signed = Signed.create(statement, self.client_keys[client])
        return statement.to_header(signed.signature, head=head), chunks, vector


def make_world(keyholders: int = 3, threshold: int = 2) -> World:
    """A roster of ``keyholders`` key holders (indices 1..n) and CLIENTS, with a joint key."""
    params = secagg.Parameters.default()
    server_key = Ed25519PrivateKey.generate()
    kh_keys = {i: Ed25519PrivateKey.generate() for i in range(1, keyholders + 1)}
    cl_keys = {c: Ed25519PrivateKey.generate() for c in CLIENTS}
    roster = Roster(
        deployment_id=DEPLOYMENT,
        server_address="localhost:0",
        initial_model_hash=hashlib.sha256(encode_model(1, np.zeros(LENGTH))).digest(),
        params=params,
        policy=Policy(threshold=threshold, keyholders=keyholders, rounds=2, model_length=LENGTH),
        server=Party("server", "server", _raw(server_key)),
        keyholders=tuple(
            Party(f"kh{i}", "keyholder", _raw(k), index=i) for i, k in kh_keys.items()
        ),
        clients=tuple(Party(c, "client", _raw(k)) for c, k in cl_keys.items()),
    )
    keys = secagg.dealerless_keygen(n=keyholders, t=threshold, params=params)
    return World(roster, server_key, kh_keys, cl_keys, keys)


@pytest.fixture(scope="session")
def world() -> World:
    """Three key holders, threshold 2 (the default deployment's shape)."""
    return make_world()


@pytest.fixture(scope="session")
def world5() -> World:
    """Five key holders, threshold 2 (a round is locked by 4, decrypted by any 2)."""
    return make_world(5, 2)


@pytest.fixture(scope="session")
def world5t3() -> World:
    """Five key holders, threshold 3 (locked by 4 = 2t - 2; a cross-check needs all 5)."""
    return make_world(5, 3)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store implementation in turn (the conformance suite runs on both)."""
    made: Store = (
        MemoryStore(deployment_id=DEPLOYMENT)
        if request.param == "memory"
        else SqliteStore(tmp_path / "state.db", deployment_id=DEPLOYMENT)
    )
    yield made
    made.close()


@dataclass
class Server:
    """An in-process round manager and the handles a test steps."""

    manager: RoundManager
    ctx: Context
    clock: Clock
    monotonic: Clock
    world: World
    audit_path: Path

    def info(self) -> pb.RoundInfo:
        return self.manager.round_info()

    def audit_types(self) -> list[str]:
        return [json.loads(line)["type"] for line in self.audit_path.read_text().splitlines()]


def make_server(
    world: World, store: Store, tmp_path: Path, *, live: tuple[int, ...] = ()
) -> Server:
    """A recovered manager on ``store``; key holders ``live`` polled just before."""
    clock, monotonic = Clock(), Clock()
    audit_path = tmp_path / "audit.log"
    ctx = Context(
        store=store,
        blobs=BlobStore(tmp_path / "blobs"),
        roster=world.roster,
        audit=AuditTrail(AuditLog(audit_path), world.roster, world.server_key),
        signing_key=world.server_key,
        clock=clock,
    )
    manager = RoundManager(
        ctx, public_key=world.keys.public_key, liveness=Liveness(clock=monotonic)
    )
    for k in live:
        manager.seen(k)
    manager.recover()
    return Server(manager, ctx, clock, monotonic, world, audit_path)


@pytest.fixture
def server(world: World, store: Store, tmp_path: Path) -> Server:
    """A round manager in round 1 (COLLECTING) on each store."""
    return make_server(world, store, tmp_path)


@pytest.fixture(scope="session")
def other_keys() -> secagg.KeySet:
    """An independent key set (ciphertexts under another joint key)."""
    return secagg.dealerless_keygen(n=3, t=2, params=secagg.Parameters.default())
