"""Strict JSON forms of frozen dataclasses (the audit log's entry bodies).

``bytes`` travel as lower-case hex, ``int``/``float``/``str``/``bool`` as JSON scalars (a
``bool`` is never an ``int``, an ``int`` never a ``bool``), tuples as lists, nested
dataclasses as objects. :func:`from_json` demands exactly the dataclass's fields, checks
every JSON type and raises :class:`ValueError` naming the bad field; it never builds
anything but the declared types from untrusted input.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union

T = TypeVar("T")


def to_json(value: Any) -> Any:
    """JSON-ready form of a value: bytes as hex, tuples as lists, dataclasses as objects."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [to_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _decode(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bytes:
        if not isinstance(value, str) or bytes.fromhex(value).hex() != value:
            raise ValueError(f"{where} must be lower-case hex")
        return bytes.fromhex(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be a boolean")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string")
        return value
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list")
        return tuple(_decode(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be an object")
        return dict(value)
    if origin in (Union, types.UnionType):
        raise TypeError(f"{where}: union fields are not supported")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json(hint, value, where)
    raise TypeError(f"{where}: unsupported field type {hint!r}")


def from_json(cls: type[T], data: Any, where: str) -> T:
    """An instance of dataclass ``cls`` from JSON; raises ValueError naming the bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{where}: {cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in data]
    extra = sorted(set(data) - set(names))
    if missing or extra:
        raise ValueError(f"{where}: missing fields {missing}, unexpected fields {extra}")
    return cls(**{n: _decode(data[n], hints[n], f"{where}.{n}") for n in names})
