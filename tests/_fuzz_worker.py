"""Fuzz worker: feeds malformed inputs to one of secagg's ``from_bytes`` parsers.

Run by ``tests/test_fuzz_ciphertext.py`` in a subprocess, so that an interpreter crash
(a segfault in a C extension) fails the test instead of killing pytest::

    python tests/_fuzz_worker.py {vector|aggregate|partial} SEED

Prints one JSON line: the number of inputs checked, a count of outcomes by exception
type, and the first unexpected outcomes (any exception other than the parser's
documented one, or an input that was accepted). Exit status 0 means the run completed;
3 means the sanity checks of the valid inputs failed (the fuzz would prove nothing).

Cases: truncations at every length around the header and tail and at random lengths
inside the payload; every single bit flip outside the payload and random ones inside
it; appended protobuf fields that override one field; random garbage and random
well-formed messages; inputs over the size cap; and hand-built messages whose digest is
consistent with their fields so that the only defect is the one named by the case
(other parameters, other level, residues >= q, transparent ciphertext, wrong format
version, inconsistent lengths, bad weights, bad quorums). The generic cases and the
checking loop are in ``tests/_fuzz_cases.py``; this module holds the valid objects, the
hand-built defects of each target and the command line.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Iterator

import numpy as np
from _fuzz_cases import Case, Fuzz, generic_cases, override_cases
from _support import (
    aggregate_message,
    partial_message_of,
    vector_message,
    vector_message_of,
    with_residue,
)

import secagg
from secagg import constants as C
from secagg.proto import core_pb2

# --- targets ----------------------------------------------------------------------------


class World:
    """Valid objects for the fuzz: a 2-of-3 key set, small vectors and their aggregate."""

    def __init__(self) -> None:
        self.params = secagg.Parameters.default()
        self.keys = secagg.dealerless_keygen(n=3, t=2, params=self.params)
        self.other_params = secagg.Parameters.calculate(max_total_weight=2**10)
        other_keys = secagg.dealerless_keygen(n=3, t=2, params=self.other_params)
        x = np.linspace(-7.5, 7.5, 100)
        self.ct = secagg.encrypt(self.keys.public_key, x)
        self.ct2 = secagg.encrypt(self.keys.public_key, np.linspace(-1, 1, 8193))  # 2 cts
        self.ct_other_params = secagg.encrypt(other_keys.public_key, x)
        self.agg = secagg.aggregate([self.ct], weights=[3])
        self.part = secagg.partial_decrypt(self.keys.shares[0], self.agg, quorum=(1, 2))
        self.n = self.params.poly_modulus_degree
        self.special = self.params.coeff_modulus[-1]

    def sanity(self) -> None:
        """Valid inputs parse, and the hand-built replicas are byte-identical."""
        p = self.params
        assert secagg.EncryptedVector.from_bytes(self.ct.to_bytes(), p).digest == self.ct.digest
        assert vector_message_of(self.ct).SerializeToString() == self.ct.to_bytes()
        assert vector_message_of(self.ct2).SerializeToString() == self.ct2.to_bytes()
        agg_msg = self.aggregate_of(vector_message_of(self.agg.vector))
        assert agg_msg.SerializeToString() == self.agg.to_bytes()
        assert (
            secagg.EncryptedAggregate.from_bytes(self.agg.to_bytes(), p).digest == self.agg.digest
        )
        assert partial_message_of(self.part).SerializeToString() == self.part.to_bytes()
        back = secagg.PartialDecryption.from_bytes(self.part.to_bytes(), p)
        assert back.digest == self.part.digest
        blob = self.ct.to_bytes()
        secagg.EncryptedVector.from_bytes(blob, p, max_bytes=len(blob))  # cap is inclusive

    def aggregate_of(self, vector: object, **overrides: object) -> object:
        fields = {
            "total_weight": self.agg.total_weight,
            "weight_scale": self.agg.weight_scale,
            "contributors": self.agg.contributors,
        }
        fields.update(overrides)
        return aggregate_message(vector, **fields)

    # Hand-built defective vectors: each message is consistent except for one defect.
    def bad_vectors(self) -> Iterator[tuple[str, object]]:
        ct, p, n = self.ct, self.params, self.n
        r = ct.residues
        pk = ct.public_key_id
        yield "other-params", core_pb2.EncryptedVector.FromString(self.ct_other_params.to_bytes())
        yield "other-params-id", vector_message_of(ct, params_id=self.other_params.id_bytes)
        yield "params-id-empty", vector_message_of(ct, params_id=b"")
        yield "params-id-long", vector_message_of(ct, params_id=p.id_bytes + b"\0")
        yield "level-one-prime-fewer", vector_message_of(ct, residues=r[:, :, :1].copy())
        extra = np.stack([r[:, :, 0] % np.uint64(self.special)], axis=2)
        key_level = np.concatenate([r, extra], axis=2)
        yield "level-key-level", vector_message_of(ct, residues=key_level)
        yield "level-one-polynomial", vector_message_of(ct, residues=r[:, :1].copy())
        yield (
            "level-three-polynomials",
            vector_message_of(ct, residues=np.concatenate([r, r[:, :1]], axis=1)),
        )
        for q_index, poly, coeff, delta in (
            (0, 0, 0, 0),
            (1, 1, n - 1, 0),
            (0, 1, 17, 1),
            (1, 0, 5, 12345),
        ):
            q = p.data_primes[q_index]
            bad = with_residue(r, (0, poly, q_index, coeff), q + delta)
            yield f"residue-q{q_index}+{delta}-poly{poly}", vector_message_of(ct, residues=bad)
        bad = with_residue(r, (0, 0, 1, 3), 2**60 - 1)
        yield "residue-2^60-1", vector_message_of(ct, residues=bad)
        transparent = r.copy()
        transparent[:, 1] = 0
        yield "transparent", vector_message_of(ct, residues=transparent)
        t2 = self.ct2.residues.copy()
        t2[1, 1] = 0
        yield "transparent-second", vector_message_of(self.ct2, residues=t2)
        for version in (0, 2, 2**32 - 1):
            yield f"format-version-{version}", vector_message_of(ct, format_version=version)
        yield "length-0", vector_message_of(ct, length=0)
        yield "length-0-empty", vector_message(p, pk, 0, r[:0])
        yield "length-too-large", vector_message_of(ct, length=C.MAX_VECTOR_LENGTH + 1)
        yield "length-needs-2-cts", vector_message_of(ct, length=n + 1)
        yield "count-2-for-1", vector_message_of(ct, count=2)
        yield "count-0", vector_message_of(ct, count=0)
        yield "payload-for-2-cts", vector_message_of(ct, residues=self.ct2.residues, count=1)
        yield "pk-id-empty", vector_message_of(ct, public_key_id=b"")
        yield "pk-id-short", vector_message_of(ct, public_key_id=pk[:31])
        yield "pk-id-long", vector_message_of(ct, public_key_id=pk + b"\0")
        for name, digest in (("empty", b""), ("zero", bytes(32)), ("short", ct.digest[:31])):
            msg = vector_message_of(ct)
            msg.digest = digest
            yield f"digest-{name}", msg
        msg = vector_message_of(ct)
        msg.digest = self.ct2.digest
        yield "digest-of-other", msg

    def vector_cases(self, rng: random.Random) -> Iterator[Case]:
        blob = self.ct.to_bytes()
        yield from generic_cases(blob, self.ct._payload, core_pb2.EncryptedVector, rng, 300)
        yield from override_cases(core_pb2.EncryptedVector.FromString(blob), rng)
        for name, msg in self.bad_vectors():
            yield name, msg.SerializeToString(), {}
        yield "parsed-with-other-params", blob, {"params": self.other_params}
        # A 2-ciphertext vector cut exactly after its first ciphertext.
        blob2 = self.ct2.to_bytes()
        start = blob2.find(self.ct2._payload)
        yield "truncation-ct-boundary", blob2[: start + len(self.ct2._payload) // 2], {}

    def bad_aggregates(self) -> Iterator[tuple[str, object]]:
        good = vector_message_of(self.agg.vector)
        limit = self.params.max_total_weight
        for name, overrides in (
            ("total-weight-0", {"total_weight": 0}),
            ("total-weight-over-budget", {"total_weight": limit + 1}),
            ("total-weight-huge", {"total_weight": 2**64 - 1}),
            ("weight-scale-0", {"weight_scale": 0.0}),
            ("weight-scale-negative-zero", {"weight_scale": -0.0}),
            ("weight-scale-negative", {"weight_scale": -1.0}),
            ("weight-scale-nan", {"weight_scale": math.nan}),
            ("weight-scale-inf", {"weight_scale": math.inf}),
            ("weight-scale-minus-inf", {"weight_scale": -math.inf}),
            ("contributors-0", {"contributors": 0}),
            ("format-version-0", {"format_version": 0}),
            ("format-version-2", {"format_version": 2}),
        ):
            yield name, self.aggregate_of(good, **overrides)
        yield (
            "no-vector",
            core_pb2.EncryptedAggregate(
                format_version=C.FORMAT_VERSION,
                total_weight=self.agg.total_weight,
                weight_scale=self.agg.weight_scale,
                contributors=self.agg.contributors,
                digest=secagg._internal.envelope.digest_of(
                    C.DOMAIN_AGGREGATE,
                    b"",
                    self.agg.total_weight,
                    self.agg.weight_scale,
                    self.agg.contributors,
                ),
            ),
        )
        for name, vec in self.bad_vectors():
            yield f"inner-{name}", self.aggregate_of(vec)
        msg = self.aggregate_of(good)
        msg.digest = self.aggregate_of(good, total_weight=4).digest
        yield "digest-of-other-weight", msg

    def aggregate_cases(self, rng: random.Random) -> Iterator[Case]:
        blob = self.agg.to_bytes()
        payload = self.agg.vector._payload
        yield from generic_cases(blob, payload, core_pb2.EncryptedAggregate, rng, 100)
        yield from override_cases(core_pb2.EncryptedAggregate.FromString(blob), rng)
        for name, msg in self.bad_aggregates():
            yield name, msg.SerializeToString(), {}
        yield "parsed-with-other-params", blob, {"params": self.other_params}

    def bad_partials(self) -> Iterator[tuple[str, object]]:
        part = self.part
        r = part.residues
        primes = self.params.data_primes
        crafted = [
            ("quorum-unsorted", {"quorum": (2, 1)}),
            ("quorum-duplicate", {"quorum": (1, 1, 2)}),
            ("quorum-member-0", {"quorum": (0, 1, 2)}),
            ("quorum-member-over-max", {"quorum": (1, 2, self.params.max_keyholders + 1)}),
            ("index-not-in-quorum", {"keyholder_index": 3}),
            ("index-0", {"keyholder_index": 0}),
            ("threshold-0", {"threshold": 0}),
            ("count-0", {"residues": r[:0], "count": 0}),
            ("count-2-for-1", {"count": 2}),
            ("count-huge", {"count": 2**32 - 1}),
            ("level-one-prime-fewer", {"residues": r[:, :1].copy()}),
            ("residue-q0", {"residues": with_residue(r, (0, 0, 0), primes[0])}),
            ("residue-q1", {"residues": with_residue(r, (0, 1, 9), primes[1])}),
            ("residue-2^60-1", {"residues": with_residue(r, (0, 1, 0), 2**60 - 1)}),
            ("aggregate-digest-empty", {"aggregate_digest": b""}),
            ("aggregate-digest-short", {"aggregate_digest": part.aggregate_digest[:31]}),
            ("params-id-other", {"params_id": self.other_params.id_bytes}),
            ("params-id-empty", {"params_id": b""}),
            ("format-version-0", {"format_version": 0}),
            ("format-version-2", {"format_version": 2}),
            # Known bug (test_partial_with_threshold_above_quorum_is_invalid): these two
            # raise QuorumNotMet instead of InvalidPartialDecryption.
            ("threshold-above-quorum", {"threshold": 3}),
            ("quorum-empty", {"quorum": ()}),
        ]
        for name, overrides in crafted:
            yield name, partial_message_of(part, **overrides)
        msg = partial_message_of(part)
        msg.digest = bytes(32)
        yield "digest-zero", msg

    def partial_cases(self, rng: random.Random) -> Iterator[Case]:
        blob = self.part.to_bytes()
        yield from generic_cases(blob, self.part._payload, core_pb2.PartialDecryption, rng, 100)
        yield from override_cases(core_pb2.PartialDecryption.FromString(blob), rng)
        for name, msg in self.bad_partials():
            yield name, msg.SerializeToString(), {}
        yield "parsed-with-other-params", blob, {"params": self.other_params}


def main() -> int:
    target, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    world = World()
    try:
        world.sanity()
    except AssertionError as exc:
        print(json.dumps({"sanity": f"failed: {exc!r}"}))
        return 3
    params = world.params
    parsers = {
        "vector": (secagg.EncryptedVector.from_bytes, secagg.InvalidCiphertext, world.vector_cases),
        "aggregate": (
            secagg.EncryptedAggregate.from_bytes,
            secagg.InvalidCiphertext,
            world.aggregate_cases,
        ),
        "partial": (
            secagg.PartialDecryption.from_bytes,
            secagg.InvalidPartialDecryption,
            world.partial_cases,
        ),
    }
    parse, expected, cases = parsers[target]

    def call(blob: object, params: secagg.Parameters = params, **kwargs: object) -> object:
        return parse(blob, params, **kwargs)

    fuzz = Fuzz(call, expected)
    for kind, blob, kwargs in cases(rng):
        fuzz.check(kind, blob, **kwargs)
    print(json.dumps(fuzz.report(seed, target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
