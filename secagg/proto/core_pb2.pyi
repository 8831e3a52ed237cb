from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncryptedVector(_message.Message):
    __slots__ = ("format_version", "params_id", "length", "ciphertext_count", "public_key_id", "payload", "digest", "chunk_digests")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_COUNT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    params_id: bytes
    length: int
    ciphertext_count: int
    public_key_id: bytes
    payload: bytes
    digest: bytes
    chunk_digests: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, format_version: _Optional[int] = ..., params_id: _Optional[bytes] = ..., length: _Optional[int] = ..., ciphertext_count: _Optional[int] = ..., public_key_id: _Optional[bytes] = ..., payload: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., chunk_digests: _Optional[_Iterable[bytes]] = ...) -> None: ...

class EncryptedAggregate(_message.Message):
    __slots__ = ("format_version", "vector", "total_weight", "weight_scale", "contributors", "digest")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    TOTAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_SCALE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    vector: EncryptedVector
    total_weight: int
    weight_scale: float
    contributors: int
    digest: bytes
    def __init__(self, format_version: _Optional[int] = ..., vector: _Optional[_Union[EncryptedVector, _Mapping]] = ..., total_weight: _Optional[int] = ..., weight_scale: _Optional[float] = ..., contributors: _Optional[int] = ..., digest: _Optional[bytes] = ...) -> None: ...

class PartialDecryption(_message.Message):
    __slots__ = ("format_version", "params_id", "public_key_id", "aggregate_digest", "keyholder_index", "quorum", "threshold", "ciphertext_count", "payload", "digest", "chunk_digests")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    KEYHOLDER_INDEX_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    params_id: bytes
    public_key_id: bytes
    aggregate_digest: bytes
    keyholder_index: int
    quorum: _containers.RepeatedScalarFieldContainer[int]
    threshold: int
    ciphertext_count: int
    payload: bytes
    digest: bytes
    chunk_digests: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, format_version: _Optional[int] = ..., params_id: _Optional[bytes] = ..., public_key_id: _Optional[bytes] = ..., aggregate_digest: _Optional[bytes] = ..., keyholder_index: _Optional[int] = ..., quorum: _Optional[_Iterable[int]] = ..., threshold: _Optional[int] = ..., ciphertext_count: _Optional[int] = ..., payload: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., chunk_digests: _Optional[_Iterable[bytes]] = ...) -> None: ...

class JointPublicKey(_message.Message):
    __slots__ = ("format_version", "params_id", "keyholders", "threshold", "payload", "digest")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_ID_FIELD_NUMBER: _ClassVar[int]
    KEYHOLDERS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    params_id: bytes
    keyholders: int
    threshold: int
    payload: bytes
    digest: bytes
    def __init__(self, format_version: _Optional[int] = ..., params_id: _Optional[bytes] = ..., keyholders: _Optional[int] = ..., threshold: _Optional[int] = ..., payload: _Optional[bytes] = ..., digest: _Optional[bytes] = ...) -> None: ...

class KeyShare(_message.Message):
    __slots__ = ("format_version", "params_id", "public_key_id", "index", "keyholders", "threshold", "payload", "digest")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KEYHOLDERS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    params_id: bytes
    public_key_id: bytes
    index: int
    keyholders: int
    threshold: int
    payload: bytes
    digest: bytes
    def __init__(self, format_version: _Optional[int] = ..., params_id: _Optional[bytes] = ..., public_key_id: _Optional[bytes] = ..., index: _Optional[int] = ..., keyholders: _Optional[int] = ..., threshold: _Optional[int] = ..., payload: _Optional[bytes] = ..., digest: _Optional[bytes] = ...) -> None: ...
