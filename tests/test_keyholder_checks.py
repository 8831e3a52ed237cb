"""The key holder's task checks, in process: one test per rule, with real roster signatures.

:func:`clients.keyholder.checks.check_task` is the network-free half of what a key holder
checks before it partially decrypts: every contribution is a roster client's signed
upload statement for the task's round, and the set passes the shared policy. Each rule
raises its own error whose ``reason`` code lands in the signed refusal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clients.keyholder.agent import KeyHolder
from clients.keyholder.checks import check_not_decrypted, check_task
from clients.keyholder.record import Decryption, DecryptionRecord
from clients.keyholder.storage import KeyHolderState
from secagg import constants as C
from secagg.errors import (
    AlreadyDecrypted,
    DuplicateContributor,
    EpsilonOverBudget,
    MixedGlobalModels,
    SecAggError,
    SignatureInvalid,
    TooFewContributors,
    UnknownParty,
    WeightShareExceeded,
)
from secagg.proto import service_pb2 as pb
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Roster
from secagg.protocol.statements import RefusalStatement, Signed, UploadStatement
from secagg.rpc.transport import identity

MODEL = hashlib.sha256(b"global model of round 1").digest()
OTHER_MODEL = hashlib.sha256(b"another global model").digest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Roster]:
    dep = tmp_path_factory.mktemp("dep")
    roster = init_deployment(
        dep,
        clients=4,
        keyholders=3,
        threshold=2,
        min_contributors=2,
        max_weight_share=0.5,
        epsilon_budget=3.0,
    )
    return dep, roster


def contribution(
    world: tuple[Path, Roster],
    client: str,
    *,
    weight: int = 10,
    signer: str | None = None,
    **changes: Any,
) -> pb.Contribution:
    """``client``'s signed upload statement for round 1, as a task lists it."""
    dep, roster = world
    statement = dataclasses.replace(
        UploadStatement(
            deployment_id=roster.deployment_id,
            round=1,
            client_id=client,
            nonce=os.urandom(C.UPLOAD_NONCE_BYTES),
            global_model_hash=roster.initial_model_hash,
            ciphertext_hash=hashlib.sha256(client.encode()).digest(),
            weight=weight,
        ),
        **changes,
    )
    signed = Signed.create(statement, identity(dep, signer or client).signing_key())
    return statement.to_contribution(signed.signature)


def task(*contributions: pb.Contribution, round_number: int = 1) -> pb.DecryptionTask:
    return pb.DecryptionTask(
        pending=True,
        round=round_number,
        task_id=7,
        aggregate_digest=hashlib.sha256(b"aggregate").digest(),
        contributions=list(contributions),
        quorum=[1, 2],
    )


def rejects(
    world: tuple[Path, Roster], t: pb.DecryptionTask, error: type[SecAggError], match: str
) -> SecAggError:
    with pytest.raises(error, match=match) as excinfo:
        check_task(world[1], t)
    assert excinfo.value.reason == error.reason
    return excinfo.value


# ----------------------------------------------------------------------------- rules


def test_valid_task_passes(world: tuple[Path, Roster]) -> None:
    t = task(*(contribution(world, c) for c in ("c1", "c2", "c3")))
    statements = check_task(world[1], t)
    assert [s.client_id for s in statements] == ["c1", "c2", "c3"]
    assert all(
        s.round == 1 and s.global_model_hash == world[1].initial_model_hash for s in statements
    )


def test_too_few_contributors(world: tuple[Path, Roster]) -> None:
    exc = rejects(
        world,
        task(contribution(world, "c1")),
        TooFewContributors,
        r"1 contributor\(s\); the policy requires at least 2",
    )
    assert exc.reason == "TOO_FEW_CONTRIBUTORS"


def test_duplicate_client(world: tuple[Path, Roster]) -> None:
    t = task(contribution(world, "c1"), contribution(world, "c1"), contribution(world, "c2"))
    rejects(world, t, DuplicateContributor, "listed twice")


def test_mixed_global_models(world: tuple[Path, Roster]) -> None:
    t = task(contribution(world, "c1"), contribution(world, "c2", global_model_hash=OTHER_MODEL))
    rejects(world, t, MixedGlobalModels, "different global models")


