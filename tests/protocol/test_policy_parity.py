"""One policy, three enforcers: the server, the key holder and ``secagg audit verify``.

For every rule of :mod:`secagg.protocol.policy` the same violating contributor set, with
real signatures, goes to

* the server's close decision (:func:`server.state.review_collecting`, what the server
  runs before it asks for a decryption): the round does not close, and its status
  carries the rule's reason code;
* the key holder's task check (:func:`clients.keyholder.checks.check_task`, what it runs
  before it answers): it raises the rule's error;
* the offline verifier, on an audit log recording those uploads and that aggregate: it
  reports the aggregate entry with the rule's reason code.

All three must name the same reason. Two rules need more than one contributor set: the
roster's ``require_dp`` (a deployment initialised with ``--require-dp``) and a client's ε
that must never decrease across rounds, which the server checks at upload (against its
store) and the verifier across the log; key holders do not keep ε across rounds.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from clients.keyholder.checks import check_task
from secagg.chunked import VectorHead, chunk_count
from secagg.ciphertext import ciphertext_count
from secagg.errors import (
    DPRequired,
    DuplicateCiphertext,
    DuplicateContributor,
    EpsilonDecreased,
    EpsilonOverBudget,
    MixedGlobalModels,
    RoundOutOfRange,
    SecAggError,
    TooFewContributors,
    UnexpectedGlobalModel,
    WeightBudgetExceeded,
    WeightShareExceeded,
)
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import (
    AggregateEntry,
    AggregateInput,
    CeremonyEntry,
    PublicKeyEntry,
    RosterEntry,
    RoundOpenEntry,
    UploadEntry,
)
from secagg.protocol.audit_log import AuditLog
from secagg.protocol.audit_verify import verify_log
from secagg.protocol.deployment import init_deployment
from secagg.protocol.exact_float import exact_json
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CeremonyStatement, Signed, UploadStatement
from secagg.rpc.transport import Identity, identity
from server.audit_trail import AuditTrail
from server.context import Context
from server.state import Upload, open_round, review_collecting
from server.store.blobs import BlobStore
from server.store.memory import MemoryStore
from server.uploads import Uploads as ServerUploads

Uploads = list[UploadStatement]


def _uploads(roster: Roster, weights: dict[str, int], round_number: int = 1) -> Uploads:
    return [
        UploadStatement(
            deployment_id=roster.deployment_id,
            round=round_number,
            client_id=name,
            nonce=bytes([n + 1]) * 16,
            global_model_hash=roster.initial_model_hash,
            ciphertext_hash=hashlib.sha256(f"{name}/{n}".encode()).digest(),
            weight=weight,
            epsilon=1.0,
        )
        for n, (name, weight) in enumerate(weights.items())
    ]


def _duplicate(roster: Roster) -> Uploads:
    two = _uploads(roster, {"c1": 10, "c2": 10})
    return [*two, replace(two[0], nonce=bytes([9]) * 16, ciphertext_hash=bytes(32))]


def _copy(roster: Roster) -> Uploads:
    """c2 signs c1's ciphertext as its own upload."""
    c1, c2, c3 = _uploads(roster, {"c1": 10, "c2": 10, "c3": 10})
    return [c1, replace(c2, ciphertext_hash=c1.ciphertext_hash), c3]


def _above_cap(roster: Roster) -> Uploads:
    """One upload heavier than the per-client cap (it would starve the other clients)."""
    cap = roster.policy.max_client_weight
    return _uploads(roster, {"c1": cap + 1, "c2": cap, "c3": cap})


#: rule -> (error the key holder raises, violating contributor set)
RULES: dict[str, tuple[type[SecAggError], Callable[[Roster], Uploads]]] = {
    "too few contributors": (TooFewContributors, lambda r: _uploads(r, {"c1": 10})),
    "duplicate contributor": (DuplicateContributor, _duplicate),
    "mixed global models": (
        MixedGlobalModels,
        lambda r: [
            *_uploads(r, {"c1": 10, "c2": 10}),
            replace(_uploads(r, {"c3": 10})[0], global_model_hash=bytes(32)),
        ],
    ),
    "unexpected initial model": (
        UnexpectedGlobalModel,
        lambda r: [
            replace(u, global_model_hash=bytes(32)) for u in _uploads(r, {"c1": 1, "c2": 1})
        ],
    ),
    "weight share": (WeightShareExceeded, lambda r: _uploads(r, {"c1": 100, "c2": 10, "c3": 10})),
    "epsilon over budget": (
        EpsilonOverBudget,
        lambda r: [*_uploads(r, {"c1": 10}), replace(_uploads(r, {"c2": 10})[0], epsilon=3.5)],
    ),
    "zero weight": (WeightBudgetExceeded, lambda r: _uploads(r, {"c1": 10, "c2": 0, "c3": 10})),
    "copied ciphertext": (DuplicateCiphertext, _copy),
    "weight above the per-client cap": (WeightBudgetExceeded, _above_cap),
    "round beyond the policy": (
        RoundOutOfRange,
        lambda r: _uploads(r, {"c1": 10, "c2": 10}, round_number=r.policy.rounds + 1),
    ),
}


