"""Internal: staged parsing and digests of the protobuf envelopes in ``proto/core.proto``.

Not part of the public API. Parsing at the trust boundary goes in stages: size cap,
protobuf parse, then field checks by the caller, then the digest. Digests are SHA-256
over a domain tag and a fixed little-endian encoding of the header fields, then the
payload; ``digest_of`` is the one place that defines those byte strings.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from secagg import constants as C
from secagg.errors import SecAggError

M = TypeVar("M", bound=Message)


def digest_of(domain: bytes, *fields: int | float | bytes) -> bytes:
    """SHA-256 of ``domain`` and the fields (ints as u64, floats as f64, bytes length-prefixed)."""
    h = hashlib.sha256(domain)
    for f in fields:
        if isinstance(f, bool) or not isinstance(f, (int, float, bytes)):
            raise TypeError(f"cannot hash field of type {type(f).__name__}")
        if isinstance(f, bytes):
            h.update(b"b" + struct.pack("<Q", len(f)))
            h.update(f)
        elif isinstance(f, int):
            if not 0 <= f < 2**64:
                raise ValueError(f"integer field {f} outside 0..2^64-1")
            h.update(b"i" + struct.pack("<Q", f))
        else:
            h.update(b"f" + struct.pack("<d", f))
    return h.digest()


def parse(
    message_type: type[M], blob: object, error: type[SecAggError], max_bytes: int | None
) -> M:
    """Stage 1 and 2: size cap, then protobuf parse; every failure raises ``error``."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise error(f"expected bytes, got {type(blob).__name__}")
    cap = C.MAX_SERIALIZED_BYTES if max_bytes is None else max_bytes
    if len(blob) > cap:
        raise error(f"input of {len(blob)} bytes exceeds the cap of {cap} bytes")
    if len(blob) == 0:
        raise error("empty input")
    msg = message_type()
    try:
        msg.ParseFromString(bytes(blob))
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise error(f"malformed {message_type.__name__}: {exc}") from None
    version = getattr(msg, "format_version", None)
    if version != C.FORMAT_VERSION:
        raise error(f"unsupported format version {version}")
    return msg


def require(condition: bool, error: type[SecAggError], message: str) -> None:
    """Raise ``error(message)`` unless ``condition`` holds."""
    if not condition:
        raise error(message)
