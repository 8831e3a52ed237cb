"""A key holder's partial decryptions as files: computed chunk by chunk, streamed from disk.

:func:`write_partial` partially decrypts the key holder's own aggregate file, one chunk
of ``c1`` at a time (:func:`secagg.chunked_threshold.partial_chunks`), into a chunk file
of its :class:`~clients.keyholder.record.DecryptionRecord`, signs the partial's digest
and keeps the answer. :func:`submit_partial` streams a kept answer to the server, one
chunk at a time, the same bytes on every retry.

Security
--------
The caller checked the task, charged the decryption budget and retired older keys
before :func:`write_partial`; the ciphertexts and the answer are recorded durably
before it returns, hence before anything is sent (crash ordering of
:mod:`clients.keyholder.record`). Memory: one chunk, whatever the model size.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.connection import Connection, partial_stream
from clients.keyholder.aggregates import aggregate_chunks
from clients.keyholder.checks import Recomputed
from clients.keyholder.record import Decryption, DecryptionRecord, StoredAnswer
from secagg.chunk_file import ChunkFile
from secagg.chunked import PartialHead
from secagg.chunked_threshold import partial_chunks
from secagg.keys import KeyShare
from secagg.params import Parameters
from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import PartialStatement, Signed


def write_partial(
    record: DecryptionRecord,
    share: KeyShare,
    task: pb.DecryptionTask,
    recomputed: Recomputed,
    *,
    deployment_id: str,
    signing_key: Ed25519PrivateKey,
) -> StoredAnswer:
    """Partially decrypt the recomputed aggregate for the task's quorum, sign it, record
    the decryption (ciphertexts, ε) and keep the answer durably; the kept answer."""
    aggregate = recomputed.head
    decryption = Decryption(task.round, aggregate.digest)
    with record.answer_writer(decryption, task.quorum) as out:
        c1 = (residues[:, 1] for residues in aggregate_chunks(aggregate, recomputed.path))
        head = partial_chunks(share, aggregate, list(task.quorum), c1, out)
        statement = PartialStatement(
            deployment_id=deployment_id,
            round=task.round,
            keyholder=share.index,
            partial_digest=head.digest,
            aggregate_digest=aggregate.digest,
        )
        signature = Signed.create(statement, signing_key).signature
        epsilons = {c.client_id: c.epsilon for c in task.contributions}  # checked before
        record.remember(decryption, recomputed.ciphertext_digests, epsilons)
        return record.keep_answer(decryption, out, head, signature)


def submit_partial(
    conn: Connection,
    params: Parameters,
    answer: StoredAnswer,
    header: pb.PartialHeader,
    *,
    timeout: float,
) -> None:
    """Stream the kept ``answer`` after ``header`` (which gets the partial's head).

    Raises ValueError if the answer's file is not the partial that was signed.
    """
    with ChunkFile(answer.path) as file:
        head = PartialHead.from_bytes(file.head_bytes, params)
        if head.digest != answer.partial_digest:
            raise ValueError(f"{answer.path} is not the partial that was signed")
        header.head = file.head_bytes

        def submit(_: object, timeout: float) -> pb.Ack:
            chunks = (file.chunk(head, i) for i in range(head.chunk_count))  # per attempt
            ack: pb.Ack = conn.stub.SubmitPartial(partial_stream(header, chunks), timeout=timeout)
            return ack

        conn.call(submit, None, timeout=timeout)