def _sign(uploads: Uploads, parties: dict[str, Identity]) -> list[Signed[UploadStatement]]:
    return [Signed.create(u, parties[u.client_id].signing_key()) for u in uploads]


def _server_reason(roster: Roster, uploads: Uploads) -> str:
    """What the server's close decision says about a due round with these uploads."""
    rnd = open_round(uploads[0].round, uploads[0].global_model_hash, policy=roster.policy, now=0.0)
    verdict = review_collecting(
        rnd,
        uploads,
        active=(),
        policy=roster.policy,
        params=roster.params,
        initial_model_hash=roster.initial_model_hash,
        now=rnd.deadline,
    )
    assert not verdict.close, "the server would ask for a decryption the policy forbids"
    return verdict.status.reason


def _keyholder_reason(roster: Roster, signed: list[Signed[UploadStatement]]) -> str:
    task = pb.DecryptionTask(
        pending=True,
        round=signed[0].statement.round,
        contributions=[s.statement.to_contribution(s.signature) for s in signed],
    )
    with pytest.raises(SecAggError) as info:
        check_task(roster, task)
    return info.value.reason


def _verifier_errors(
    directory: Path,
    roster: Roster,
    parties: dict[str, Identity],
    signed: list[Signed[UploadStatement]],
) -> list[str]:
    """Record a log of these uploads and their aggregate; the verifier's error lines."""
    layout = DeploymentLayout(directory)
    layout.audit_log.unlink(missing_ok=True)
    log, dep = AuditLog(layout.audit_log), roster.deployment_id
    roster_hash = hashlib.sha256(layout.roster.read_bytes()).digest()
    policy = exact_json(roster.policy.as_dict())  # no floats in audit entries
    log.record(RosterEntry(dep, roster_hash, roster.params.id, policy))
    key_id = hashlib.sha256(b"joint public key").digest()
    for kh in roster.keyholders:
        body = CeremonyStatement.of_body(
            dep, kind=pb.ENDORSEMENT, sender=kh.index, recipient=0, body=key_id
        )
        sig = Signed.create(body, parties[kh.name].signing_key()).signature
        log.record(CeremonyEntry("ENDORSEMENT", kh.index, 0, body.body_sha256, key_id, sig))
    log.record(PublicKeyEntry(key_id, roster.policy.keyholders, roster.policy.threshold))
    rnd = signed[0].statement.round
    log.record(RoundOpenEntry(rnd, roster.initial_model_hash))
    for s in signed:
        log.record(UploadEntry.of(s))
    inputs = tuple(
        AggregateInput(s.statement.client_id, s.statement.ciphertext_hash, s.statement.weight)
        for s in signed
    )
    total = sum(i.weight for i in inputs)
    seq, _ = log.record(AggregateEntry(rnd, bytes(32), bytes(32), total, inputs))
    report = verify_log(directory)
    return [e for e in report.errors if e.startswith(f"entry {seq} (aggregate): ")]


@pytest.mark.parametrize("rule", list(RULES))
def test_server_keyholder_and_verifier_refuse_with_the_same_reason(
    rule: str, roster: Roster, parties: dict[str, Identity], deployment: Path
) -> None:
    error, build = RULES[rule]
    uploads = build(roster)
    signed = _sign(uploads, parties)

    server = _server_reason(roster, uploads)
    keyholder = _keyholder_reason(roster, signed)
    verifier = _verifier_errors(deployment, roster, parties, signed)

    assert server == keyholder == error.reason, (server, keyholder, error.reason)
    assert any(f": {error.reason}: " in line for line in verifier), verifier


def test_an_acceptable_set_passes_all_three(
    roster: Roster, parties: dict[str, Identity], deployment: Path
) -> None:
    uploads = _uploads(roster, {"c1": 10, "c2": 10, "c3": 10})
    signed = _sign(uploads, parties)
    rnd = open_round(1, roster.initial_model_hash, policy=roster.policy, now=0.0)
    verdict = review_collecting(
        rnd,
        uploads,
        active=(),
        policy=roster.policy,
        params=roster.params,
        initial_model_hash=roster.initial_model_hash,
        now=rnd.deadline,
    )
    assert verdict.close
    task = pb.DecryptionTask(
        pending=True,
        round=1,
        contributions=[s.statement.to_contribution(s.signature) for s in signed],
    )
    assert check_task(roster, task) == uploads
    assert _verifier_errors(deployment, roster, parties, signed) == []


def test_a_weight_below_the_policy_minimum_gets_the_same_reason_from_all_three(
    tmp_path: Path,
) -> None:
    """A deployment with ``min_weight`` 5: an upload of weight 4 breaks the weight rule."""
    directory = tmp_path / "deployment"
    roster = init_deployment(directory, clients=4, keyholders=3, threshold=2, min_weight=5)
    names = ["c1", "c2", "c3", "kh1", "kh2", "kh3"]
    parties = {n: identity(directory, n) for n in names}
    uploads = _uploads(roster, {"c1": 10, "c2": 4, "c3": 10})
    signed = _sign(uploads, parties)

    server = _server_reason(roster, uploads)
    keyholder = _keyholder_reason(roster, signed)
    verifier = _verifier_errors(directory, roster, parties, signed)

    reason = WeightBudgetExceeded.reason
    assert server == keyholder == reason, (server, keyholder)
    assert any(f": {reason}: weight must lie in 5.." in line for line in verifier), verifier


