"""The base classes of the typed audit-log entries (see :mod:`secagg.protocol.audit_entries`).

:class:`AuditEntry` turns an entry into its JSON ``data`` object and back, field by field;
:class:`SignedEntry` rebuilds the statement an entry's signature is over.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from secagg.protocol.exact_float import exact_float, parse_exact_float
from secagg.protocol.statements import Signed, Statement
from secagg.protocol.typed_json import from_json, to_json

E = TypeVar("E", bound="AuditEntry")
S = TypeVar("S", bound=Statement)
SE = TypeVar("SE", bound="SignedEntry[Any]")


def _is_float_field(kind: type[Any], name: str) -> bool:
    hint = next(f.type for f in dataclasses.fields(kind) if f.name == name)
    return hint in (float, "float")


@dataclass(frozen=True)
class AuditEntry:
    """Base of the typed entries."""

    TYPE: ClassVar[str]

    def to_data(self) -> dict[str, Any]:
        """The entry's ``data`` object (JSON-ready)."""
        encoded = to_json(self)
        assert isinstance(encoded, dict)
        return encoded

    @classmethod
    def from_data(cls: type[E], data: Any) -> E:
        """Parse and type-check a ``data`` object; raises ValueError naming the bad field."""
        return from_json(cls, data, cls.TYPE)


class SignedEntry(AuditEntry, Generic[S]):
    """An entry recording one signed statement: its fields (some renamed) and signature.

    Subclasses name the statement type (``STATEMENT``), the entry field holding
    the signature (``SIGNATURE``) and the statement fields the entry stores under another
    name (``RENAMED``, statement field -> entry field). Entry fields that are not part of
    the statement (e.g. ``task_id``) are passed to :meth:`of` as keywords. A statement's
    float field is stored as :func:`exact_float` text (declare the entry field ``str``).
    """

    STATEMENT: ClassVar[type[Any]]
    SIGNATURE: ClassVar[str] = "signature"
    RENAMED: ClassVar[dict[str, str]] = {}

    def signed(self, deployment_id: str) -> Signed[S]:
        """The signed statement (raises MalformedStatement on bad field sizes)."""
        kind = self.STATEMENT
        names = [f.name for f in dataclasses.fields(kind) if f.name != "deployment_id"]
        values = {n: getattr(self, self.RENAMED.get(n, n)) for n in names}
        for n in names:
            if _is_float_field(kind, n):
                values[n] = parse_exact_float(values[n])
        return Signed(kind(deployment_id=deployment_id, **values), getattr(self, self.SIGNATURE))

    @classmethod
    def of(cls: type[SE], signed: Signed[S], **extra: Any) -> SE:
        """The entry recording ``signed`` (``extra``: entry fields the statement lacks)."""
        stored_as = {entry: field for field, entry in cls.RENAMED.items()}
        values = dict(extra)
        for f in dataclasses.fields(cls):
            if f.name == cls.SIGNATURE:
                values[f.name] = signed.signature
            elif f.name not in values:
                value = getattr(signed.statement, stored_as.get(f.name, f.name))
                values[f.name] = exact_float(value) if isinstance(value, float) else value
        return cls(**values)
