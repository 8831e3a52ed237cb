"""A training client's uploads on disk: the one not yet confirmed, and the rounds done.

The client encrypts its update straight into a chunk file in its state directory
(:func:`PendingUpload.write_ciphertext`, never the whole ciphertext in memory), signs the
statement over the chunk file's head, and stores the signed header (:meth:`store`)
*before* it sends anything; it deletes both once the server confirmed the upload (the
round is then recorded as done in ``uploads.json``) or the round moved on. A client
restarted in the same round streams exactly these chunks again (same ciphertext digest,
nonce and signature) instead of training again: training again would spend the round's
privacy budget twice and upload a second, different update of the same round.

Files in the client's state directory:

- ``pending-upload.chunks``: the ciphertext as a chunk file
  (:mod:`secagg.chunk_file`: the chunks, then the head), fsynced and renamed into place;
- ``pending-upload.bin``: the serialized :class:`~secagg.proto.service_pb2.UploadHeader`
  (signed statement fields and the ciphertext's head), written last with
  :func:`clients.durable.write_atomically`. It is the commit point: a chunk file without
  it is an unfinished upload and is replaced by the next one.

Security
--------
The files are the client's own; they are parsed with protobuf and the chunk file's own
checks (never unpickled) and checked before use: the head must parse, the signature
must verify under the client's roster key over the head's digest, the chunk file must
carry the same head, and every chunk must match its digest in the head. A stored upload
that fails a check is deleted with a warning (the client then trains again, and its
ledger accounts for it honestly).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from clients.durable import remove_durably, write_atomically
from secagg.chunk_file import ChunkFile, ChunkFileWriter
from secagg.chunked import VectorHead, checked_chunks
from secagg.ciphertext import encrypt_chunks
from secagg.encoding import F64, I64
from secagg.errors import SecAggError
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Roster
from secagg.protocol.statements import Signed, UploadStatement

log = logging.getLogger("secagg.client")

#: The stored upload's signed header in the client's state directory (the commit point).
PENDING_UPLOAD_FILE = "pending-upload.bin"
#: The stored upload's ciphertext (a chunk file) in the client's state directory.
PENDING_CHUNKS_FILE = "pending-upload.chunks"
#: Round -> ciphertext hash (hex) of every confirmed upload.
DONE_FILE = "uploads.json"


@dataclass(frozen=True)
class StoredUpload:
    """A signed upload and its ciphertext's chunk file, as sent (or about to be sent)."""

    signed: Signed[UploadStatement]
    head: VectorHead
    path: Path

    @property
    def round(self) -> int:
        """The round the upload is for."""
        return self.signed.statement.round

    def header(self) -> pb.UploadHeader:
        """The header that opens the upload stream (it carries the ciphertext's head)."""
        return self.signed.statement.to_header(self.signed.signature, head=self.head.to_bytes())

    def chunks(self) -> Iterator[bytes]:
        """The ciphertext's chunks in order, read from the file one at a time.

        Each call opens the file afresh, so a retried stream starts from chunk 0.
        """
        with ChunkFile(self.path) as stored:
            for index in range(self.head.chunk_count):
                yield stored.chunk(self.head, index)


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
        self.chunks_path = state_dir / PENDING_CHUNKS_FILE
        self.done_path = state_dir / DONE_FILE
        self.roster = roster

    def done(self) -> dict[str, str]:
        """Round (as text) -> ciphertext hash (hex) of every confirmed upload."""
        done: dict[str, str] = (
            json.loads(self.done_path.read_text()) if self.done_path.exists() else {}
        )
        return done

    def write_ciphertext(
        self, public_key: JointPublicKey, values: F64 | I64, *, integers: bool = False
    ) -> VectorHead:
        """Encrypt ``values`` chunk by chunk into the pending chunk file; returns its head.

        Replaces an unfinished upload's chunk file; raises what
        :func:`secagg.ciphertext.encrypt_chunks` raises (the partial file is removed).
        """
        self.clear()
        digests: list[bytes] = []
        with ChunkFileWriter(self.chunks_path) as writer:
            for payload, digest in encrypt_chunks(public_key, values, integers=integers):
                writer.append(payload)
                digests.append(digest)
            head = VectorHead.build(
                public_key.params, public_key.id_bytes, int(values.size), digests
            )
            writer.finish(head.to_bytes())
        return head

    def upload(self, signed: Signed[UploadStatement], head: VectorHead) -> StoredUpload:
        """The upload of ``signed`` over the chunk file :meth:`write_ciphertext` wrote."""
        return StoredUpload(signed, head, self.chunks_path)

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
        """Keep ``upload`` durably (returns once it survives a crash).

        Its chunk file is already durable (:meth:`write_ciphertext`); the signed header,
        written last, commits it.
        """
        if upload.path != self.chunks_path:
            raise ValueError(f"{upload.path} is not the pending chunk file {self.chunks_path}")
        write_atomically(self.path, upload.header().SerializeToString())

    def load(self) -> StoredUpload | None:
        """The stored upload, checked; None if there is none (or it failed a check)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self._checked(data)
        except (SecAggError, DecodeError, OSError, ValueError) as exc:
            log.warning("discarding the stored upload %s: %s", self.path, exc)
            self.clear()
            return None

    def _checked(self, data: bytes) -> StoredUpload:
        header = pb.UploadHeader.FromString(data)
        head = VectorHead.from_bytes(header.head, self.roster.params)
        signed = UploadStatement.from_header(self.roster.deployment_id, header, head.digest)
        signed.verify(self.roster)
        with ChunkFile(self.chunks_path) as stored:
            if stored.head_bytes != header.head:
                raise ValueError("the chunk file is not the signed upload's ciphertext")
            stored.check(head)
            chunks = (stored.chunk(head, i) for i in range(head.chunk_count))
            for _ in checked_chunks(head, chunks):  # every chunk against its digest
                pass
        return StoredUpload(signed, head, self.chunks_path)

    def clear(self) -> None:
        """Delete the stored upload (durably; its header first); nothing if there is none.

        Also removes the temporary file of an encryption a crash interrupted.
        """
        remove_durably(self.path)
        remove_durably(self.chunks_path)
        for stray in self.chunks_path.parent.glob(f"{self.chunks_path.name}.tmp*"):
            remove_durably(stray)
