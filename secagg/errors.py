"""The one exception hierarchy of secagg.

Every error the library raises on purpose is a :class:`SecAggError`. Checks raise;
they never return ``False``. Catch the precise child where the caller can act on it.
"""

from __future__ import annotations


class SecAggError(Exception):
    """Base class of every error raised by secagg on purpose."""


class ParameterError(SecAggError, ValueError):
    """Encryption parameters are invalid, insecure, or cannot meet a requested target."""


class EncodingError(SecAggError, ValueError):
    """A plaintext vector cannot be encoded (wrong shape, not finite, out of range)."""


class InvalidCiphertext(SecAggError, ValueError):
    """Serialized or in-memory ciphertext data failed validation."""


class InvalidKeyMaterial(SecAggError, ValueError):
    """A public key, key share or key-generation message failed validation."""


class InvalidPartialDecryption(SecAggError, ValueError):
    """A partial decryption is malformed or belongs to another aggregate or quorum."""


class QuorumNotMet(SecAggError):
    """Fewer than the threshold number of distinct, valid key holders took part."""


class WeightBudgetExceeded(SecAggError, ValueError):
    """Aggregation weights are negative, all zero, or exceed the parameter budget."""


class SignatureInvalid(SecAggError):
    """A signature does not verify under the signer's roster key."""


class ConfigError(SecAggError, ValueError):
    """A deployment or configuration file is missing, unreadable or invalid."""


class PolicyViolation(SecAggError):
    """A protocol rule (minimum contributors, weight cap, ...) refused an operation."""


class PermissionDenied(PolicyViolation):
    """The authenticated party may not perform this operation."""


class SizeLimitExceeded(PolicyViolation):
    """An input exceeds a configured size cap."""


class DuplicateUpload(PolicyViolation):
    """The client already has an accepted upload in this round."""


class ReplayDetected(PolicyViolation):
    """A message was seen before (same round, client and nonce)."""


class PrivacyBudgetExhausted(SecAggError):
    """Another round of training would exceed the client's differential-privacy budget."""


class AuditChainBroken(SecAggError):
    """The audit log does not verify."""


class AuditWriteFailed(SecAggError):
    """An audit entry could not be written durably; the operation must be refused."""
