"""secagg: threshold homomorphic secure aggregation for federated learning.

The safe top-level API::

    params = secagg.Parameters.default()
    keys = secagg.dealerless_keygen(n=5, t=3, params=params)
    ct = secagg.encrypt(keys.public_key, vector)
    agg = secagg.aggregate([ct1, ct2], weights=[10, 20])
    parts = [secagg.partial_decrypt(keys.shares[i - 1], agg, quorum=[1, 3, 5]) for i in (1, 3, 5)]
    mean = secagg.combine(agg, parts)

This top level is the homomorphic-encryption core: local operations only, no transport.
``secagg._internal`` holds its internals (ring arithmetic, SEAL glue, sampling, Shamir
sharing; not part of the API), ``secagg.protocol`` the vocabulary every party and the
auditor share (signed statements, policy, roster, deployment layout, audit log),
``secagg.rpc`` the gRPC glue of the server and the agents. The library imports neither
``server`` nor ``clients``; ``secagg/DESIGN.md`` describes the layers and the design
notes the code relies on.
"""

from __future__ import annotations

from secagg.aggregate import Aggregator, EncryptedAggregate, aggregate
from secagg.ciphertext import EncryptedVector, encrypt
from secagg.dkg import DkgParticipant, combine_public_key, common_seed, dealerless_keygen
from secagg.errors import (
    AuditChainBroken,
    EncodingError,
    InvalidCiphertext,
    InvalidKeyMaterial,
    InvalidPartialDecryption,
    ParameterError,
    PolicyViolation,
    QuorumNotMet,
    ReplayDetected,
    SecAggError,
    WeightBudgetExceeded,
)
from secagg.keys import JointPublicKey, KeySet, KeyShare
from secagg.params import Parameters
from secagg.threshold import PartialDecryption, combine, partial_decrypt

__all__ = [
    "Aggregator",
    "AuditChainBroken",
    "DkgParticipant",
    "EncodingError",
    "EncryptedAggregate",
    "EncryptedVector",
    "InvalidCiphertext",
    "InvalidKeyMaterial",
    "InvalidPartialDecryption",
    "JointPublicKey",
    "KeySet",
    "KeyShare",
    "ParameterError",
    "Parameters",
    "PartialDecryption",
    "PolicyViolation",
    "QuorumNotMet",
    "ReplayDetected",
    "SecAggError",
    "WeightBudgetExceeded",
    "aggregate",
    "combine",
    "combine_public_key",
    "common_seed",
    "dealerless_keygen",
    "encrypt",
    "partial_decrypt",
]
__version__ = "0.1.0"
