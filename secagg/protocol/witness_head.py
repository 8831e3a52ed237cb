"""A witness's latest audit-log head: what a key holder keeps and ``audit verify`` reads.

A key holder co-signs a checkpoint (:class:`~secagg.protocol.statements.CheckpointStatement`,
the log's size and Merkle root) only when it extends the last one it co-signed
(:mod:`clients.keyholder.witness`), and keeps the latest as ``witness.json`` in its state
directory: one JSON object with ``deployment_id``, ``keyholder``, ``size``, ``head`` and
``signature`` (its co-signature; bytes as lower-case hex). ``secagg audit verify`` reads
these files (or ``--witness FILE``), checks the co-signature against the roster, and
holds the log to every such head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CheckpointStatement, Signed
from secagg.protocol.typed_json import from_json, to_json

WITNESS_FILE = "witness.json"
#: A witness file is a few hundred bytes; refuse to parse anything much larger.
MAX_WITNESS_BYTES = 4096


@dataclass(frozen=True)
class WitnessedHead:
    """The latest head key holder ``keyholder`` co-signed, with its co-signature."""

    deployment_id: str
    keyholder: int
    size: int
    head: bytes
    signature: bytes

    @property
    def signed(self) -> Signed[CheckpointStatement]:
        """The co-signed checkpoint (verify with ``verify_by`` the key holder's party)."""
        return Signed(CheckpointStatement(self.deployment_id, self.size, self.head), self.signature)

    def verify(self, roster: Roster) -> None:
        """Check the co-signature under the roster key of key holder ``keyholder``.

        Raises
        ------
        SignatureInvalid
            The signature does not verify (or the head is of another deployment).
        ConfigError
            The roster has no such key holder.
        """
        self.signed.verify_by(roster.keyholder(self.keyholder), who=f"key holder {self.keyholder}")

    def to_bytes(self) -> bytes:
        """The file's content."""
        return json.dumps(to_json(self), sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> WitnessedHead:
        """Parse a witness file; raises ValueError naming what is wrong."""
        if len(data) > MAX_WITNESS_BYTES:
            raise ValueError(f"a witness file is at most {MAX_WITNESS_BYTES} bytes")
        return from_json(cls, json.loads(data), "witness")

    @classmethod
    def load(cls, path: Path) -> WitnessedHead:
        """Read a witness file (ValueError if malformed, OSError if unreadable)."""
        with open(path, "rb") as fh:
            return cls.from_bytes(fh.read(MAX_WITNESS_BYTES + 1))


def witness_files(layout: DeploymentLayout, roster: Roster) -> list[Path]:
    """The witness files of the roster's key holders that exist in the deployment directory."""
    paths = [
        layout.state_dir(k.name, "keyholder") / WITNESS_FILE
        for k in sorted(roster.keyholders, key=lambda p: p.index)
    ]
    return [p for p in paths if p.exists()]
