"""The one exception hierarchy of secagg.

Every error the library raises on purpose is a :class:`SecAggError`. Checks raise;
they never return ``False``. Catch the precise child where the caller can act on it.

Each class has a machine-readable ``reason`` (upper-case, stable): it crosses gRPC as the
``ErrorInfo.reason`` of a rich status, lands in refusals and audit entries, and lets the
server, the key holders and the verifier be compared rule by rule.
"""

from __future__ import annotations

from typing import ClassVar


class SecAggError(Exception):
    """Base class of every error raised by secagg on purpose."""

    reason: ClassVar[str] = "SECAGG_ERROR"


class ParameterError(SecAggError, ValueError):
    """Encryption parameters are invalid, insecure, or cannot meet a requested target."""

    reason: ClassVar[str] = "PARAMETER_ERROR"


class EncodingError(SecAggError, ValueError):
    """A plaintext vector cannot be encoded (wrong shape, not finite, out of range)."""

    reason: ClassVar[str] = "ENCODING_ERROR"


class InvalidCiphertext(SecAggError, ValueError):
    """Serialized or in-memory ciphertext data failed validation."""

    reason: ClassVar[str] = "INVALID_CIPHERTEXT"


class InvalidKeyMaterial(SecAggError, ValueError):
    """A public key, key share or key-generation message failed validation."""

    reason: ClassVar[str] = "INVALID_KEY_MATERIAL"


class InvalidPartialDecryption(SecAggError, ValueError):
    """A partial decryption is malformed or belongs to another aggregate or quorum."""

    reason: ClassVar[str] = "INVALID_PARTIAL_DECRYPTION"


class QuorumNotMet(SecAggError):
    """Fewer than the threshold number of distinct, valid key holders took part."""

    reason: ClassVar[str] = "QUORUM_NOT_MET"


class SignatureInvalid(SecAggError):
    """A signature does not verify under the signer's roster key."""

    reason: ClassVar[str] = "SIGNATURE_INVALID"


class ConfigError(SecAggError, ValueError):
    """A deployment or configuration file is missing, unreadable or invalid."""

    reason: ClassVar[str] = "CONFIG_ERROR"


class PolicyViolation(SecAggError):
    """A protocol rule (minimum contributors, weight cap, ...) refused an operation."""

    reason: ClassVar[str] = "POLICY_VIOLATION"


class PartialsDisagree(PolicyViolation):
    """Quorums of key holders decrypted one aggregate to different models: nothing released."""

    reason: ClassVar[str] = "PARTIALS_DISAGREE"


class WeightBudgetExceeded(PolicyViolation, ValueError):
    """Aggregation weights are negative, all zero, or exceed the parameter budget.

    A policy rule too (:mod:`secagg.protocol.policy` raises it for a weight outside
    ``1..max_total_weight``), so every enforcer that catches :class:`PolicyViolation`
    catches it.
    """

    reason: ClassVar[str] = "WEIGHT_BUDGET_EXCEEDED"


class PermissionDenied(PolicyViolation):
    """The authenticated party may not perform this operation."""

    reason: ClassVar[str] = "PERMISSION_DENIED"


class SizeLimitExceeded(PolicyViolation):
    """An input exceeds a configured size cap."""

    reason: ClassVar[str] = "SIZE_LIMIT_EXCEEDED"


class DuplicateUpload(PolicyViolation):
    """The client already has an accepted upload in this round."""

    reason: ClassVar[str] = "DUPLICATE_UPLOAD"


class ReplayDetected(PolicyViolation):
    """A message was seen before (same round, client and nonce)."""

    reason: ClassVar[str] = "REPLAY_DETECTED"


class ReplayedCiphertext(ReplayDetected):
    """A key holder already decrypted over this ciphertext, as part of another aggregate.

    Raised by the key holder (its own durable record, not a stateless policy rule) when
    a task lists a ciphertext it decrypted in an earlier round, or in another aggregate
    of this round: decrypting it again would let the server difference two releases.
    """

    reason: ClassVar[str] = "REPLAYED_CIPHERTEXT"


class PrivacyBudgetExhausted(SecAggError):
    """Another round of training would exceed the client's differential-privacy budget."""

    reason: ClassVar[str] = "PRIVACY_BUDGET_EXHAUSTED"


class AuditChainBroken(SecAggError):
    """The audit log does not verify."""

    reason: ClassVar[str] = "AUDIT_CHAIN_BROKEN"


