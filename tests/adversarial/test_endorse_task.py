"""ENDORSE tasks: a key holder vouches only for the decryption it combined itself (issue 10).

Clients accept a global model only with ``t`` key-holder endorsements
(:mod:`tests.adversarial.test_unendorsed_models`); here the REAL key holder is asked to
give one. Round 1 of the default deployment (3 key holders, threshold 2) is locked and
decrypted for real: key holders 1 and 2 are real agents (their locks and partials come
from the agents), key holder 3 is played by the test with its share and signing key —
honest, or corrupt: it adds ``+3.0`` to one coordinate of its partial (``Δ·δ`` on one
coefficient, in every data prime) and signs the result, a validly signed, well-shaped,
wrong partial. The server proposes a model hash; the key holder must refuse a "trap"
model that is not the decryption, and partials whose quorums disagree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from clients.connection import verify_release
from secagg.aggregate import EncryptedAggregate
from secagg.errors import (
    AggregateMismatch,
    EndorsementMissing,
    InvalidPartialDecryption,
    PartialsDisagree,
)
from secagg.proto import service_pb2 as pb
from secagg.protocol.certificates import check_endorsements
from secagg.protocol.model_blob import decode_model, encode_model
from secagg.protocol.quorums import flatten
from secagg.protocol.statements import PartialStatement, Signed
from secagg.threshold import PartialDecryption, combine, partial_decrypt

from ._expect import partial, reason
from ._server_double import aggregate_parts, partial_parts
from .conftest import LENGTH, Attack, Upload

QUORUMS = ((1, 2), (1, 3), (2, 3))
Mangle = Callable[[PartialDecryption], PartialDecryption]


def plus_three(aggregate: EncryptedAggregate) -> Mangle:
    """The corrupt key holder's change: ``+3.0`` on coordinate 0 of the decrypted mean."""
    params = aggregate.params
    primes = params.data_primes
    q = int(np.prod([int(p) for p in primes], dtype=object))
    scaled = 3 * aggregate.total_weight << params.fractional_bits  # 3.0, as a weighted sum
    shift = (q // params.plain_modulus) * scaled % q

    def mangle(part: PartialDecryption) -> PartialDecryption:
        residues = part.residues.copy()
        for j, p in enumerate(primes):
            residues[0, j, 0] = (int(residues[0, j, 0]) + shift) % int(p)
        return dataclasses.replace(part, residues=residues)

    return mangle


@dataclass
class Decrypted:
    """Round 1, locked and decrypted by every quorum; what an ENDORSE task can list."""

    uploads: tuple[Upload, ...]
    aggregate: EncryptedAggregate
    locks: list[pb.Lock]
    partials: dict[tuple[int, ...], list[tuple[PartialDecryption, bytes]]]

    def listed(self, *quorums: tuple[int, ...]) -> list[pb.QuorumPartials]:
        """The ENDORSE task's view of ``quorums`` (default: all): digests and signatures."""
        return [
            pb.QuorumPartials(
                quorum=q,
                partial_hashes=[p.digest for p, _ in self.partials[q]],
                partial_signatures=[s for _, s in self.partials[q]],
            )
            for q in quorums or QUORUMS
        ]

    def model(self, quorum: tuple[int, ...]) -> bytes:
        """The model blob (round 2's input) that ``quorum``'s partials decrypt to."""
        mean = combine(self.aggregate, [p for p, _ in self.partials[quorum]])
        return encode_model(2, mean)


def _decrypted(attack: Attack, mangle: Callable[[EncryptedAggregate], Mangle] | None) -> Decrypted:
    """Lock and decrypt round 1 with every quorum; key holder 3's partials via ``mangle``."""
    attack.start_keyholder(1)
    attack.start_keyholder(2)
    uploads = tuple(attack.upload(f"c{i}", attack.encrypt(i)) for i in (1, 2, 3))
    aggregate = attack.aggregate(*uploads)
    locks = [*attack.locked_by(1, 2, uploads=uploads), attack.lock(3, aggregate.digest)]
    change = mangle(aggregate) if mangle else lambda part: part
    partials: dict[tuple[int, ...], list[tuple[PartialDecryption, bytes]]] = {}
    for quorum in QUORUMS:
        for k in quorum:
            if k == 3:
                part = change(partial_decrypt(attack.keys.shares[2], aggregate, quorum=quorum))
                statement = PartialStatement(
                    attack.roster.deployment_id, 1, 3, part.digest, aggregate.digest
                )
                signature = Signed.create(statement, attack.signing_key(3)).signature
            else:
                task = attack.task(*uploads, quorum=quorum, locks=locks, to=k)
                sent = partial(attack, task)
                part = sent.decryption(attack.roster.params)
                signature = sent.header.signature
            attack.double.serve_chunked(part.digest, partial_parts(part))
            partials.setdefault(quorum, []).append((part, signature))
    return Decrypted(uploads, aggregate, locks, partials)


def _endorse(
    attack: Attack, round_1: Decrypted, keyholder: int, model_hash: bytes, *quorums: tuple[int, ...]
) -> pb.Endorsement | pb.Refusal:
    attack.endorse_task(
        *round_1.uploads,
        partials=round_1.listed(*quorums),
        model_hash=model_hash,
        locks=round_1.locks,
        to=keyholder,
    )
    return attack.double.wait_endorsement(keyholder, round_1.aggregate.digest)


def test_honest_partials_are_endorsed_and_the_release_accepted(attack: Attack) -> None:
    round_1 = _decrypted(attack, None)
    model = round_1.model((1, 2))
    assert all(round_1.model(q) == model for q in QUORUMS)
    model_hash = hashlib.sha256(model).digest()
    endorsements = []
    for k in (1, 2):
        answer = _endorse(attack, round_1, k, model_hash)
        assert isinstance(answer, pb.Endorsement), answer
        assert tuple(answer.checked_quorums) == (1, 2, 1, 3, 2, 3)
        endorsements.append(answer)
    digest = round_1.aggregate.digest
    assert check_endorsements(attack.roster, 1, digest, model_hash, endorsements) == {1, 2}
    verify_release(attack.release(digest, model_hash, *endorsements), attack.roster)
    _, mean = decode_model(model, length=LENGTH)
    expected = np.mean([attack.update(i) for i in (1, 2, 3)], axis=0)
    assert np.abs(mean - expected).max() < 1e-6


def test_a_trap_model_is_not_endorsed(attack: Attack) -> None:
    """The server proposes a crafted model instead of the decryption."""
    round_1 = _decrypted(attack, None)
    trap = hashlib.sha256(encode_model(2, np.full(LENGTH, 7.0))).digest()
    answer = _endorse(attack, round_1, 1, trap)
    assert "not the decryption" in reason(answer, AggregateMismatch)
    assert not attack.double.answers.endorsements


@pytest.mark.parametrize("proposed", [(1, 2), (1, 3)], ids=["honest model", "shifted model"])
def test_a_shifted_partial_is_not_endorsed(attack: Attack, proposed: tuple[int, ...]) -> None:
    """Key holder 3's partial is shifted: quorums with it disagree with quorum (1, 2)."""
    round_1 = _decrypted(attack, plus_three)
    _, honest = decode_model(round_1.model((1, 2)), length=LENGTH)
    _, shifted = decode_model(round_1.model((1, 3)), length=LENGTH)
    assert abs(shifted[0] - honest[0] - 3.0) < 1e-6
    assert np.array_equal(shifted[1:], honest[1:])
    model_hash = hashlib.sha256(round_1.model(proposed)).digest()
    for k in (1, 2):
        answer = _endorse(attack, round_1, k, model_hash)
        assert "different models" in reason(answer, PartialsDisagree)
    assert not attack.double.answers.endorsements


@pytest.mark.parametrize(
    "quorums", [((1, 3),), ((1, 3), (2, 3))], ids=["one quorum", "the corrupt one's quorums"]
)
def test_quorums_that_all_hold_the_corrupt_keyholder_are_not_endorsed(
    attack: Attack, quorums: tuple[tuple[int, ...], ...]
) -> None:
    """The server lists only quorums with key holder 3 in them: they agree, on +3.0.

    With key holder 3's own endorsement that is ``t`` endorsements of a crafted model,
    from one corrupt key holder (the threat model allows ``t - 1``).
    """
    round_1 = _decrypted(attack, plus_three)
    shifted = hashlib.sha256(round_1.model((1, 3))).digest()
    digest = round_1.aggregate.digest
    answer = _endorse(attack, round_1, 1, shifted, *quorums)
    assert "CROSS_CHECK_INCOMPLETE" in str(getattr(answer, "reason", "")), answer
    corrupt = attack.endorsement(3, digest, shifted, checked_quorums=flatten(quorums))
    endorsements = [a for a in (answer, corrupt) if isinstance(a, pb.Endorsement)]
    with pytest.raises(EndorsementMissing):  # what a client checks before it trains
        verify_release(attack.release(digest, shifted, *endorsements), attack.roster)


def _own_files(attack: Attack, keyholder: int) -> list[Path]:
    agent = next(a for a, _ in attack.agents if a.index == keyholder)
    return sorted(agent.folds.directory.iterdir())


def test_an_endorser_without_its_aggregate_streams_the_certified_one(attack: Attack) -> None:
    """Its own aggregate file gone, key holder 1 takes the server's, checked against the
    certified digest: a different aggregate under that digest is refused, the true one
    endorsed; the round's files go once the endorsement is sent."""
    round_1 = _decrypted(attack, None)
    digest = round_1.aggregate.digest
    assert _own_files(attack, 1)  # the aggregate it recomputed, kept until it endorses
    for path in _own_files(attack, 1):
        path.unlink()
    other = attack.aggregate(*round_1.uploads[:2])
    attack.double.serve_chunked(digest, aggregate_parts(other))
    model_hash = hashlib.sha256(round_1.model((1, 2))).digest()
    answer = _endorse(attack, round_1, 1, model_hash)
    assert "not the certified one" in reason(answer, AggregateMismatch)
    attack.double.serve_chunked(digest, aggregate_parts(round_1.aggregate))
    answer = _endorse(attack, round_1, 1, model_hash)
    assert isinstance(answer, pb.Endorsement), answer
    assert attack.double.downloads[digest] == 2
    deadline = time.monotonic() + 10  # removed right after the endorsement is sent
    while _own_files(attack, 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _own_files(attack, 1) == []


def test_a_partial_that_is_not_the_signed_one_is_not_endorsed(attack: Attack) -> None:
    """Under key holder 3's signed partial digest the server serves another partial of
    key holder 3 (fresh noise: another digest)."""
    round_1 = _decrypted(attack, None)
    signed, _ = round_1.partials[(1, 3)][1]
    again = partial_decrypt(attack.keys.shares[2], round_1.aggregate, quorum=(1, 3))
    attack.double.serve_chunked(signed.digest, partial_parts(again))
    model_hash = hashlib.sha256(round_1.model((1, 2))).digest()
    answer = _endorse(attack, round_1, 2, model_hash)
    assert "not the signed one" in reason(answer, InvalidPartialDecryption)
