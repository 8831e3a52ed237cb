"""Uploads built by the test process exactly as ``clients/client.py`` builds them.

An upload is an :class:`~secagg.protocol.statements.UploadStatement` signed with the
client's roster key (:class:`~secagg.protocol.statements.Signed`) and turned into the
header with :meth:`~secagg.protocol.statements.UploadStatement.to_header`: the test
shares the statement type with the client, the server and the auditor, so there is no
hand-written copy of the signed fields to drift (an earlier copy dropped ``epsilon``).

The ciphertext travels as the client sends it: the head
(:class:`~secagg.chunked.VectorHead` bytes, in the header) whose digest the client signs
as ``ciphertext_hash``, then one message per chunk. A :class:`Ciphertext` holds both;
a test can change one field of the header at a time (:func:`signed_upload`), send chunks
it chooses (:meth:`Ciphertext.with_chunks`, or any list to
:meth:`~tests.integration._harness.Deployment.upload`), or a head that is not one
(:meth:`Ciphertext.raw`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.connection import upload_stream
from secagg import constants as C
from secagg.chunked import VectorHead
from secagg.ciphertext import encrypt_chunks
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import Signed, UploadStatement

#: Header fields a test may override that are not statement fields -> statement field.
_HEADER_ALIASES = {"sha256": "ciphertext_hash"}

#: Header (with the head) first, then one message per chunk (the client's own stream).
upload_requests = upload_stream


@dataclass(frozen=True)
class Ciphertext:
    """An upload's ciphertext as it is streamed: head bytes, chunk payloads, and the digest
    a client signs for it. Iterating over it gives the chunks (what follows the header)."""

    head: bytes
    chunks: tuple[bytes, ...]
    digest: bytes

    @classmethod
    def encrypt(
        cls, key: JointPublicKey, values: np.ndarray, *, integers: bool = False
    ) -> Ciphertext:
        """Encrypt ``values`` chunk by chunk, as the client does
        (:func:`secagg.ciphertext.encrypt_chunks`)."""
        payloads, digests = [], []
        for payload, digest in encrypt_chunks(key, values, integers=integers):
            payloads.append(payload)
            digests.append(digest)
        head = VectorHead.build(key.params, key.id_bytes, len(values), digests)
        return cls(head.to_bytes(), tuple(payloads), head.digest)

    @classmethod
    def raw(
        cls, head: bytes, chunks: Sequence[bytes] = (), digest: bytes | None = None
    ) -> Ciphertext:
        """Any bytes as the head (and chunks); the signed digest defaults to the head's SHA-256
        (a junk upload: correct header and signature, no valid ciphertext)."""
        return cls(head, tuple(chunks), hashlib.sha256(head).digest() if digest is None else digest)

    def with_chunks(self, chunks: Sequence[bytes]) -> Ciphertext:
        """The same head and signed digest, followed by ``chunks`` (reordered, duplicated,
        truncated, corrupted: whatever the test chooses)."""
        return dataclasses.replace(self, chunks=tuple(chunks))

    @property
    def size(self) -> int:
        """Bytes of all chunks."""
        return sum(len(c) for c in self.chunks)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)


def signed_upload(
    deployment_id: str,
    signing_key: Ed25519PrivateKey,
    client: str,
    info: pb.RoundInfo,
    ciphertext: Ciphertext,
    *,
    weight: int,
    **overrides: Any,
) -> pb.UploadHeader:
    """The header of a signed upload of ``ciphertext`` for ``info``'s round.

    ``overrides`` change statement fields (``round``, ``nonce``, ``global_model_hash``,
    ``weight``, ``epsilon``, ``dp``, ``client_id``, ``sha256``/``ciphertext_hash``)
    *before* signing, so the signature stays valid over the changed fields; ``head``
    replaces the head bytes the header carries (not signed: its digest is).
    """
    head = bytes(overrides.pop("head", ciphertext.head))
    fields = {_HEADER_ALIASES.get(name, name): value for name, value in overrides.items()}
    statement = dataclasses.replace(
        UploadStatement(
            deployment_id=deployment_id,
            round=info.round,
            client_id=client,
            nonce=os.urandom(C.UPLOAD_NONCE_BYTES),
            global_model_hash=info.global_model_hash,
            ciphertext_hash=ciphertext.digest,
            weight=weight,
        ),
        **fields,
    )
    upload = Signed.create(statement, signing_key)
    return statement.to_header(upload.signature, head=head)