def test_weight_share(world: tuple[Path, Roster]) -> None:
    t = task(contribution(world, "c1", weight=100), contribution(world, "c2", weight=30))
    rejects(world, t, WeightShareExceeded, "a client holds 100/130 of the weight; cap 0.5")


def test_epsilon_over_budget(world: tuple[Path, Roster]) -> None:
    t = task(contribution(world, "c1"), contribution(world, "c2", epsilon=3.5))
    rejects(world, t, EpsilonOverBudget, "epsilon 3.5 exceeds the deployment's budget 3")


def test_bad_signature(world: tuple[Path, Roster]) -> None:
    bad = contribution(world, "c2")
    bad.signature = bytes([bad.signature[0] ^ 1]) + bad.signature[1:]
    rejects(world, task(contribution(world, "c1"), bad), SignatureInvalid, "c2")


def test_field_changed_after_signing(world: tuple[Path, Roster]) -> None:
    heavier = contribution(world, "c2")
    heavier.weight = 11  # the server cannot reweigh a signed upload
    rejects(world, task(contribution(world, "c1"), heavier), SignatureInvalid, "c2")


def test_statement_of_another_round(world: tuple[Path, Roster]) -> None:
    """A contribution signed for round 2 does not verify as part of a round-1 task."""
    t = task(contribution(world, "c1"), contribution(world, "c2", round=2))
    rejects(world, t, SignatureInvalid, "c2")


def test_unknown_client(world: tuple[Path, Roster]) -> None:
    stranger = contribution(world, "mallory", signer="c3")
    rejects(world, task(contribution(world, "c1"), stranger), UnknownParty, "mallory")


# ----------------------------------------------------------------------------- records


def test_second_aggregate_of_a_decrypted_round(world: tuple[Path, Roster], tmp_path: Path) -> None:
    state = KeyHolderState(tmp_path, tmp_path / "state", passphrase=secrets.token_bytes(16))
    record = DecryptionRecord(state.state_dir)
    t = task(contribution(world, "c1"), contribution(world, "c2"))
    check_not_decrypted(record.decrypted(), t)  # nothing decrypted yet
    record.remember(Decryption(1, t.aggregate_digest), ())
    check_not_decrypted(record.decrypted(), t)  # the same aggregate again: allowed
    record.remember(Decryption(1, hashlib.sha256(b"another aggregate").digest()), ())
    with pytest.raises(AlreadyDecrypted, match="locked to another aggregate"):
        check_not_decrypted(record.decrypted(), t)
    assert (tmp_path / "state" / "decrypted.json").stat().st_mode & 0o777 == 0o600


# ----------------------------------------------------------------------------- refusal


class _RecordingConnection:
    """Stands in for the server connection: records calls, answers nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.stub = self

    def __getattr__(self, name: str) -> Any:
        return name

    def call(self, fn: Any, request: Any, **_: Any) -> None:
        self.calls.append((fn, request))


def test_refusal_is_signed_with_reason_code_and_text(world: tuple[Path, Roster]) -> None:
    dep, roster = world
    me = identity(dep, "kh2")
    agent = KeyHolder(me, passphrase=secrets.token_bytes(16))
    assert agent.state.state_dir == DeploymentLayout(dep).state_dir("kh2", "keyholder")
    conn = _RecordingConnection()
    agent.conn = conn  # type: ignore[assignment]
    t = task(contribution(world, "c1"))
    unused_share = SimpleNamespace(public_key_id=b"")  # refused before the share is used
    agent.answer(t, share=unused_share)  # type: ignore[arg-type]
    [(method, refusal)] = conn.calls
    assert method == "RefuseTask" and refusal.task_id == t.task_id
    assert refusal.reason == (
        "TOO_FEW_CONTRIBUTORS: 1 contributor(s); the policy requires at least 2"
    )
    statement = RefusalStatement.from_proto(roster.deployment_id, refusal).verify(roster)
    assert (statement.keyholder, statement.round) == (2, 1)
