"""Floats in the audit log, written exactly: ``float.hex()`` text instead of JSON numbers.

The audit log is hashed byte for byte, so every writer must produce the same bytes for
the same entry. JSON numbers do not give that: Python writes ``1e-05`` where another
language writes ``0.00001`` or ``1E-5``. RFC 8785 (JCS) fixes the number form to
ECMAScript's shortest round-trip text, which every writer must then reproduce exactly
(and a library for it must be trusted in each language). A hex float needs no float
formatting at all: ``float.hex()`` gives one canonical text per double
(``0x1.8000000000000p+1``), and C's ``strtod``, Go's ``strconv.ParseFloat`` and Java's
``Double.parseDouble`` read it back to the very same double. So entries hold no JSON
floats (:func:`secagg.protocol.audit_log.canonical` refuses them), only this text.
"""

from __future__ import annotations

from typing import Any

__all__ = ["exact_float", "exact_json", "parse_exact_float"]


def exact_float(value: float) -> str:
    """The exact, canonical text of a double (``float.hex()``: ``0x1.8000000000000p+1``)."""
    return float(value).hex()


def parse_exact_float(text: str) -> float:
    """The double :func:`exact_float` wrote; raises ValueError on any other text."""
    value = float.fromhex(text)
    if value.hex() != text:
        raise ValueError(f"{text!r} is not the canonical float.hex() text of a number")
    return value


def exact_json(value: Any) -> Any:
    """``value`` with every float (in dicts and lists too) as :func:`exact_float` text."""
    if isinstance(value, float):
        return exact_float(value)
    if isinstance(value, dict):
        return {k: exact_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [exact_json(v) for v in value]
    return value
