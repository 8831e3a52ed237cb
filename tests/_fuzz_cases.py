"""Generic fuzz cases for any serialized message, and the loop that checks outcomes.

Used by ``tests/_fuzz_worker.py`` (not a test module). :func:`generic_cases` derives
malformed inputs from one valid serialized message with one large payload: truncations,
bit flips, byte smashes, garbage, random well-formed messages of the same type, inputs
over the size cap and objects that are not bytes. :func:`override_cases` appends a second
occurrence of each field (protobuf: the last one wins). :class:`Fuzz` feeds inputs to a
parser and counts outcomes, keeping every outcome that is not the parser's documented
exception as a finding.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator

Case = tuple[str, object, dict]
MAX_REPORTED = 50


class Fuzz:
    def __init__(self, parse: Callable[..., object], expected: type[Exception]) -> None:
        self.parse = parse
        self.expected = expected
        self.checked = 0
        self.kinds: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.unexpected: list[tuple[str, str, str]] = []

    def check(self, kind: str, blob: object, **kwargs: object) -> None:
        self.checked += 1
        self.kinds[kind] += 1
        try:
            self.parse(blob, **kwargs)
        except self.expected as exc:
            self.outcomes[type(exc).__name__] += 1
            return
        except Exception as exc:  # anything else is a finding
            outcome, message = type(exc).__name__, str(exc)[:200]
        else:
            outcome, message = "ACCEPTED", ""
        self.outcomes[outcome] += 1
        if len(self.unexpected) < MAX_REPORTED:
            self.unexpected.append((kind, outcome, message))

    def report(self, seed: int, target: str) -> dict:
        return {
            "target": target,
            "seed": seed,
            "checked": self.checked,
            "kinds": dict(self.kinds),
            "outcomes": dict(self.outcomes),
            "unexpected": self.unexpected,
        }


def flip(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def generic_cases(
    blob: bytes, payload: bytes, message_type: type, rng: random.Random, payload_flips: int
) -> Iterator[Case]:
    """Cases that apply to any serialized message with one large payload."""
    start = blob.find(payload)
    assert start > 0 and blob.find(payload, start + 1) == -1
    end = start + len(payload)
    size = len(blob)
    # Truncations: every length through the header and the tail, random ones in between.
    cuts = set(range(0, min(start + 24, size))) | set(range(max(end - 24, 0), size))
    cuts |= {rng.randrange(start, end) for _ in range(150)}
    for cut in sorted(cuts - {size}):
        yield "truncation", blob[:cut], {}
    # Single bit flips: every bit outside the payload, random ones inside it.
    outside = [b for b in range(size * 8) if not start * 8 <= b < end * 8]
    for bit in outside:
        yield "bitflip-header", flip(blob, bit), {}
    for _ in range(payload_flips):
        yield "bitflip-payload", flip(blob, rng.randrange(start * 8, end * 8)), {}
    # A few multi-byte corruptions.
    for _ in range(30):
        out = bytearray(blob)
        pos = rng.randrange(size)
        out[pos : pos + 8] = rng.randbytes(len(out[pos : pos + 8]))
        if bytes(out) != blob:
            yield "byte-smash", bytes(out), {}
    # Random garbage of many lengths, including the valid length.
    for _ in range(100):
        yield "garbage", rng.randbytes(rng.randrange(1, 4096)), {}
    for _ in range(10):
        yield "garbage-full-length", rng.randbytes(size), {}
    yield "garbage-zeros", bytes(size), {}
    yield "garbage-ff", b"\xff" * size, {}
    # Random well-formed messages of the right type.
    for _ in range(60):
        yield "random-message", random_message(message_type, rng).SerializeToString(), {}
    # Size caps.
    yield "empty", b"", {}
    yield "over-cap", blob, {"max_bytes": size - 1}
    for cap in (1, 16, 1024, 1 << 20):
        yield "over-cap", bytes(cap + 1), {"max_bytes": cap}
        if cap < size:
            yield "over-cap", blob[: cap + 1], {"max_bytes": cap}
    # Not bytes at all.
    for obj in (None, "text", blob.decode("latin-1"), 12, [1, 2], object(), 1.5):
        yield "not-bytes", obj, {}


def random_message(message_type: type, rng: random.Random) -> object:
    msg = message_type()
    for field in msg.DESCRIPTOR.fields:
        if rng.random() < 0.2:
            continue
        name = field.name
        if field.message_type is not None:
            getattr(msg, name).CopyFrom(random_message(type(getattr(msg, name)), rng))
        elif field.type == field.TYPE_BYTES and field.is_repeated:
            getattr(msg, name).extend(rng.randbytes(32) for _ in range(rng.randrange(0, 3)))
        elif field.type == field.TYPE_BYTES:
            setattr(msg, name, rng.randbytes(rng.choice([0, 1, 16, 31, 32, 33, 64, 480])))
        elif field.type == field.TYPE_DOUBLE:
            setattr(msg, name, rng.choice([0.0, -1.0, 1.0, 2.0**20, math.nan, math.inf]))
        elif field.is_repeated:
            getattr(msg, name).extend(rng.randrange(0, 10) for _ in range(rng.randrange(0, 5)))
        else:
            bits = 32 if field.type == field.TYPE_UINT32 else 64
            setattr(msg, name, rng.choice([0, 1, 2, 3, rng.getrandbits(bits)]))
    return msg


def override_cases(msg: object, rng: random.Random) -> Iterator[Case]:
    """Append a second occurrence of one field with another value (protobuf: last wins)."""
    base = msg.SerializeToString()
    for field in msg.DESCRIPTOR.fields:
        extra = type(msg)()
        name = field.name
        if field.message_type is not None:
            getattr(extra, name).format_version = 99
        elif field.type == field.TYPE_BYTES and field.is_repeated:
            getattr(extra, name).append(bytes(32))
        elif field.type == field.TYPE_BYTES:
            old = getattr(msg, name)
            setattr(extra, name, bytes([old[0] ^ 1]) + old[1:] if old else b"\x01")
        elif field.type == field.TYPE_DOUBLE:
            setattr(extra, name, getattr(msg, name) * 2 + 1)
        elif field.is_repeated:
            getattr(extra, name).append(rng.randrange(1, 9))
        else:
            setattr(extra, name, getattr(msg, name) + 1)
        yield f"override-{name}", base + extra.SerializeToString(), {}