def test_a_non_dp_upload_gets_the_same_reason_from_all_three_when_the_roster_requires_dp(
    tmp_path: Path,
) -> None:
    """``secagg init --require-dp``: c2 signs ``dp=False``; the same set passes when all
    three sign ``dp=True``."""
    directory = tmp_path / "deployment"
    roster = init_deployment(directory, clients=4, keyholders=3, threshold=2, require_dp=True)
    assert roster.policy.require_dp
    names = ["c1", "c2", "c3", "kh1", "kh2", "kh3"]
    parties = {n: identity(directory, n) for n in names}
    honest = [replace(u, dp=True) for u in _uploads(roster, {"c1": 10, "c2": 10, "c3": 10})]
    uploads = [honest[0], replace(honest[1], dp=False), honest[2]]
    signed = _sign(uploads, parties)

    server = _server_reason(roster, uploads)
    keyholder = _keyholder_reason(roster, signed)
    verifier = _verifier_errors(directory, roster, parties, signed)

    assert server == keyholder == DPRequired.reason, (server, keyholder)
    assert any(f": {DPRequired.reason}: " in line for line in verifier), verifier
    assert _verifier_errors(directory, roster, parties, _sign(honest, parties)) == []


def _no_key(round_number: int) -> JointPublicKey:
    """A stand-in for the round's key: the head above names the all-zero key id."""
    return cast(JointPublicKey, SimpleNamespace(id_bytes=bytes(32)))


def _server_precheck(
    tmp_path: Path,
    roster: Roster,
    parties: dict[str, Identity],
    earlier: Signed[UploadStatement],
    later: Signed[UploadStatement],
) -> str:
    """The reason of the server's upload precheck of ``later`` once ``earlier`` is in its
    store ("" if it raised nothing)."""
    tmp_path.mkdir(exist_ok=True)
    store = MemoryStore(deployment_id=roster.deployment_id)
    store.add_upload(Upload(earlier, 0.0))
    store.put_round(open_round(later.statement.round, bytes(32), policy=roster.policy, now=0.0))
    audit = AuditTrail(AuditLog(tmp_path / "audit.log"), roster, parties["server"].signing_key())
    ctx = Context(store, BlobStore(tmp_path / "blobs"), roster, audit, audit.signing_key)
    # a head of the model's shape (its chunk digests need not match any data: the
    # precheck decides before a chunk arrives), signed over by the client as the upload
    head = VectorHead.build(
        roster.params,
        bytes(32),
        roster.policy.model_length,
        [bytes(32)] * chunk_count(ciphertext_count(roster.params, roster.policy.model_length)),
    )
    statement = replace(later.statement, ciphertext_hash=head.digest)
    resigned = Signed.create(statement, parties[statement.client_id].signing_key())
    header = statement.to_header(resigned.signature, head=head.to_bytes())
    try:
        ServerUploads(ctx, threading.RLock()).precheck(statement.client_id, header, key_of=_no_key)
    except SecAggError as exc:
        return exc.reason
    return ""


def test_an_epsilon_decrease_gets_the_same_reason_from_the_server_and_the_verifier(
    tmp_path: Path, roster: Roster, parties: dict[str, Identity], deployment: Path
) -> None:
    """c1 reports ε 1.0 in round 1, then 0.5 in round 2 (its ledger was reset)."""
    first = _sign(_uploads(roster, {"c1": 10, "c2": 10}), parties)
    second = replace(
        _uploads(roster, {"c1": 10}, round_number=2)[0],
        nonce=bytes([7]) * 16,
        global_model_hash=bytes(32),
        epsilon=0.5,
    )
    [decreased] = _sign([second], parties)

    server = _server_precheck(tmp_path, roster, parties, first[0], decreased)
    assert server == EpsilonDecreased.reason

    _verifier_errors(deployment, roster, parties, first)  # writes round 1's log
    log = AuditLog(DeploymentLayout(deployment).audit_log)
    log.record(RoundOpenEntry(2, bytes(32)))
    seq, _ = log.record(UploadEntry.of(decreased))
    errors = [e for e in verify_log(deployment).errors if e.startswith(f"entry {seq} (upload): ")]
    assert any(f": {EpsilonDecreased.reason}: c1 reports epsilon 0.5" in e for e in errors), errors
    # roster, three key-holder endorsements, public key, round_open: c1's upload is entry 7
    assert any(e.endswith("(entry 7)") for e in errors), errors

    [same] = _sign([replace(second, epsilon=1.0)], parties)  # an equal ε is no decrease
    assert _server_precheck(tmp_path / "again", roster, parties, first[0], same) == ""
