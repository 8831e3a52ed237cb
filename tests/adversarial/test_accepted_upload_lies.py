"""A server that lies about a round's accepted uploads while key holders fold them (issue 13).

While a round collects, the REAL key holder folds the uploads ``GetAcceptedUploads``
lists into its accumulator, so that little is left to do at close. The list comes from
the server, which is not trusted: it may list an upload the round's task will not
(extra), leave one out (missing), list a contribution whose client signature is forged,
serve under a signed hash a head of another ciphertext, or a chunk that does not match
its head. None of it may change what the key holder locks or decrypts: the task's
contributor set alone counts (an extra fold is rebuilt, a missing one folded at the
task, a bad one skipped), and the key holder decrypts only the aggregate it recomputed
itself, never the server's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

import secagg
from secagg.errors import AggregateMismatch, InvalidCiphertext, InvalidKeyMaterial, SecAggError
from secagg.proto import service_pb2 as pb
from secagg.threshold import combine, partial_decrypt

from ._expect import lock_refused, locked, partial, refused
from ._server_double import vector_parts
from .conftest import Attack, Upload


def _wait_until(done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


def _uploads(attack: Attack, *seeds: int) -> list[Upload]:
    return [attack.upload(f"c{s}", attack.encrypt(s)) for s in seeds]


def _list(attack: Attack, contributions: list[pb.Contribution]) -> None:
    """The server lists ``contributions`` as round 1's accepted uploads."""
    key = attack.keys.public_key.id_bytes
    attack.double.list_accepted(1, contributions, public_key_id=key)


def _folding_done(attack: Attack, *digests: bytes) -> None:
    """Wait until the key holder has fetched the list and streamed each of ``digests``."""
    double = attack.double
    _wait_until(lambda: all(double.downloads[d] >= 1 for d in digests), "the listed uploads folded")
    time.sleep(0.3)  # let the last fold finish


def _locks_and_decrypts(attack: Attack, uploads: list[Upload]) -> None:
    """Key holder 1 locks round 1 to the honest sum of ``uploads`` and decrypts it right:
    its partial with key holder 2's gives the weighted mean of the updates."""
    lock = locked(attack, 1, attack.lock_task(*uploads, to=1))
    aggregate = attack.aggregate(*uploads)
    assert lock.aggregate_digest == aggregate.digest
    sent = partial(attack, attack.task(*uploads, quorum=(1, 2), to=1))
    params = attack.roster.params
    mine = sent.decryption(params)
    other = partial_decrypt(attack.keys.shares[1], aggregate, quorum=(1, 2))
    mean = combine(aggregate, [mine, other])
    seeds = [int(u.contribution.client_id.removeprefix("c")) for u in uploads]  # c<seed>
    expected = np.mean([attack.update(seed) for seed in seeds], axis=0)
    assert np.abs(mean - expected).max() < 1e-6
    assert attack.double.downloads[aggregate.digest] == 0  # never the server's aggregate


def test_uploads_folded_during_collection_are_not_fetched_again(attack: Attack) -> None:
    attack.start_keyholder(1)
    uploads = _uploads(attack, 1, 2, 3)
    _list(attack, [u.contribution for u in uploads])
    _folding_done(attack, *(u.vector.digest for u in uploads))
    _locks_and_decrypts(attack, uploads)
    assert all(attack.double.downloads[u.vector.digest] == 1 for u in uploads)


def test_an_extra_listed_upload_is_not_summed(attack: Attack) -> None:
    attack.start_keyholder(1)
    uploads = _uploads(attack, 1, 2, 3)
    extra = attack.upload("c4", attack.encrypt(4))
    _list(attack, [u.contribution for u in (*uploads, extra)])
    _folding_done(attack, extra.vector.digest, *(u.vector.digest for u in uploads))
    _locks_and_decrypts(attack, uploads)


def test_a_missing_upload_is_folded_at_the_task(attack: Attack) -> None:
    attack.start_keyholder(1)
    uploads = _uploads(attack, 1, 2, 3)
    _list(attack, [u.contribution for u in uploads[:2]])
    _folding_done(attack, *(u.vector.digest for u in uploads[:2]))
    assert attack.double.downloads[uploads[2].vector.digest] == 0
    _locks_and_decrypts(attack, uploads)


def test_a_forged_contribution_is_not_even_fetched(attack: Attack) -> None:
    attack.start_keyholder(1)
    uploads = _uploads(attack, 1, 2, 3)
    stolen = attack.upload("c4", attack.encrypt(4))
    forged = pb.Contribution()
    forged.CopyFrom(stolen.contribution)
    forged.weight += 1  # the client did not sign this weight
    _list(attack, [forged, *(u.contribution for u in uploads)])
    _folding_done(attack, *(u.vector.digest for u in uploads))
    assert attack.double.downloads[stolen.vector.digest] == 0
    _locks_and_decrypts(attack, uploads)


def _swapped_head(attack: Attack, victim: Upload) -> None:
    """Under the victim's signed hash, the server serves another ciphertext."""
    attack.double.serve_chunked(victim.vector.digest, vector_parts(attack.encrypt(99)))


def _bad_chunk(attack: Attack, victim: Upload) -> None:
    """Under the victim's signed hash, its head with another ciphertext's chunk."""
    head, *_ = vector_parts(victim.vector)
    _, *chunks = vector_parts(attack.encrypt(99))
    attack.double.serve_chunked(victim.vector.digest, [head, *chunks])


def _truncated(attack: Attack, victim: Upload) -> None:
    """The victim's head and no chunk."""
    attack.double.serve_chunked(victim.vector.digest, vector_parts(victim.vector)[:1])


@pytest.mark.parametrize(
    ("lie", "error"),
    [
        (_swapped_head, AggregateMismatch),
        (_bad_chunk, InvalidCiphertext),
        (_truncated, InvalidCiphertext),
    ],
    ids=["head of another ciphertext", "chunk not matching the head", "truncated"],
)
def test_a_lying_download_never_changes_the_sum(
    attack: Attack, lie: Callable[[Attack, Upload], None], error: type[SecAggError]
) -> None:
    """The lie during collection is skipped (the fold starts over); the same lie at the
    task is refused; served honestly, the round locks to the honest sum."""
    attack.start_keyholder(1)
    uploads = _uploads(attack, 1, 2, 3)
    lie(attack, uploads[1])
    _list(attack, [u.contribution for u in uploads])
    _folding_done(attack, *(u.vector.digest for u in uploads))
    lock_refused(attack, 1, attack.lock_task(*uploads, to=1), error)
    attack.double.serve_vectors(uploads[1].vector)
    _locks_and_decrypts(attack, uploads)


def test_an_upload_under_another_key_is_refused(attack: Attack) -> None:
    """A colluding client encrypts under a key the server made: mixed keys are refused."""
    attack.start_keyholder(1)
    rogue = secagg.dealerless_keygen(n=3, t=2, params=attack.roster.params).public_key
    uploads = _uploads(attack, 1, 2)
    mixed = attack.upload("c3", secagg.encrypt(rogue, attack.update(3)))
    task = attack._task([*uploads, mixed], attack.aggregate(*uploads), 1, kind=pb.TASK_LOCK)
    attack.double.give(task, to=1)
    assert "not under the key" in lock_refused(attack, 1, task, InvalidKeyMaterial)


def test_an_upload_the_server_does_not_serve_is_refused(attack: Attack) -> None:
    attack.start_keyholder(1)
    uploads = _uploads(attack, 1, 2)
    attack.double.chunked.pop(uploads[0].vector.digest)
    task = attack.task(*uploads)
    assert "does not serve" in refused(attack, task, AggregateMismatch)
