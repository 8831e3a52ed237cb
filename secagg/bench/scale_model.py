"""``secagg bench --scale``: the released model, and the model it should be.

The synthetic trainer (``clients/trainer.py``, which the library cannot import) makes a
client's round-``r`` update ``0.5 * global + default_rng([seed, r]).uniform(-1, 1, size)``.
:func:`fedavg_slices` recomputes the weighted mean of those updates in slices, so that
the benchmark process never holds more than one slice per client next to the released
model (a 100M-parameter model is 800 MB per float64 vector). ``tests/test_bench_scale.py``
checks the recomputation against ``clients.trainer.SyntheticTrainer`` itself, so the two
cannot drift apart.

:func:`fetch_released_model` downloads the release the way a client does: ``GetRelease``,
the server's signature and ``t`` endorsements checked with the library's statement and
certificate checks, then ``DownloadBlob`` streamed to a file and checked against the
endorsed hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from secagg.encoding import F64
from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.protocol.certificates import verify_release
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import decode_model
from secagg.protocol.roster import load_roster
from secagg.rpc.transport import identity

#: Values per slice of the recomputation (32 MiB of float64 per client).
SLICE = 1 << 22


def synthetic_update(global_model: F64, *, seed: int, round_number: int) -> F64:
    """The synthetic trainer's update of one client (the formula of ``SyntheticTrainer``).

    Notes
    -----
    Benchmark data from numpy's generator: never a secret.
    """
    rng = np.random.default_rng([seed, round_number])
    update: F64 = 0.5 * global_model + rng.uniform(-1.0, 1.0, global_model.size)
    return update


def fedavg_slices(
    global_model: F64,
    clients: Sequence[tuple[int, int]],
    round_number: int,
    *,
    slice_size: int = SLICE,
) -> Iterator[tuple[int, F64]]:
    """The weighted mean of the synthetic clients' updates, slice by slice.

    Parameters
    ----------
    global_model
        The round's input model.
    clients
        ``(seed, weight)`` of every contributing client.
    round_number
        The round the clients trained for.
    slice_size
        Values per yielded slice.

    Yields
    ------
    tuple[int, F64]
        The slice's first index and the expected values there. Drawing a generator's
        uniform values slice by slice yields the same stream as one call for the whole
        vector, so the slices concatenate to the mean of :func:`synthetic_update`.
    """
    if not clients or slice_size < 1:
        raise ValueError("need at least one client and a positive slice size")
    generators = [np.random.default_rng([seed, round_number]) for seed, _ in clients]
    total = float(sum(weight for _, weight in clients))
    for start in range(0, global_model.size, slice_size):
        half = 0.5 * global_model[start : start + slice_size]
        acc = np.zeros(half.size)
        for rng, (_, weight) in zip(generators, clients, strict=True):
            acc += weight * (half + rng.uniform(-1.0, 1.0, half.size))
        yield start, acc / total


def max_error_from_fedavg(
    released: F64, global_model: F64, clients: Sequence[tuple[int, int]], round_number: int
) -> float:
    """Largest absolute difference between ``released`` and the recomputed weighted mean."""
    if released.shape != global_model.shape:
        raise ValueError(f"released model has shape {released.shape}, not {global_model.shape}")
    worst = 0.0
    for start, expected in fedavg_slices(global_model, clients, round_number):
        got = released[start : start + expected.size]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def initial_model(deployment: Path) -> F64:
    """Round 1's model as ``secagg init`` wrote it (its hash is in the roster)."""
    layout = DeploymentLayout(deployment)
    length = load_roster(deployment).policy.model_length
    _, vector = decode_model(layout.initial_model.read_bytes(), length=length)
    return vector


def fetch_released_model(deployment: Path, round_number: int, into: Path) -> F64:
    """Download round ``round_number``'s released model as the operator, verified.

    Parameters
    ----------
    deployment
        The ``secagg init`` directory (the operator's ``admin`` identity is used).
    round_number
        The released round.
    into
        File the model blob is streamed to (it is left there).

    Returns
    -------
    F64
        The released model (the input of round ``round_number + 1``).

    Raises
    ------
    SignatureInvalid, EndorsementMissing
        The release is not signed by the roster's server or lacks ``t`` endorsements.
    ValueError
        The downloaded blob does not have the endorsed hash or is another round's model.

    Security
    --------
    The checks every party applies (:func:`secagg.protocol.certificates.verify_release`:
    the server's signature, then ``t`` valid endorsements), then the bytes against the
    endorsed hash before parsing them.
    """
    roster = load_roster(deployment)
    channel = identity(deployment, "admin").channel()
    try:
        stub = pb_grpc.AggregationStub(channel)  # type: ignore[no-untyped-call]
        release = stub.GetRelease(pb.ReleaseQuery(round=round_number), timeout=60)
        statement = verify_release(release, roster)
        digest = hashlib.sha256()
        with into.open("wb") as fh:
            request = pb.BlobRequest(sha256=statement.model_hash)
            for part in stub.DownloadBlob(request, timeout=roster.policy.transfer_timeout_seconds):
                digest.update(part.data)
                fh.write(part.data)
    finally:
        channel.close()
    if digest.digest() != statement.model_hash:
        raise ValueError("the downloaded model does not have the released hash")
    model_round, vector = decode_model(into.read_bytes(), length=roster.policy.model_length)
    if model_round != round_number + 1:
        raise ValueError(f"the release of round {round_number} holds round {model_round}'s model")
    return vector
