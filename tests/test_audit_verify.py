"""``secagg audit verify`` in-process, on a synthetic log signed with a deployment's real keys.

No process runs: :func:`write_log` records one round with the typed entries
(:mod:`secagg.protocol.audit_entries`) and statements signed by the parties' own keys
(``Signed.create``), exactly as the server would, including the key holders' locks and
endorsements (:class:`Cert`; their rules are tested in ``test_audit_certificates.py``).
The blobs are not retained, so the verifier warns that it could not recompute. The real
run and the tampering tests are in ``tests/integration/test_audit*.py``.

Shown here: the policy rules come from :mod:`secagg.protocol.policy` (reason codes in
the report), ``--data`` points the verifier at a server's state directory, and a
malformed entry is reported, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from secagg.cli import main as secagg_main
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import (
    AggregateEntry,
    AggregateInput,
    CeremonyEntry,
    CheckpointEntry,
    DecryptionRequestEntry,
    EndorsementEntry,
    LockEntry,
    PartialEntry,
    PublicKeyEntry,
    RefusalEntry,
    ReleaseEntry,
    RosterEntry,
    RoundOpenEntry,
    UploadEntry,
    UploadRejectedEntry,
    WithdrawalEntry,
)
from secagg.protocol.audit_log import AuditLog, canonical
from secagg.protocol.audit_verify import Report, main, verify_log
from secagg.protocol.deployment import init_deployment
from secagg.protocol.exact_float import exact_json
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import load_roster
from secagg.protocol.statements import (
    CeremonyStatement,
    CheckpointStatement,
    EndorsementStatement,
    LockStatement,
    PartialStatement,
    RefusalStatement,
    ReleaseStatement,
    Signed,
    UploadStatement,
    WithdrawalStatement,
)
from secagg.rpc.transport import identity

WEIGHTS = {"c1": 10, "c2": 15, "c3": 17}
NOT_RETAINED = [
    "entry {agg} (aggregate): ciphertexts not retained; aggregate not recomputed",
    "entry {rel} (release): aggregate or partials not retained; model not recomputed",
]
NO_WITNESS = "no witness heads: a truncated or re-signed log cannot be told from the original"
REJECTED = "SIZE_LIMIT_EXCEEDED: too large"


def _h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@dataclass(frozen=True)
class Cert:
    """A lock or an endorsement for :func:`write_log` to record.

    By key holder ``keyholder`` on round ``round``'s aggregate ``_h(aggregate)`` (and, for
    an endorsement, model ``_h(model)`` checked over ``checked``), signed with the key of
    ``signer`` (default: the key holder's own). ``late``: a lock logged after the partials,
    an endorsement after the release.
    """

    keyholder: int
    aggregate: str = "aggregate"
    model: str = "model 2"
    checked: tuple[int, ...] = (1, 2)
    signer: str | None = None
    round: int = 1
    late: bool = False


LOCKS = (Cert(1), Cert(2), Cert(3))  # lock_size(3, 2) = 3
ENDORSEMENTS = (Cert(1), Cert(2))  # t = 2


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("audit") / "deployment"
    init_deployment(directory, clients=4, keyholders=3, threshold=2, max_weight_share=0.5)
    return directory


@pytest.fixture
def dep(deployment: Path, tmp_path: Path) -> Path:
    """A private copy of the deployment (its server data directory still empty)."""
    return Path(shutil.copytree(deployment, tmp_path / "deployment"))


def write_log(
    directory: Path,
    *,
    data: Path | None = None,
    weights: dict[str, int] = WEIGHTS,
    epsilon: float = 0.5,
    locks: Sequence[Cert] = LOCKS,
    endorsements: Sequence[Cert] = ENDORSEMENTS,
    refusal_signer: str = "kh3",
) -> dict[str, int]:
    """A valid one-round log (every entry type but ``disagreement``).

    Returns the seq of the first entry of each type, and of the lock/endorse refusal
    (task 0) as ``"refusal 0"``.
    """
    roster = load_roster(directory)
    dep_id = roster.deployment_id
    log = AuditLog(DeploymentLayout(directory, data).audit_log)
    seqs: dict[str, int] = {}

    def key(name: str) -> Any:
        return identity(directory, name).signing_key()

    def record(entry: Any) -> tuple[int, bytes]:
        seq, head = log.record(entry)
        seqs.setdefault(entry.TYPE, seq)
        return seq, head

    def certify(certs: Sequence[Cert], *, late: bool, endorse: bool) -> None:
        for c in (c for c in certs if c.late == late):
            signer = key(c.signer or f"kh{c.keyholder}")
            if endorse:
                e = EndorsementStatement(
                    dep_id, c.round, c.keyholder, _h(c.aggregate), _h(c.model), c.checked
                )
                record(EndorsementEntry.of(Signed.create(e, signer)))
            else:
                lock = LockStatement(dep_id, c.round, c.keyholder, _h(c.aggregate))
                record(LockEntry.of(Signed.create(lock, signer)))

    roster_hash = hashlib.sha256((directory / "roster.toml").read_bytes()).digest()
    policy = exact_json(roster.policy.as_dict())
    record(RosterEntry(dep_id, roster_hash, roster.params.id, policy))
    pk_id = _h("joint public key")
    for kh in roster.keyholders:
        endorsement = CeremonyStatement.of_body(
            dep_id, kind=pb.ENDORSEMENT, sender=kh.index, recipient=0, body=pk_id
        )
        sig = Signed.create(endorsement, key(kh.name)).signature
        record(CeremonyEntry("ENDORSEMENT", kh.index, 0, endorsement.body_sha256, pk_id, sig))
    record(PublicKeyEntry(pk_id, len(roster.keyholders), roster.policy.threshold))
    model = roster.initial_model_hash
    record(RoundOpenEntry(1, model))
    uploads = []
    for n, (client, weight) in enumerate(weights.items()):
        statement = UploadStatement(
            dep_id, 1, client, bytes([n]) * 16, model, _h(client), weight, epsilon
        )
        uploads.append(statement)
        record(UploadEntry.of(Signed.create(statement, key(client))))
    too_large = UploadStatement(dep_id, 1, "c4", bytes(16), model, _h("c4"), 10, epsilon)
    record(UploadRejectedEntry.of(Signed.create(too_large, key("c4")), reason=REJECTED))
    agg_digest, agg_hash = _h("aggregate"), _h("aggregate blob")
    inputs = tuple(AggregateInput(u.client_id, u.ciphertext_hash, u.weight) for u in uploads)
    record(AggregateEntry(1, agg_hash, agg_digest, sum(weights.values()), inputs))
    certify(locks, late=False, endorse=False)
    size, head = record(
        DecryptionRequestEntry(1, 1, (1, 2, 3), agg_hash, agg_digest, tuple(weights), False)
    )
    digests = []
    for k in (1, 2):
        partial = Signed.create(
            PartialStatement(dep_id, 1, k, _h(f"p{k}"), agg_digest), key(f"kh{k}")
        )
        cosigned = Signed.create(CheckpointStatement(dep_id, size, head), key(f"kh{k}"))
        p = partial.statement
        record(
            PartialEntry(1, 1, k, agg_digest, p.partial_digest, _h(f"blob{k}"), partial.signature,
                         size, head, cosigned.signature)
        )  # fmt: skip
        digests.append(p.partial_digest)
    certify(locks, late=True, endorse=False)
    refusal = Signed.create(RefusalStatement(dep_id, 1, 3, "late"), key("kh3"))
    record(RefusalEntry(1, 1, 3, "late", refusal.signature))
    certify(endorsements, late=False, endorse=True)
    reason = "MODEL_MISMATCH: not endorsed"  # kh3 refuses to endorse: a task-0 refusal
    refusal = Signed.create(RefusalStatement(dep_id, 1, 3, reason), key(refusal_signer))
    seqs["refusal 0"], _ = record(RefusalEntry(1, 0, 3, reason, refusal.signature))
    withdrawal = Signed.create(WithdrawalStatement(dep_id, "c4", 2, "done"), key("c4"))
    record(WithdrawalEntry("c4", 2, "done", withdrawal.signature))
    release = ReleaseStatement(dep_id, 1, _h("model 2"), agg_digest, (1, 2), tuple(digests))
    record(ReleaseEntry.of(Signed.create(release, key("server")), task_id=1))
    certify(endorsements, late=True, endorse=True)
    size, head = log.size, log.head
    checkpoint = Signed.create(CheckpointStatement(dep_id, size, head), key("server"))
    record(CheckpointEntry(size, head, checkpoint.signature))
    return seqs


def edit(directory: Path, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite entry ``seq`` (canonically; the chain after it no longer matches)."""
    path = DeploymentLayout(directory).audit_log
    lines = path.read_bytes().splitlines()
    entry = json.loads(lines[seq - 1])
    change(entry)
    lines[seq - 1] = canonical(entry)
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def not_retained(seqs: dict[str, int]) -> list[str]:
    """The warnings of a valid log without blobs and without witnesses."""
    return [w.format(agg=seqs["aggregate"], rel=seqs["release"]) for w in NOT_RETAINED] + [
        NO_WITNESS
    ]


# ----------------------------------------------------------------- a valid log


def test_a_valid_log_verifies(dep: Path) -> None:
    seqs = write_log(dep)
    report = verify_log(dep)
    assert report.ok, report.errors
    assert report.warnings == not_retained(seqs)
    assert report.entries == seqs["checkpoint"]
    r = report.rounds[1]
    assert (r.uploads, r.rejected, r.contributors, r.total_weight) == (3, 1, 3, 42)
    assert (r.quorum, r.released_model, r.max_epsilon) == ([1, 2], _h("model 2").hex(), 0.5)
    assert r.aggregate_recomputed is None


# ----------------------------------------------------------------- --data


def test_data_points_at_the_servers_state_directory(
    dep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "state"
    write_log(dep, data=elsewhere)
    assert (elsewhere / "audit.log").is_file()
    default = DeploymentLayout(dep).audit_log
    assert not default.exists()

    no_log = (
        f"no audit log at {default} (if the server ran with `serve --data PATH`, pass --data PATH)"
    )
    assert verify_log(dep).errors == [no_log]
    assert verify_log(dep, data=elsewhere).ok

    assert main(dep, as_json=True, data=elsewhere) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    # the command line: `secagg audit verify DIR --data PATH`
    assert secagg_main(["audit", "verify", str(dep), "--data", str(elsewhere)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "audit log verified"
    assert secagg_main(["audit", "verify", str(dep)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == f"FAIL: {no_log}"
    assert out[-1] == "audit log INVALID: 1 problem(s)"


# ----------------------------------------------------------------- the shared policy


def _errors(report: Report, seqs: dict[str, int], type_: str) -> list[str]:
    prefix = f"entry {seqs[type_]} ({type_}): "
    return [e.removeprefix(prefix) for e in report.errors if e.startswith(prefix)]


def test_weight_share_is_the_policy_modules_rule(dep: Path) -> None:
    seqs = write_log(dep, weights={"c1": 100, "c2": 10, "c3": 10})
    report = verify_log(dep)
    assert report.errors == [
        f"entry {seqs['aggregate']} (aggregate): WEIGHT_SHARE_EXCEEDED: a client holds "
        "100/120 of the weight; cap 0.5"
    ]


def test_too_few_contributors_is_the_policy_modules_rule(dep: Path) -> None:
    seqs = write_log(dep, weights={"c1": 10})
    report = verify_log(dep)
    assert _errors(report, seqs, "aggregate") == [
        "TOO_FEW_CONTRIBUTORS: 1 contributor(s); the policy requires at least 2"
    ]
    assert len(report.errors) == 1


def test_epsilon_over_budget_is_refused_per_upload_and_for_the_set(dep: Path) -> None:
    seqs = write_log(dep, epsilon=3.5)
    report = verify_log(dep)
    reason = "EPSILON_OVER_BUDGET: reported epsilon 3.5 exceeds the deployment's budget 3"
    uploads = range(seqs["upload"], seqs["upload"] + len(WEIGHTS))
    assert report.errors == [
        *(f"entry {seq} (upload): {reason}" for seq in uploads),
        f"entry {seqs['aggregate']} (aggregate): {reason}",
    ]
    assert report.rounds[1].max_epsilon == 3.5


# ----------------------------------------------------------------- malformed entries


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(entry: dict[str, Any]) -> None:
        if value is KeyError:
            del entry["data"][field]
        else:
            entry["data"][field] = value

    return change


MALFORMED = {
    "missing field": ("upload", _set("nonce", KeyError), "missing fields ['nonce']"),
    "extra field": ("upload", _set("note", 1), "unexpected fields ['note']"),
    "string for int": ("upload", _set("weight", "10"), "upload.weight must be an integer"),
    "bool for int": ("partial", _set("keyholder", True), "partial.keyholder must be an integer"),
    "upper-case hex": ("aggregate", _set("aggregate_digest", "AB" * 32), "lower-case hex"),
    "list item": ("aggregate", _set("inputs", [{"client": "c1"}]), "aggregate.inputs[0]"),
    "short nonce": ("upload", _set("nonce", "00" * 3), "nonce must be 16 bytes"),
    "ceremony kind": ("ceremony", _set("kind", "NO_SUCH_KIND"), "NO_SUCH_KIND"),
    "float as a number": ("upload", _set("epsilon", 10**400), "upload.epsilon must be a string"),
    "inexact float text": ("upload", _set("epsilon", "0x1p-1"), "canonical float.hex() text"),
    "lock bool for int": ("lock", _set("keyholder", True), "lock.keyholder must be an integer"),
    "endorsement quorums": ("endorsement", _set("checked_quorums", "1,2"), "checked_quorums"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_entry_is_reported_not_crashed(dep: Path, case: str) -> None:
    type_, change, detail = MALFORMED[case]
    seqs = write_log(dep)
    edit(dep, seqs[type_], change)
    report = verify_log(dep)
    first = report.errors[0]
    assert first.startswith(f"entry {seqs[type_]} ({type_}): malformed entry ("), report.errors
    assert detail in first, first


def test_an_unknown_entry_type_is_named(dep: Path) -> None:
    seqs = write_log(dep)
    edit(dep, seqs["upload_rejected"], lambda e: e.update(type="surprise"))
    assert (
        verify_log(dep).errors[0]
        == f"entry {seqs['upload_rejected']} (surprise): unknown entry type"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zz" * 64, "invalid signature by c1"),
        ("ab" * 63 + "a", "invalid signature by c1"),
        ("AB" * 64, "signature by c1 is not canonical lower-case hex"),
        (12, None),
    ],
)
def test_an_unreadable_signature_is_reported_as_such(
    dep: Path, text: object, message: str | None
) -> None:
    seqs = write_log(dep)
    edit(dep, seqs["upload"], _set("signature", text))
    report = verify_log(dep)
    prefix = f"entry {seqs['upload']} (upload): "
    if message is None:  # not even a string: malformed
        assert report.errors[0].startswith(prefix + "malformed entry (ValueError: upload.signature")
    else:
        assert report.errors[0] == prefix + message
        # the rest of the entry was still read: the upload counts
        assert report.rounds[1].uploads == len(WEIGHTS)


def test_a_weight_the_digest_cannot_encode_is_an_invalid_signature(dep: Path) -> None:
    seqs = write_log(dep)
    edit(dep, seqs["upload"], _set("weight", -8))
    report = verify_log(dep)
    assert report.errors[:2] == [
        f"entry {seqs['upload']} (upload): invalid signature by c1",
        f"entry {seqs['upload']} (upload): WEIGHT_BUDGET_EXCEEDED: weight must lie in "
        f"1..{load_roster(dep).params.max_total_weight}",
    ]
