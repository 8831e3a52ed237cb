"""A training client's uploads on disk: the one not yet confirmed, and the rounds done.

The client stores the upload (its signed header and the ciphertext) *before* it sends it,
and deletes it once the server confirmed it (the round is then recorded as done in
``uploads.json``) or the round moved on. A client restarted in
the same round resends exactly these bytes (same ciphertext digest, nonce and signature)
instead of training again: training again would spend the round's privacy budget twice
and upload a second, different update of the same round.

File format (``pending-upload.bin`` in the client's state directory): the serialized
:class:`~secagg.proto.service_pb2.UploadHeader`, length-prefixed (4 bytes, big-endian),
then the ciphertext blob. Written with :func:`clients.durable.write_atomically`.

Security
--------
The file is the client's own; it is parsed with protobuf (never unpickled) and checked
before use: the blob's SHA-256 must be the signed ``ciphertext_hash`` and the signature
must verify under the client's roster key. A file that fails a check is deleted with a
warning (the client then trains again, and its ledger accounts for it honestly).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from clients.durable import remove_durably, write_atomically
from secagg.errors import SecAggError
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Roster
from secagg.protocol.statements import Signed, UploadStatement

log = logging.getLogger("secagg.client")

#: The stored upload's file in the client's state directory.
PENDING_UPLOAD_FILE = "pending-upload.bin"
#: Round -> ciphertext hash (hex) of every confirmed upload.
DONE_FILE = "uploads.json"
_LENGTH_BYTES = 4


@dataclass(frozen=True)
class StoredUpload:
    """A signed upload and its ciphertext, as sent (or about to be sent)."""

    signed: Signed[UploadStatement]
    blob: bytes

    @property
    def round(self) -> int:
        """The round the upload is for."""
        return self.signed.statement.round

    def header(self) -> pb.UploadHeader:
        """The header that opens the upload stream."""
        return self.signed.statement.to_header(self.signed.signature, total_size=len(self.blob))


class PendingUpload:
    """The one stored upload of a client (at most one: the current round's).

    Parameters
    ----------
    state_dir
        The client's state directory.
    roster
        The deployment's roster (to check the stored signature).
    """

    def __init__(self, state_dir: Path, roster: Roster) -> None:
        self.path = state_dir / PENDING_UPLOAD_FILE
        self.done_path = state_dir / DONE_FILE
        self.roster = roster

    def done(self) -> dict[str, str]:
        """Round (as text) -> ciphertext hash (hex) of every confirmed upload."""
        done: dict[str, str] = (
            json.loads(self.done_path.read_text()) if self.done_path.exists() else {}
        )
        return done

    def confirm(self, upload: StoredUpload) -> None:
        """The server holds ``upload``: record its round as done, then delete it."""
        record = self.done()
        record[str(upload.round)] = upload.signed.statement.ciphertext_hash.hex()
        write_atomically(self.done_path, json.dumps(record).encode())
        self.clear()

    def for_round(self, round_number: int, global_model_hash: bytes) -> StoredUpload | None:
        """The stored upload of this round and model; one of another is deleted."""
        stored = self.load()
        if stored is None:
            return None
        s = stored.signed.statement
        if s.round == round_number and s.global_model_hash == global_model_hash:
            return stored
        self.clear()  # the round moved on
        return None

    def store(self, upload: StoredUpload) -> None:
        """Keep ``upload`` durably (returns once it survives a crash)."""
        header = upload.header().SerializeToString()
        length = len(header).to_bytes(_LENGTH_BYTES, "big")
        write_atomically(self.path, length + header + upload.blob)

    def load(self) -> StoredUpload | None:
        """The stored upload, checked; None if there is none (or it failed a check)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self._parse(data)
        except (SecAggError, DecodeError, ValueError) as exc:
            log.warning("discarding the stored upload %s: %s", self.path, exc)
            self.clear()
            return None

    def _parse(self, data: bytes) -> StoredUpload:
        length = int.from_bytes(data[:_LENGTH_BYTES], "big")
        end = _LENGTH_BYTES + length
        if len(data) < end:
            raise ValueError("truncated header")
        header = pb.UploadHeader.FromString(data[_LENGTH_BYTES:end])
        blob = data[end:]
        signed = UploadStatement.from_header(self.roster.deployment_id, header)
        if hashlib.sha256(blob).digest() != signed.statement.ciphertext_hash:
            raise ValueError("the ciphertext does not match its signed hash")
        signed.verify(self.roster)
        return StoredUpload(signed, blob)

    def clear(self) -> None:
        """Delete the stored upload (durably); nothing if there is none."""
        remove_durably(self.path)
