"""``secagg audit verify DIR``: check a deployment's audit log offline.

Needs only the log, the roster and — when retained — the stored ciphertexts; it trusts
nothing the server says. It checks the hash chain and every checkpoint signature (the
server's, and the key holders' co-signatures of the heads they were shown), every
signature in every entry against the roster keys, that uploads are bound to their round
and to that round's global model, that aggregates list exactly the round's accepted
uploads and — with the ciphertexts at hand — recomputes them, that every release was
decrypted by at least t distinct key holders who signed partials over that very
aggregate under the logged policy, and that no client reported more epsilon than the
budget. Each problem names the entry (sequence number and type).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from secagg.aggregate import Aggregator, EncryptedAggregate
from secagg.protocol.audit_log import Entry, chain_heads, checkpoint_digest, read_entries
from secagg.ciphertext import EncryptedVector
from secagg.protocol.roster import Roster, load_roster
from secagg.errors import AuditChainBroken, SecAggError, SignatureInvalid
from secagg.protocol.model_blob import encode_model
from secagg.proto import service_pb2 as pb
from secagg.protocol.signing import (
    ceremony_digest_of_hash,
    partial_signature_digest,
    refusal_digest,
    release_digest,
    upload_digest,
    verify,
    withdrawal_digest,
)
from secagg.threshold import PartialDecryption, combine


@dataclass
class RoundReport:
    """What the log says about one round."""

    round: int
    uploads: int = 0
    rejected: int = 0
    contributors: int = 0
    total_weight: int = 0
    aggregate_recomputed: bool | None = None
    quorum: list[int] = field(default_factory=list)
    released_model: str = ""
    max_epsilon: float = 0.0


@dataclass
class Report:
    """The verification result."""

    entries: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rounds: dict[int, RoundReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "errors": self.errors,
            "warnings": self.warnings,
            "rounds": [asdict(r) for r in self.rounds.values()],
        }


def find_deployment(directory: Path) -> Path:
    """DIR itself, or DIR/deployment (a demo's output)."""
    for candidate in (directory, directory / "deployment"):
        if (candidate / "roster.toml").exists():
            return candidate
    raise SecAggError(f"{directory} holds no roster.toml (nor deployment/roster.toml)")


class _Verifier:
    def __init__(self, deployment: Path, roster: Roster, report: Report) -> None:
        self.dep, self.roster, self.report = deployment, roster, report
        self.blobs = deployment / "server" / "data" / "blobs"
        self.pk_id = ""
        self.round_model: dict[int, str] = {}
        self.uploads: dict[int, dict[str, dict[str, Any]]] = {}
        self.nonces: set[tuple[str, str]] = set()
        self.aggregates: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.partials: dict[int, dict[int, dict[str, Any]]] = {}
        self.endorsed: set[int] = set()
        self.released: dict[int, str] = {}

    def fail(self, e: Entry, message: str) -> None:
        self.report.errors.append(f"entry {e.seq} ({e.type}): {message}")

    def sig(self, e: Entry, key: bytes, signature: str, digest: bytes, who: str) -> bool:
        try:
            if bytes.fromhex(signature).hex() != signature:
                self.fail(e, f"signature by {who} is not canonical lower-case hex")
                return False
            verify(key, bytes.fromhex(signature), digest, who=who)
            return True
        except (SignatureInvalid, ValueError):
            self.fail(e, f"invalid signature by {who}")
            return False

    def rnd(self, r: int) -> RoundReport:
        return self.report.rounds.setdefault(r, RoundReport(r))

    # ------------------------------------------------------------- entry types
    def roster_entry(self, e: Entry, d: dict[str, Any]) -> None:
        digest = hashlib.sha256((self.dep / "roster.toml").read_bytes()).hexdigest()
        if e.seq != 1:
            self.fail(e, "the roster must be the first entry")
        if d.get("roster_sha256") != digest or d.get("deployment_id") != self.roster.deployment_id:
            self.fail(e, "logged roster does not match roster.toml")

    def ceremony(self, e: Entry, d: dict[str, Any]) -> None:
        kh = self.roster.keyholder(int(d["sender"]))
        kind = pb.CeremonyKind.Value(d["kind"])
        self.sig(
            e,
            kh.signing_public_key,
            d["signature"],
            ceremony_digest_of_hash(
                deployment_id=self.roster.deployment_id,
                kind=kind,
                sender=int(d["sender"]),
                recipient=int(d["recipient"]),
                body_sha256=bytes.fromhex(d["body_sha256"]),
            ),
            f"key holder {kh.index}",
        )
        if d["body"] and hashlib.sha256(bytes.fromhex(d["body"])).hexdigest() != d["body_sha256"]:
            self.fail(e, "body does not match its hash")
        if kind == pb.ENDORSEMENT:
            self.endorsed.add(int(d["sender"]))
            self.pk_endorsement = d["body"]

    def public_key(self, e: Entry, d: dict[str, Any]) -> None:
        self.pk_id = d["id"]
        if self.endorsed != {k.index for k in self.roster.keyholders}:
            self.fail(e, "the joint public key lacks endorsements from some key holders")
        if getattr(self, "pk_endorsement", None) != d["id"]:
            self.fail(e, "endorsements name another public key")

    def round_open(self, e: Entry, d: dict[str, Any]) -> None:
        r = int(d["round"])
        if r > 1 and self.released.get(r - 1) != d["global_model_hash"]:
            self.fail(e, f"round {r} starts from a model that round {r - 1} did not release")
        self.round_model[r] = d["global_model_hash"]
        self.rnd(r)

    def upload(self, e: Entry, d: dict[str, Any]) -> None:
        r, client = int(d["round"]), d["client"]
        try:
            key = self.roster.client(client).signing_public_key
        except SecAggError:
            self.fail(e, f"{client} is not in the roster")
            return
        self.sig(
            e,
            key,
            d["signature"],
            upload_digest(
                deployment_id=self.roster.deployment_id,
                round_number=r,
                client_id=client,
                nonce=bytes.fromhex(d["nonce"]),
                global_model_hash=bytes.fromhex(d["global_model_hash"]),
                ciphertext_hash=bytes.fromhex(d["ciphertext_hash"]),
                weight=int(d["weight"]),
                epsilon=float(d["epsilon"]),
            ),
            client,
        )
        if self.round_model.get(r) != d["global_model_hash"]:
            self.fail(e, f"upload of {client} is bound to another global model than round {r}'s")
        if client in self.uploads.setdefault(r, {}) or (client, d["nonce"]) in self.nonces:
            self.fail(e, f"second upload (or reused nonce) of {client} in round {r}")
        if float(d["epsilon"]) > self.roster.policy.epsilon_budget:
            self.fail(
                e,
                f"{client} reports epsilon {d['epsilon']} above the budget "
                f"{self.roster.policy.epsilon_budget}",
            )
        self.uploads[r][client] = d
        self.nonces.add((client, d["nonce"]))
        rr = self.rnd(r)
        rr.uploads += 1
        rr.max_epsilon = max(rr.max_epsilon, float(d["epsilon"]))

    def upload_rejected(self, e: Entry, d: dict[str, Any]) -> None:
        self.rnd(int(d["round"])).rejected += 1

    def aggregate(self, e: Entry, d: dict[str, Any]) -> None:
        r = int(d["round"])
        accepted = {
            c: (u["ciphertext_hash"], int(u["weight"])) for c, u in self.uploads.get(r, {}).items()
        }
        listed = {i["client"]: (i["ciphertext_hash"], int(i["weight"])) for i in d["inputs"]}
        if listed != accepted:
            self.fail(e, f"aggregate of round {r} does not list exactly the accepted uploads")
        total = sum(w for _, w in listed.values())
        if total != int(d["total_weight"]):
            self.fail(e, "total weight does not match the inputs")
        pol = self.roster.policy
        if len(listed) < pol.min_contributors:
            self.fail(e, f"{len(listed)} contributors; the policy requires {pol.min_contributors}")
        if listed and max(w for _, w in listed.values()) > pol.max_weight_share * total:
            self.fail(e, "a contributor exceeds the maximum weight share")
        rr = self.rnd(r)
        rr.contributors, rr.total_weight = len(listed), total
        self.aggregates[r] = d
        rr.aggregate_recomputed = self._recompute(e, d)

    def _recompute(self, e: Entry, d: dict[str, Any]) -> bool | None:
        paths = [self.blobs / i["ciphertext_hash"] for i in d["inputs"]]
        if not all(p.exists() for p in paths) or not self.pk_id:
            self.report.warnings.append(
                f"entry {e.seq} (aggregate): ciphertexts not retained; aggregate not recomputed"
            )
            return None
        try:
            agg: Aggregator | None = None
            for i, p in zip(d["inputs"], paths, strict=True):
                vec = EncryptedVector.from_bytes(p.read_bytes(), self.roster.params)
                if agg is None:
                    agg = Aggregator(
                        self.roster.params,
                        public_key_id=bytes.fromhex(self.pk_id),
                        length=vec.length,
                    )
                agg.add(vec, int(i["weight"]))
            assert agg is not None
            if agg.result().digest.hex() != d["aggregate_digest"]:
                self.fail(e, "recomputed aggregate differs from the logged digest")
                return False
            return True
        except SecAggError as exc:
            self.fail(e, f"cannot recompute the aggregate: {exc}")
            return False

    def decryption_request(self, e: Entry, d: dict[str, Any]) -> None:
        self.tasks[int(d["task_id"])] = d

    def partial(self, e: Entry, d: dict[str, Any], heads: list[bytes]) -> None:
        k, r = int(d["keyholder"]), int(d["round"])
        task = self.tasks.get(int(d["task_id"]))
        if (
            task is None
            or k not in task["quorum"]
            or task["aggregate_digest"] != d["aggregate_digest"]
        ):
            self.fail(e, f"partial of key holder {k} answers no logged decryption request")
        key = self.roster.keyholder(k).signing_public_key
        self.sig(
            e,
            key,
            d["signature"],
            partial_signature_digest(
                deployment_id=self.roster.deployment_id,
                round_number=r,
                keyholder=k,
                partial_digest=bytes.fromhex(d["partial_digest"]),
                aggregate_digest=bytes.fromhex(d["aggregate_digest"]),
            ),
            f"key holder {k}",
        )
        size = int(d["checkpoint_size"])
        if size >= e.seq or heads[size].hex() != d["checkpoint_head"]:
            self.fail(e, f"key holder {k} co-signed a head that entries 1..{size} do not produce")
        self.sig(
            e,
            key,
            d["checkpoint_signature"],
            checkpoint_digest(
                deployment_id=self.roster.deployment_id,
                size=size,
                head=bytes.fromhex(d["checkpoint_head"]),
            ),
            f"key holder {k} (checkpoint)",
        )
        self.partials.setdefault(int(d["task_id"]), {})[k] = d

    def refusal(self, e: Entry, d: dict[str, Any]) -> None:
        k = int(d["keyholder"])
        self.sig(
            e,
            self.roster.keyholder(k).signing_public_key,
            d["signature"],
            refusal_digest(
                deployment_id=self.roster.deployment_id,
                round_number=int(d["round"]),
                keyholder=k,
                reason=d["reason"],
            ),
            f"key holder {k}",
        )

    def release(self, e: Entry, d: dict[str, Any]) -> None:
        r = int(d["round"])
        self.sig(
            e,
            self.roster.server.signing_public_key,
            d["server_signature"],
            release_digest(
                deployment_id=self.roster.deployment_id,
                round_number=r,
                model_hash=bytes.fromhex(d["model_hash"]),
                aggregate_digest=bytes.fromhex(d["aggregate_digest"]),
                quorum=[int(q) for q in d["quorum"]],
                partial_digests=[bytes.fromhex(p) for p in d["partial_digests"]],
            ),
            "server",
        )
        agg = self.aggregates.get(r)
        if agg is None or agg["aggregate_digest"] != d["aggregate_digest"]:
            self.fail(e, f"release of round {r} is not of the round's logged aggregate")
        valid = {
            k
            for k, p in self.partials.get(int(d.get("task_id", -1)), {}).items()
            if p["aggregate_digest"] == d["aggregate_digest"]
            and p["partial_digest"] in d["partial_digests"]
            and k in d["quorum"]
        }
        t = self.roster.policy.threshold
        if len(valid) < t or len(set(d["quorum"])) != len(d["quorum"]):
            self.fail(
                e,
                f"release of round {r} has {len(valid)} valid distinct partial decryptions; "
                f"threshold {t}",
            )
        if agg is not None and len(valid) >= t:
            self._check_model(e, r, agg, d, sorted(valid))
        self.released[r] = d["model_hash"]
        rr = self.rnd(r)
        rr.quorum, rr.released_model = sorted(valid), d["model_hash"]

    def _check_model(
        self, e: Entry, r: int, agg: dict[str, Any], d: dict[str, Any], quorum: list[int]
    ) -> None:
        """Re-combine the logged partials over the logged aggregate; compare the model hash."""
        parts = self.partials[int(d["task_id"])]
        paths = [self.blobs / agg["aggregate_hash"]] + [
            self.blobs / parts[k]["partial_hash"] for k in quorum
        ]
        if not all(p.exists() for p in paths):
            self.report.warnings.append(
                f"entry {e.seq} (release): aggregate or partials not retained; model not recomputed"
            )
            return
        params = self.roster.params
        aggregate = EncryptedAggregate.from_bytes(paths[0].read_bytes(), params)
        partials = [PartialDecryption.from_bytes(p.read_bytes(), params) for p in paths[1:]]
        model = combine(aggregate, partials)
        if hashlib.sha256(encode_model(r + 1, model)).hexdigest() != d["model_hash"]:
            self.fail(e, f"released model of round {r} is not what its quorum decrypted")

    def checkpoint(self, e: Entry, d: dict[str, Any], heads: list[bytes]) -> None:
        size = int(d["size"])
        if size >= e.seq or heads[size].hex() != d["head"]:
            self.fail(e, f"chain head does not match entries 1..{size}: an entry was altered")
        self.sig(
            e,
            self.roster.server.signing_public_key,
            d["server_signature"],
            checkpoint_digest(
                deployment_id=self.roster.deployment_id, size=size, head=bytes.fromhex(d["head"])
            ),
            "server",
        )

    def withdrawal(self, e: Entry, d: dict[str, Any]) -> None:
        c = d["client"]
        self.sig(
            e,
            self.roster.client(c).signing_public_key,
            d["signature"],
            withdrawal_digest(
                deployment_id=self.roster.deployment_id,
                client_id=c,
                round_number=int(d["round"]),
                reason=d["reason"],
            ),
            c,
        )


def verify_log(directory: Path) -> Report:
    """Verify ``DIR``'s audit log; never raises for a bad log (the report lists problems)."""
    report = Report()
    dep = find_deployment(Path(directory))
    roster = load_roster(dep)
    path = dep / "server" / "data" / "audit.log"
    try:
        entries = list(read_entries(path))
    except AuditChainBroken as exc:
        report.errors.append(str(exc))
        return report
    except OSError as exc:
        report.errors.append(f"cannot read {path}: {exc.strerror}")
        return report
    report.entries = len(entries)
    heads = chain_heads(entries)
    v = _Verifier(dep, roster, report)
    simple = {
        "roster": v.roster_entry,
        "ceremony": v.ceremony,
        "public_key": v.public_key,
        "round_open": v.round_open,
        "upload": v.upload,
        "upload_rejected": v.upload_rejected,
        "aggregate": v.aggregate,
        "decryption_request": v.decryption_request,
        "refusal": v.refusal,
        "release": v.release,
        "withdrawal": v.withdrawal,
    }
    for e in entries:
        try:
            if e.type in simple:
                simple[e.type](e, e.data)
            elif e.type == "partial":
                v.partial(e, e.data, heads)
            elif e.type == "checkpoint":
                v.checkpoint(e, e.data, heads)
            else:
                v.fail(e, "unknown entry type")
        except (KeyError, ValueError, TypeError, OverflowError, SecAggError) as exc:
            v.fail(e, f"malformed entry ({type(exc).__name__}: {exc})")
    if entries and entries[-1].type not in ("checkpoint", "round_open"):
        report.warnings.append(
            f"entries after the last checkpoint (up to {len(entries)}) are not signed yet"
        )
    return report


def format_report(report: Report) -> str:
    """Human-readable summary per round."""
    lines = [f"{report.entries} entries"]
    for r in sorted(report.rounds.values(), key=lambda x: x.round):
        if not (r.uploads or r.released_model):
            continue
        recomputed = {True: "recomputed OK", False: "RECOMPUTE FAILED", None: "not recomputed"}[
            r.aggregate_recomputed
        ]
        lines.append(
            f"round {r.round}: {r.uploads} uploads ({r.rejected} rejected), {r.contributors} "
            f"contributors, total weight {r.total_weight}, aggregate {recomputed}, "
            f"key holders {r.quorum}, model {r.released_model[:16] or '-'}, "
            f"max epsilon {r.max_epsilon:.3f}"
        )
    lines += [f"warning: {w}" for w in report.warnings]
    lines += [f"FAIL: {err}" for err in report.errors]
    lines.append(
        "audit log verified" if report.ok else f"audit log INVALID: {len(report.errors)} problem(s)"
    )
    return "\n".join(lines)


def main(directory: Path, *, as_json: bool) -> int:
    """CLI body: print the report; 0 if valid, 1 if not."""
    report = verify_log(directory)
    print(json.dumps(report.to_json(), indent=2) if as_json else format_report(report))
    return 0 if report.ok else 1
