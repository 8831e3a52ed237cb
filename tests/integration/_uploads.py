"""Uploads built by the test process exactly as ``clients/client.py`` builds them.

An upload is an :class:`~secagg.protocol.statements.UploadStatement` signed with the
client's roster key (:class:`~secagg.protocol.statements.Signed`) and turned into the
header with :meth:`~secagg.protocol.statements.UploadStatement.to_header`: the test
shares the statement type with the client, the server and the auditor, so there is no
hand-written copy of the signed fields to drift (an earlier copy dropped ``epsilon``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.connection import upload_stream
from secagg import constants as C
from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import Signed, UploadStatement

#: Header fields a test may override that are not statement fields -> statement field.
_HEADER_ALIASES = {"sha256": "ciphertext_hash"}

#: Header first, then 1 MiB chunks (the client's own stream).
upload_requests = upload_stream


def signed_upload(
    deployment_id: str,
    signing_key: Ed25519PrivateKey,
    client: str,
    info: pb.RoundInfo,
    blob: bytes,
    *,
    weight: int,
    **overrides: Any,
) -> pb.UploadHeader:
    """The header of a signed upload of ``blob`` for ``info``'s round.

    ``overrides`` change statement fields (``round``, ``nonce``, ``global_model_hash``,
    ``weight``, ``epsilon``, ``client_id``, ``sha256``/``ciphertext_hash``) *before*
    signing, so the signature stays valid over the changed fields; ``total_size``
    changes only the announced size of the stream (it is not signed).
    """
    total_size = int(overrides.pop("total_size", len(blob)))
    fields = {_HEADER_ALIASES.get(name, name): value for name, value in overrides.items()}
    statement = dataclasses.replace(
        UploadStatement(
            deployment_id=deployment_id,
            round=info.round,
            client_id=client,
            nonce=os.urandom(C.UPLOAD_NONCE_BYTES),
            global_model_hash=info.global_model_hash,
            ciphertext_hash=hashlib.sha256(blob).digest(),
            weight=weight,
        ),
        **fields,
    )
    upload = Signed.create(statement, signing_key)
    return statement.to_header(upload.signature, total_size=total_size)
