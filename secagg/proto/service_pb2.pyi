from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CeremonyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CEREMONY_KIND_UNSPECIFIED: _ClassVar[CeremonyKind]
    SEED_COMMIT: _ClassVar[CeremonyKind]
    SEED_REVEAL: _ClassVar[CeremonyKind]
    KEY_CONTRIBUTION: _ClassVar[CeremonyKind]
    ENCRYPTED_SHARE: _ClassVar[CeremonyKind]
    ENDORSEMENT: _ClassVar[CeremonyKind]
    KEY_COMMIT: _ClassVar[CeremonyKind]
    TEST_CIPHERTEXT: _ClassVar[CeremonyKind]
    TEST_PARTIAL: _ClassVar[CeremonyKind]
    EXCHANGE_KEY: _ClassVar[CeremonyKind]
    TRANSCRIPT: _ClassVar[CeremonyKind]

class RoundState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUND_STATE_UNSPECIFIED: _ClassVar[RoundState]
    CEREMONY: _ClassVar[RoundState]
    COLLECTING: _ClassVar[RoundState]
    AGGREGATING: _ClassVar[RoundState]
    DECRYPTING: _ClassVar[RoundState]
    RELEASED: _ClassVar[RoundState]
    FINISHED: _ClassVar[RoundState]

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_DECRYPT: _ClassVar[TaskKind]
    TASK_LOCK: _ClassVar[TaskKind]
    TASK_ENDORSE: _ClassVar[TaskKind]
CEREMONY_KIND_UNSPECIFIED: CeremonyKind
SEED_COMMIT: CeremonyKind
SEED_REVEAL: CeremonyKind
KEY_CONTRIBUTION: CeremonyKind
ENCRYPTED_SHARE: CeremonyKind
ENDORSEMENT: CeremonyKind
KEY_COMMIT: CeremonyKind
TEST_CIPHERTEXT: CeremonyKind
TEST_PARTIAL: CeremonyKind
EXCHANGE_KEY: CeremonyKind
TRANSCRIPT: CeremonyKind
ROUND_STATE_UNSPECIFIED: RoundState
CEREMONY: RoundState
COLLECTING: RoundState
AGGREGATING: RoundState
DECRYPTING: RoundState
RELEASED: RoundState
FINISHED: RoundState
TASK_DECRYPT: TaskKind
TASK_LOCK: TaskKind
TASK_ENDORSE: TaskKind

class Chunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class BlobHeader(_message.Message):
    __slots__ = ("total_size", "sha256")
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    total_size: int
    sha256: bytes
    def __init__(self, total_size: _Optional[int] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class BlobRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    def __init__(self, sha256: _Optional[bytes] = ...) -> None: ...

class UploadQuery(_message.Message):
    __slots__ = ("round", "after")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    round: int
    after: int
    def __init__(self, round: _Optional[int] = ..., after: _Optional[int] = ...) -> None: ...

class AcceptedUploads(_message.Message):
    __slots__ = ("round", "contributions", "public_key_id", "collecting")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTING_FIELD_NUMBER: _ClassVar[int]
    round: int
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    public_key_id: bytes
    collecting: bool
    def __init__(self, round: _Optional[int] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., public_key_id: _Optional[bytes] = ..., collecting: _Optional[bool] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CeremonyMessage(_message.Message):
    __slots__ = ("kind", "sender", "recipient", "body", "signature", "epoch")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    kind: CeremonyKind
    sender: int
    recipient: int
    body: bytes
    signature: bytes
    epoch: int
    def __init__(self, kind: _Optional[_Union[CeremonyKind, str]] = ..., sender: _Optional[int] = ..., recipient: _Optional[int] = ..., body: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., epoch: _Optional[int] = ...) -> None: ...

class SealedShare(_message.Message):
    __slots__ = ("ephemeral_public_key", "nonce", "ciphertext")
    EPHEMERAL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    ephemeral_public_key: bytes
    nonce: bytes
    ciphertext: bytes
    def __init__(self, ephemeral_public_key: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class CeremonyQuery(_message.Message):
    __slots__ = ("kind", "recipient", "epoch")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    kind: CeremonyKind
    recipient: int
    epoch: int
    def __init__(self, kind: _Optional[_Union[CeremonyKind, str]] = ..., recipient: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class CeremonyMessages(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[CeremonyMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[CeremonyMessage, _Mapping]]] = ...) -> None: ...

class PublicKeyBundle(_message.Message):
    __slots__ = ("public_key", "endorsements")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ENDORSEMENTS_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    endorsements: _containers.RepeatedCompositeFieldContainer[CeremonyMessage]
    def __init__(self, public_key: _Optional[bytes] = ..., endorsements: _Optional[_Iterable[_Union[CeremonyMessage, _Mapping]]] = ...) -> None: ...

class RoundInfo(_message.Message):
    __slots__ = ("round", "state", "global_model_hash", "public_key_id", "deadline_unix", "accepted_uploads", "status", "model_length", "status_reason")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_UPLOADS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    round: int
    state: RoundState
    global_model_hash: bytes
    public_key_id: bytes
    deadline_unix: float
    accepted_uploads: int
    status: str
    model_length: int
    status_reason: str
    def __init__(self, round: _Optional[int] = ..., state: _Optional[_Union[RoundState, str]] = ..., global_model_hash: _Optional[bytes] = ..., public_key_id: _Optional[bytes] = ..., deadline_unix: _Optional[float] = ..., accepted_uploads: _Optional[int] = ..., status: _Optional[str] = ..., model_length: _Optional[int] = ..., status_reason: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("round", "client_id", "nonce", "global_model_hash", "weight", "signature", "epsilon", "dp", "head")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    round: int
    client_id: str
    nonce: bytes
    global_model_hash: bytes
    weight: int
    signature: bytes
    epsilon: float
    dp: bool
    head: bytes
    def __init__(self, round: _Optional[int] = ..., client_id: _Optional[str] = ..., nonce: _Optional[bytes] = ..., global_model_hash: _Optional[bytes] = ..., weight: _Optional[int] = ..., signature: _Optional[bytes] = ..., epsilon: _Optional[float] = ..., dp: _Optional[bool] = ..., head: _Optional[bytes] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: Chunk
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class UploadReceipt(_message.Message):
    __slots__ = ("round", "ciphertext_hash", "accepted_uploads")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_HASH_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_UPLOADS_FIELD_NUMBER: _ClassVar[int]
    round: int
    ciphertext_hash: bytes
    accepted_uploads: int
    def __init__(self, round: _Optional[int] = ..., ciphertext_hash: _Optional[bytes] = ..., accepted_uploads: _Optional[int] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("round", "model_hash", "aggregate_digest", "quorum", "partial_digests", "server_signature", "checked_quorums", "endorsements")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    SERVER_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CHECKED_QUORUMS_FIELD_NUMBER: _ClassVar[int]
    ENDORSEMENTS_FIELD_NUMBER: _ClassVar[int]
    round: int
    model_hash: bytes
    aggregate_digest: bytes
    quorum: _containers.RepeatedScalarFieldContainer[int]
    partial_digests: _containers.RepeatedScalarFieldContainer[bytes]
    server_signature: bytes
    checked_quorums: _containers.RepeatedScalarFieldContainer[int]
    endorsements: _containers.RepeatedCompositeFieldContainer[Endorsement]
    def __init__(self, round: _Optional[int] = ..., model_hash: _Optional[bytes] = ..., aggregate_digest: _Optional[bytes] = ..., quorum: _Optional[_Iterable[int]] = ..., partial_digests: _Optional[_Iterable[bytes]] = ..., server_signature: _Optional[bytes] = ..., checked_quorums: _Optional[_Iterable[int]] = ..., endorsements: _Optional[_Iterable[_Union[Endorsement, _Mapping]]] = ...) -> None: ...

class ReleaseQuery(_message.Message):
    __slots__ = ("round",)
    ROUND_FIELD_NUMBER: _ClassVar[int]
    round: int
    def __init__(self, round: _Optional[int] = ...) -> None: ...

class Withdrawal(_message.Message):
    __slots__ = ("client_id", "round", "reason", "signature")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    round: int
    reason: str
    signature: bytes
    def __init__(self, client_id: _Optional[str] = ..., round: _Optional[int] = ..., reason: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Contribution(_message.Message):
    __slots__ = ("client_id", "nonce", "global_model_hash", "weight", "ciphertext_hash", "signature", "epsilon", "dp")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    nonce: bytes
    global_model_hash: bytes
    weight: int
    ciphertext_hash: bytes
    signature: bytes
    epsilon: float
    dp: bool
    def __init__(self, client_id: _Optional[str] = ..., nonce: _Optional[bytes] = ..., global_model_hash: _Optional[bytes] = ..., weight: _Optional[int] = ..., ciphertext_hash: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., epsilon: _Optional[float] = ..., dp: _Optional[bool] = ...) -> None: ...

class Lock(_message.Message):
    __slots__ = ("round", "keyholder", "aggregate_digest", "signature")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KEYHOLDER_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    round: int
    keyholder: int
    aggregate_digest: bytes
    signature: bytes
    def __init__(self, round: _Optional[int] = ..., keyholder: _Optional[int] = ..., aggregate_digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class QuorumPartials(_message.Message):
    __slots__ = ("quorum", "partial_hashes", "partial_signatures")
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_HASHES_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    quorum: _containers.RepeatedScalarFieldContainer[int]
    partial_hashes: _containers.RepeatedScalarFieldContainer[bytes]
    partial_signatures: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, quorum: _Optional[_Iterable[int]] = ..., partial_hashes: _Optional[_Iterable[bytes]] = ..., partial_signatures: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Endorsement(_message.Message):
    __slots__ = ("round", "keyholder", "aggregate_digest", "model_hash", "checked_quorums", "signature")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KEYHOLDER_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    CHECKED_QUORUMS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    round: int
    keyholder: int
    aggregate_digest: bytes
    model_hash: bytes
    checked_quorums: _containers.RepeatedScalarFieldContainer[int]
    signature: bytes
    def __init__(self, round: _Optional[int] = ..., keyholder: _Optional[int] = ..., aggregate_digest: _Optional[bytes] = ..., model_hash: _Optional[bytes] = ..., checked_quorums: _Optional[_Iterable[int]] = ..., signature: _Optional[bytes] = ...) -> None: ...

class DecryptionTask(_message.Message):
    __slots__ = ("pending", "round", "aggregate_hash", "aggregate_digest", "contributions", "quorum", "task_id", "log_size", "log_head", "kind", "locks", "partials", "model_hash", "consistency", "public_key_id", "ceremony_epoch")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_HASH_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_FIELD_NUMBER: _ClassVar[int]
    LOG_HEAD_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    PARTIALS_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CEREMONY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    pending: bool
    round: int
    aggregate_hash: bytes
    aggregate_digest: bytes
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    quorum: _containers.RepeatedScalarFieldContainer[int]
    task_id: int
    log_size: int
    log_head: bytes
    kind: TaskKind
    locks: _containers.RepeatedCompositeFieldContainer[Lock]
    partials: _containers.RepeatedCompositeFieldContainer[QuorumPartials]
    model_hash: bytes
    consistency: _containers.RepeatedCompositeFieldContainer[ConsistencyProof]
    public_key_id: bytes
    ceremony_epoch: int
    def __init__(self, pending: _Optional[bool] = ..., round: _Optional[int] = ..., aggregate_hash: _Optional[bytes] = ..., aggregate_digest: _Optional[bytes] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., quorum: _Optional[_Iterable[int]] = ..., task_id: _Optional[int] = ..., log_size: _Optional[int] = ..., log_head: _Optional[bytes] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., locks: _Optional[_Iterable[_Union[Lock, _Mapping]]] = ..., partials: _Optional[_Iterable[_Union[QuorumPartials, _Mapping]]] = ..., model_hash: _Optional[bytes] = ..., consistency: _Optional[_Iterable[_Union[ConsistencyProof, _Mapping]]] = ..., public_key_id: _Optional[bytes] = ..., ceremony_epoch: _Optional[int] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("from_size", "hashes")
    FROM_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    from_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, from_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PartialHeader(_message.Message):
    __slots__ = ("task_id", "round", "keyholder", "signature", "checkpoint_signature", "head")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KEYHOLDER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    round: int
    keyholder: int
    signature: bytes
    checkpoint_signature: bytes
    head: bytes
    def __init__(self, task_id: _Optional[int] = ..., round: _Optional[int] = ..., keyholder: _Optional[int] = ..., signature: _Optional[bytes] = ..., checkpoint_signature: _Optional[bytes] = ..., head: _Optional[bytes] = ...) -> None: ...

class PartialRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PartialHeader
    chunk: Chunk
    def __init__(self, header: _Optional[_Union[PartialHeader, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("task_id", "round", "keyholder", "reason", "signature")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KEYHOLDER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    round: int
    keyholder: int
    reason: str
    signature: bytes
    def __init__(self, task_id: _Optional[int] = ..., round: _Optional[int] = ..., keyholder: _Optional[int] = ..., reason: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...

class AdminDecryptionRequest(_message.Message):
    __slots__ = ("round", "client_ids")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IDS_FIELD_NUMBER: _ClassVar[int]
    round: int
    client_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, round: _Optional[int] = ..., client_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AdminDecryptionResult(_message.Message):
    __slots__ = ("refusals", "released")
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    refusals: _containers.RepeatedCompositeFieldContainer[Refusal]
    released: bool
    def __init__(self, refusals: _Optional[_Iterable[_Union[Refusal, _Mapping]]] = ..., released: _Optional[bool] = ...) -> None: ...

class AdminRotateKeyResult(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class ModelBlob(_message.Message):
    __slots__ = ("format_version", "round", "length", "float64_le")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    FLOAT64_LE_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    round: int
    length: int
    float64_le: bytes
    def __init__(self, format_version: _Optional[int] = ..., round: _Optional[int] = ..., length: _Optional[int] = ..., float64_le: _Optional[bytes] = ...) -> None: ...
