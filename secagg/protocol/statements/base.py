"""The statement base class, its one digest function, and the signed wrapper.

A statement is a frozen dataclass whose fields, in declaration order, are exactly what
is signed: :meth:`Statement.digest` hashes the class's domain tag and then every field
(text as UTF-8, integers and booleans as u64, floats as f64, bytes length-prefixed; a tuple of
integers as 4-byte little-endian words, a tuple of byte strings concatenated). So each
kind of statement owns its digest through its domain tag and its field list, and the
byte string is built in this one function for all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg._internal.envelope import digest_of
from secagg.errors import ConfigError, MalformedStatement, UnknownParty
from secagg.protocol.roster import Party, Roster
from secagg.protocol.signing import sign, verify

Field = int | float | bytes


def _digest_field(value: object) -> Field:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, tuple):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return b"".join(int(v).to_bytes(4, "little") for v in value)
        if all(isinstance(v, bytes) for v in value):
            return b"".join(value)
    if isinstance(value, bool):
        return int(value)  # signed as a u64, 0 or 1
    if isinstance(value, float):
        return value
    if isinstance(value, (int, bytes)) and not isinstance(value, bool):
        return value
    raise TypeError(f"cannot sign a field of type {type(value).__name__}")


class Statement(ABC):
    """A statement some roster party signs (subclasses are frozen dataclasses)."""

    DOMAIN: ClassVar[bytes]

    def digest(self) -> bytes:
        """The 32-byte digest that is signed: domain tag, then every field in order."""
        values = [_digest_field(getattr(self, f.name)) for f in fields(self)]  # type: ignore[arg-type]
        return digest_of(self.DOMAIN, *values)

    @abstractmethod
    def signer(self, roster: Roster) -> Party:
        """The roster party that must sign this statement (raises UnknownParty)."""

    def describe_signer(self, roster: Roster) -> str:
        """Who signs, for error messages."""
        party = self.signer(roster)
        return f"key holder {party.index}" if party.role == "keyholder" else party.name


S = TypeVar("S", bound=Statement)


@dataclass(frozen=True)
class Signed(Generic[S]):
    """A statement and its Ed25519 signature."""

    statement: S
    signature: bytes

    @classmethod
    def create(cls, statement: S, key: Ed25519PrivateKey) -> Signed[S]:
        """Sign ``statement`` with ``key``."""
        return cls(statement, sign(key, statement.digest()))

    def verify(self, roster: Roster) -> S:
        """Check the signature under the signer's roster key; returns the statement.

        Raises
        ------
        SignatureInvalid
            The signature does not verify.
        UnknownParty
            The statement names a party the roster does not know.
        """
        party = self.statement.signer(roster)
        self.verify_by(party, who=self.statement.describe_signer(roster))
        return self.statement

    def verify_by(self, party: Party, *, who: str | None = None) -> S:
        """Check the signature under ``party``'s key (for statements anyone may co-sign)."""
        digest = self.statement.digest()
        verify(party.signing_public_key, self.signature, digest, who=who or party.name)
        return self.statement


def client_party(roster: Roster, name: str) -> Party:
    """The roster client ``name`` (raises :class:`UnknownParty`)."""
    try:
        return roster.client(name)
    except ConfigError as exc:
        raise UnknownParty(str(exc)) from None


def keyholder_party(roster: Roster, index: int) -> Party:
    """The roster key holder ``index`` (raises :class:`UnknownParty`)."""
    try:
        return roster.keyholder(index)
    except ConfigError as exc:
        raise UnknownParty(str(exc)) from None


def require(condition: bool, message: str) -> None:
    """Raise :class:`MalformedStatement` unless ``condition``."""
    if not condition:
        raise MalformedStatement(message)
