"""The protocol's signed statements: one frozen dataclass per kind of statement.

Each statement owns

* its **digest**: its own domain tag and its fields, hashed by the one function
  :meth:`Statement.digest` (see :mod:`secagg.protocol.statements.base`), so a signature
  can never be replayed as a different kind of statement;
* its **signer** (:meth:`Statement.signer`): the roster party whose Ed25519 key must sign
  it;
* its **protobuf form** (``to_proto`` / ``from_proto``, wire format in
  ``proto/service.proto``).

A :class:`Signed` wraps a statement and a signature; :meth:`Signed.verify` checks it
against the roster and raises :class:`~secagg.errors.SignatureInvalid`. Audit entries
(:mod:`secagg.protocol.audit_entries`) are built from statements too, so the writer and
``secagg audit verify`` agree on every field.

Security
--------
A digest binds the deployment id, so statements of one deployment are worthless in
another. What a statement *means* (is this upload acceptable, may this aggregate be
decrypted) is decided by :mod:`secagg.protocol.policy`, not here.
"""

from __future__ import annotations

from secagg.protocol.statements.base import Signed, Statement
from secagg.protocol.statements.certificates import EndorsementStatement, LockStatement
from secagg.protocol.statements.keyholders import (
    CeremonyStatement,
    PartialStatement,
    RefusalStatement,
)
from secagg.protocol.statements.server import CheckpointStatement, ReleaseStatement
from secagg.protocol.statements.uploads import UploadStatement, WithdrawalStatement

__all__ = [
    "CeremonyStatement",
    "CheckpointStatement",
    "EndorsementStatement",
    "LockStatement",
    "PartialStatement",
    "RefusalStatement",
    "ReleaseStatement",
    "Signed",
    "Statement",
    "UploadStatement",
    "WithdrawalStatement",
]