class AuditWriteFailed(SecAggError):
    """An audit entry could not be written durably; the operation must be refused."""

    reason: ClassVar[str] = "AUDIT_WRITE_FAILED"


# --- Policy rules (secagg.protocol.policy): one class per rule --------------------------


class TooFewContributors(PolicyViolation):
    """Fewer distinct contributors than the policy's minimum."""

    reason: ClassVar[str] = "TOO_FEW_CONTRIBUTORS"


class DuplicateContributor(PolicyViolation):
    """The same client is listed twice in one contributor set."""

    reason: ClassVar[str] = "DUPLICATE_CONTRIBUTOR"


class DuplicateCiphertext(PolicyViolation):
    """The same ciphertext is listed twice in one contributor set.

    A colluding client that signs the victim's ciphertext as its own upload would
    otherwise count as a second contributor, so that an aggregate of "two clients" is
    the victim's update alone.
    """

    reason: ClassVar[str] = "DUPLICATE_CIPHERTEXT"


class WeightShareExceeded(PolicyViolation):
    """One contributor holds more than ``max_weight_share`` of the total weight."""

    reason: ClassVar[str] = "WEIGHT_SHARE_EXCEEDED"


class MixedGlobalModels(PolicyViolation):
    """Contributors trained from different global models."""

    reason: ClassVar[str] = "MIXED_GLOBAL_MODELS"


class UnexpectedGlobalModel(PolicyViolation):
    """Round 1's contributors trained from another model than the roster's initial model."""

    reason: ClassVar[str] = "UNEXPECTED_GLOBAL_MODEL"


class EpsilonOverBudget(PolicyViolation):
    """A client reports a privacy loss outside the deployment's budget."""

    reason: ClassVar[str] = "EPSILON_OVER_BUDGET"


class RoundOutOfRange(PolicyViolation):
    """A round number outside ``1..policy.rounds``."""

    reason: ClassVar[str] = "ROUND_OUT_OF_RANGE"


class WrongRound(PolicyViolation):
    """A statement names another round than the one it is used in, or a closed round."""

    reason: ClassVar[str] = "WRONG_ROUND"


class UnknownParty(PolicyViolation):
    """A statement names a party that is not in the roster."""

    reason: ClassVar[str] = "UNKNOWN_PARTY"


class MalformedStatement(PolicyViolation):
    """A signed statement's fields have the wrong size or form."""

    reason: ClassVar[str] = "MALFORMED_STATEMENT"


class AlreadyDecrypted(PolicyViolation):
    """The round was already decrypted (another aggregate, or a release exists)."""

    reason: ClassVar[str] = "ALREADY_DECRYPTED"


class AggregateMismatch(PolicyViolation):
    """An aggregate is not the weighted sum of the uploads it claims to be."""

    reason: ClassVar[str] = "AGGREGATE_MISMATCH"


class DecryptionBudgetExhausted(PolicyViolation):
    """A key share decrypted as many coefficients as its flooding noise is sized for.

    Every partial decryption reveals a little about the key share (statistical distance
    ``2^-kappa`` per coefficient); the share's lifetime budget bounds the sum, so past it
    the key holder refuses (see :attr:`secagg.params.Parameters.decryption_budget`).
    """

    reason: ClassVar[str] = "DECRYPTION_BUDGET_EXHAUSTED"


class CrossCheckIncomplete(PolicyViolation):
    """The quorums offered for endorsement do not leave every ``t - 1`` key holders out of one.

    Without that, every combined quorum may contain a corrupt key holder whose shifted
    partial then goes unnoticed: a key holder endorses only a fully cross-checked model.
    """

    reason: ClassVar[str] = "CROSS_CHECK_INCOMPLETE"


class LockMissing(PolicyViolation):
    """A decryption task lacks a lock certificate: too few key holders locked its set.

    Two sets of ``ceil((n + t) / 2)`` key holders share at least ``t``, so at least one
    honest key holder, which locks one aggregate per round: without the certificate a
    server could have two aggregates of a round decrypted by disjoint quorums.
    """

    reason: ClassVar[str] = "LOCK_MISSING"


class EndorsementMissing(PolicyViolation):
    """A released model lacks ``t`` valid key-holder endorsements (or they name another model)."""

    reason: ClassVar[str] = "ENDORSEMENT_MISSING"


class SecretMemoryUnavailable(SecAggError, RuntimeError):
    """Secret material would have to cross to SEAL through a named file (no memfd here).

    SEAL objects holding key material or plaintexts cross only through anonymous memory
    files (Linux ``memfd_create``); secagg refuses rather than write them to disk.
    """

    reason: ClassVar[str] = "SECRET_MEMORY_UNAVAILABLE"


