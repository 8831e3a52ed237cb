"""Recomputation from retained blobs: the aggregate from the uploads, the model from the partials.

The server keeps ciphertexts, aggregates and partial decryptions in its content-addressed
blob store (:attr:`~secagg.protocol.layout.DeploymentLayout.blobs`, under
``serve --data``). When they are retained, the verifier redoes the homomorphic sum and the
threshold combination itself instead of trusting the logged digests; when they are not,
it says so with a warning. Under a retention policy (``policy.retain_rounds > 0``) the
server deletes old rounds' ciphertexts: the verifier then marks those rounds as pruned
(:attr:`~.report.RoundReport.ciphertexts_pruned`; the report names them in one warning)
and still checks every signature of them, like every other entry.

Security
--------
Ciphertexts, aggregates and partials are chunk files named by their digests
(:mod:`secagg.protocol.stored_chunks`); their heads are parsed by the library's staged
parsers and compared with the logged digests, and every chunk is checked against its head,
exactly like network input: a blob store is as untrusted as the log. The aggregate is
recomputed with a file-backed accumulator in a temporary directory and the model
combined chunk by chunk, so memory stays O(chunk) plus the model at any size. The verifier
cannot tell ciphertexts pruned under the policy from ciphertexts a server withholds: under
a retention policy, every missing ciphertext is reported as pruned (a warning, never a
pass of the recomputation).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from secagg.accumulator import ChunkedAggregator
from secagg.errors import SecAggError
from secagg.protocol.audit_entries import AggregateEntry, PartialEntry
from secagg.protocol.model_blob import encode_model
from secagg.protocol.stored_chunks import (
    check_quorum,
    decrypt_stored,
    fold_stored,
    open_aggregate,
    open_partial,
)

from .context import At, Verification


def _retained(v: Verification, hashes: Sequence[bytes]) -> list[Path] | None:
    paths = [v.layout.blobs / h.hex() for h in hashes]
    return paths if all(p.is_file() for p in paths) else None


def _missing(v: Verification, at: At, round_number: int, message: str) -> None:
    """Warn that blobs are missing; under a retention policy, mark the round as pruned."""
    keep = v.roster.policy.retain_rounds
    if keep > 0 and v.layout.blobs.is_dir():
        v.round(round_number).ciphertexts_pruned = True
        message += f" (round {round_number} pruned: policy.retain_rounds = {keep})"
    v.warn(at, message)


def recompute_aggregate(v: Verification, at: At, entry: AggregateEntry) -> bool | None:
    """Re-add the logged inputs; True if the digest matches, None if not retained."""
    paths = _retained(v, [i.ciphertext_hash for i in entry.inputs])
    if paths is None:
        _missing(v, at, entry.round, "ciphertexts not retained; aggregate not recomputed")
        return None
    if v.seen.public_key_id is None or not entry.inputs:
        v.warn(at, "ciphertexts not retained; aggregate not recomputed")
        return None
    params = v.roster.params
    try:
        with tempfile.TemporaryDirectory(prefix="secagg-verify-") as scratch:
            aggregator = ChunkedAggregator(
                params,
                public_key_id=v.seen.public_key_id,
                length=v.roster.policy.model_length,
                path=Path(scratch) / "accumulator",
            )
            try:
                for item, path in zip(entry.inputs, paths, strict=True):
                    fold_stored(aggregator, path, params, item.ciphertext_hash, item.weight)
                digest = aggregator.write(Path(scratch) / "aggregate").digest
            finally:
                aggregator.close()
    except SecAggError as exc:
        v.fail(at, f"cannot recompute the aggregate: {exc}")
        return False
    if digest != entry.aggregate_digest:
        v.fail(at, "recomputed aggregate differs from the logged digest")
        return False
    return True


def recombined_hash(
    v: Verification,
    at: At,
    round_number: int,
    aggregate: AggregateEntry,
    partials: Mapping[int, PartialEntry],
    *,
    warn_missing: bool = True,
) -> bytes | None:
    """SHA-256 of the model blob a quorum's logged partials decrypt; None if not retained.

    ``partials``: the valid partial of every quorum member (key holder index -> entry).
    ``warn_missing``: warn when the blobs are not retained (once per entry is enough).
    """
    quorum = sorted(partials)
    paths = _retained(v, [aggregate.aggregate_hash, *(partials[k].partial_hash for k in quorum)])
    if paths is None:
        if warn_missing:
            _missing(
                v, at, round_number, "aggregate or partials not retained; model not recomputed"
            )
        return None
    params = v.roster.params
    try:
        with ExitStack() as stack:
            file, head = open_aggregate(paths[0], params, aggregate.aggregate_digest)
            stack.callback(file.close)
            members = []
            for k, path in zip(quorum, paths[1:], strict=True):
                part_file, part_head = open_partial(path, params, partials[k].partial_digest)
                stack.callback(part_file.close)
                members.append((part_file, part_head))
            check_quorum(head, [h for _, h in members], members[0][1].quorum)
            model = decrypt_stored((file, head), members)
    except SecAggError as exc:
        v.fail(at, f"cannot recompute the model of round {round_number}: {exc}")
        return None
    return hashlib.sha256(encode_model(round_number + 1, model)).digest()