# --- Witnessed audit log (secagg.protocol.merkle, clients.keyholder.witness) ------------


class MerkleProofInvalid(AuditChainBroken):
    """An RFC 6962 inclusion or consistency proof does not verify."""

    reason: ClassVar[str] = "MERKLE_PROOF_INVALID"


class InconsistentLogHead(PolicyViolation):
    """A key holder refuses to co-sign an audit-log head that does not extend its last one.

    A witness co-signs a (size, root) only with a consistency proof from the head it
    co-signed last: a server that truncated, pruned or forked its log cannot get it signed.
    """

    reason: ClassVar[str] = "INCONSISTENT_LOG_HEAD"


class ServerNotAuthentic(SecAggError):
    """The party at the server's address is not the roster's server.

    Its certificate is not the one whose SHA-256 the roster records, or does not carry
    the roster's server name or the ``serverAuth`` usage: nothing is sent to it.
    """

    reason: ClassVar[str] = "SERVER_NOT_AUTHENTIC"


# --- Key ceremony (secagg.keycheck, clients.keyholder.ceremony, server.ceremony) ----------


class CeremonyAborted(PolicyViolation):
    """The key ceremony cannot produce a key every key holder can vouch for.

    ``culprits`` names the key holders (indices) that may have deviated: if exactly one
    key holder deviated, it is among them; empty when no single key holder explains it.
    """

    reason: ClassVar[str] = "CEREMONY_ABORTED"

    def __init__(self, message: str, *, culprits: tuple[int, ...] = ()) -> None:
        self.culprits = tuple(sorted(set(culprits)))
        names = ", ".join(str(i) for i in self.culprits)
        plural = "s" if len(self.culprits) > 1 else ""
        blame = f": key holder{plural} {names}" if names else ": no single key holder named"
        super().__init__(message + blame)


class CommitmentMismatch(CeremonyAborted):
    """A public-key contribution or a Shamir share does not match its sender's commitment."""

    reason: ClassVar[str] = "COMMITMENT_MISMATCH"


class KeyCheckFailed(CeremonyAborted):
    """Test ciphertexts did not decrypt to their values under every subset of key holders."""

    reason: ClassVar[str] = "KEY_CHECK_FAILED"


# --- Key epochs (server.epochs, clients.keyholder.epochs) --------------------------------


class KeyRetired(PolicyViolation):
    """A key holder refuses to decrypt (or lock) under a joint key it has retired.

    A key holder retires key epoch ``e`` once it has itself locked or decrypted a round
    under a later epoch's key (recorded durably): the server cannot undo that.
    """

    reason: ClassVar[str] = "KEY_RETIRED"


class TranscriptMismatch(CeremonyAborted):
    """Key holders saw different ceremony messages: the server or a key holder equivocated.

    Names a key holder only when this one holds two conflicting messages it signed.
    """

    reason: ClassVar[str] = "TRANSCRIPT_MISMATCH"


# --- DP bookkeeping (issue 12: secagg.protocol.policy) ------------------------------------


class EpsilonDecreased(PolicyViolation):
    """A client reports less privacy loss than it reported in an earlier accepted upload.

    ε composes: it can only grow. A decrease means the client's ledger was lost or reset
    (a deleted state directory), so its reported ε no longer bounds what it released.
    """

    reason: ClassVar[str] = "EPSILON_DECREASED"


class DPRequired(PolicyViolation):
    """The roster requires differential privacy and the client signed a non-DP upload."""

    reason: ClassVar[str] = "DP_REQUIRED"


# --- Flower integration (issue 14, FLOWER: clients/flower) --------------------------------


class UpdateTampered(PolicyViolation):
    """The update the SecAgg Flower mod was handed is not the one the sealed train function
    produced (a mod between them changed it), or a train reply was changed after the mod
    (it carries plaintext arrays, or its weight differs from the signed one)."""

    reason: ClassVar[str] = "UPDATE_TAMPERED"


class UnverifiedGlobalModel(PolicyViolation):
    """The global model a Flower node was sent is not the secagg round's global model
    (round 1: the roster's initial model; later: the model the key holders released)."""

    reason: ClassVar[str] = "UNVERIFIED_GLOBAL_MODEL"


class ReleaseTimeout(SecAggError):
    """``secagg serve`` did not reach a round, or release it, within the time allowed."""

    reason: ClassVar[str] = "RELEASE_TIMEOUT"
