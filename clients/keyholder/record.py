"""What a key holder locked, decrypted and answered, durable across restarts.

Four things, all in the key holder's state directory
(:meth:`~secagg.protocol.layout.DeploymentLayout.state_dir`):

``decrypted.json``
    round -> digest of the one aggregate of that round this key holder locked (and
    possibly decrypted); a second, different aggregate of the round is refused, for a
    lock as for a decryption (``AlreadyDecrypted``). The name predates locks.
``ciphertexts.json``
    content digest (:attr:`~secagg.ciphertext.EncryptedVector.digest`) of every
    ciphertext this key holder decrypted over -> the (round, aggregate) it was part of;
    a task listing one of them in any other (round, aggregate) is refused
    (``ReplayedCiphertext``): a replay across rounds.
``epsilons.json``
    client -> round -> the ε it signed in the uploads of the rounds this key holder locked;
    a task in which a client reports less than in an earlier such round is refused
    (``EpsilonDecreased``, the shared policy's
    :func:`~secagg.protocol.policy.check_epsilon_progress`).
``answers/``
    per partial decryption sent, its chunk file (``.chunks``, :mod:`secagg.chunk_file`)
    and a metadata file (``.json``: digest and signature), keyed by (round, aggregate
    digest, quorum). A retry of the same task gets the same file streamed back, byte
    for byte, never a partial with fresh flooding noise.

Security
--------
Crash ordering, which :class:`~clients.keyholder.agent.KeyHolder` follows: after the
checks, (1) :meth:`DecryptionRecord.remember` the ciphertexts, then the round; (2)
:meth:`DecryptionRecord.keep_answer` the partial (its chunk file, then its metadata);
(3) only then send it. Every file is written to a temporary name, fsync'd, renamed,
and the directory fsync'd. A crash before (2) completes sent nothing (an answer counts
only once its metadata is there), so the retry computing a fresh partial still sends
exactly one; a crash after (2) resends the stored file.

The record is only as good as the state directory: a key holder whose state is lost or
rolled back forgets what it decrypted. Content digests, not blob hashes, are recorded,
so a ciphertext re-encoded to another blob hash is still recognised; a ciphertext
*modified* homomorphically (another ciphertext of a related plaintext) is not — that
needs zero-knowledge proofs of well-formed encryption, which the project lacks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from clients.keyholder.storage import fsync_directory, write_atomically
from secagg.chunk_file import ChunkFileWriter
from secagg.chunked import PartialHead
from secagg.errors import ConfigError

DECRYPTED_FILE = "decrypted.json"
CIPHERTEXTS_FILE = "ciphertexts.json"
EPSILONS_FILE = "epsilons.json"
ANSWERS_DIR = "answers"
#: An answer kept by a version before chunked partials (never resent, never replaced).
LEGACY_SUFFIX = ".partial"
CHUNKS_SUFFIX = ".chunks"


@dataclass(frozen=True)
class Decryption:
    """One decryption a key holder took part in: the round and the aggregate's digest."""

    round: int
    aggregate_digest: bytes


@dataclass(frozen=True)
class StoredAnswer:
    """A partial decryption exactly as it was sent: its chunk file, digest and signature."""

    decryption: Decryption
    quorum: tuple[int, ...]
    partial_digest: bytes
    signature: bytes
    path: Path  # the partial's chunk file (:mod:`secagg.chunk_file`)

    def to_bytes(self) -> bytes:
        """The answer's metadata, one JSON object (the chunk file lies beside it)."""
        return json.dumps(
            {
                "round": self.decryption.round,
                "aggregate_digest": self.decryption.aggregate_digest.hex(),
                "quorum": list(self.quorum),
                "partial_digest": self.partial_digest.hex(),
                "signature": self.signature.hex(),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes, path: Path) -> StoredAnswer:
        """Read :meth:`to_bytes` of the answer whose chunk file is ``path``
        (raises ValueError on a damaged file)."""
        try:
            fields = json.loads(data)
            decryption = Decryption(int(fields["round"]), bytes.fromhex(fields["aggregate_digest"]))
            quorum = tuple(int(i) for i in fields["quorum"])
            digest = bytes.fromhex(fields["partial_digest"])
            signature = bytes.fromhex(fields["signature"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"damaged answer record: {exc}") from None
        return cls(decryption, quorum, digest, signature, path)


def normal_quorum(quorum: Iterable[int]) -> tuple[int, ...]:
    """A quorum as :func:`secagg.threshold.partial_decrypt` uses it: sorted, distinct."""
    return tuple(sorted({int(i) for i in quorum}))


class DecryptionRecord:
    """A key holder's durable record of its decryptions (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.answers_dir = state_dir / ANSWERS_DIR

    def _read_json(self, name: str) -> dict[str, object]:
        path = self.state_dir / name
        if not path.exists():
            return {}
        record: dict[str, object] = json.loads(path.read_text())
        return record

    # ------------------------------------------------------------ decryptions
    def decrypted(self) -> dict[int, bytes]:
        """Round -> digest of the aggregate this key holder locked the round to."""
        return {int(r): bytes.fromhex(str(d)) for r, d in self._read_json(DECRYPTED_FILE).items()}

    def seen_ciphertexts(self) -> dict[bytes, Decryption]:
        """Content digest of every ciphertext decrypted over -> where it was decrypted."""
        seen: dict[bytes, Decryption] = {}
        for digest, where in self._read_json(CIPHERTEXTS_FILE).items():
            rnd, aggregate = where if isinstance(where, list) else (None, None)
            seen[bytes.fromhex(digest)] = Decryption(int(str(rnd)), bytes.fromhex(str(aggregate)))
        return seen

    def epsilon_before(self, client: str, round_number: int) -> float | None:
        """The largest ε ``client`` signed in a round before ``round_number`` locked here."""
        rounds = self._read_json(EPSILONS_FILE).get(client, {})
        assert isinstance(rounds, dict)
        earlier = [float(e) for r, e in rounds.items() if int(r) < round_number]
        return max(earlier, default=None)

    def remember(
        self,
        decryption: Decryption,
        ciphertext_digests: Iterable[bytes],
        epsilons: Mapping[str, float] | None = None,
    ) -> None:
        """Record, durably, a decryption, the ciphertexts its aggregate sums and the ε each
        contributor signed (``epsilons``: client -> ε).

        The ciphertexts and epsilons are written first: a crash between the writes leaves
        them recorded (stricter), never a round without its ciphertexts.
        """
        if epsilons:
            record = self._read_json(EPSILONS_FILE)
            for client, eps in epsilons.items():
                rounds = record.setdefault(client, {})
                assert isinstance(rounds, dict)
                rounds[str(decryption.round)] = eps
            write_atomically(self.state_dir / EPSILONS_FILE, json.dumps(record).encode())
        seen = {
            d.hex(): [r.round, r.aggregate_digest.hex()] for d, r in self.seen_ciphertexts().items()
        }
        for digest in ciphertext_digests:
            seen.setdefault(digest.hex(), [decryption.round, decryption.aggregate_digest.hex()])
        write_atomically(self.state_dir / CIPHERTEXTS_FILE, json.dumps(seen).encode())
        rounds = {str(r): d.hex() for r, d in self.decrypted().items()}
        rounds[str(decryption.round)] = decryption.aggregate_digest.hex()
        write_atomically(self.state_dir / DECRYPTED_FILE, json.dumps(rounds).encode())

    # ------------------------------------------------------------ answers
    def _answer_path(self, decryption: Decryption, quorum: tuple[int, ...]) -> Path:
        """The answer's metadata file; its chunk file has the suffix ``.chunks``."""
        members = "-".join(str(i) for i in quorum)
        name = f"r{decryption.round}-{decryption.aggregate_digest.hex()}-q{members}.json"
        return self.answers_dir / name

    def answer(self, decryption: Decryption, quorum: Iterable[int]) -> StoredAnswer | None:
        """The partial sent for this decryption and quorum, or None if none was stored."""
        q = normal_quorum(quorum)
        path = self._answer_path(decryption, q)
        if path.with_suffix(LEGACY_SUFFIX).exists():
            raise ConfigError(
                f"{path.with_suffix(LEGACY_SUFFIX)} is this task's answer in the format of an "
                "earlier version (one message, before chunked partials); it cannot be resent "
                "byte for byte, and a new partial would carry fresh flooding noise: refused"
            )
        if not path.exists():
            return None
        stored = StoredAnswer.from_bytes(path.read_bytes(), path.with_suffix(CHUNKS_SUFFIX))
        if (stored.decryption, stored.quorum) != (decryption, q):
            raise ValueError(f"{path} holds the answer to another task")
        if not stored.path.exists():
            raise ValueError(f"{stored.path}, the partial of {path.name}, is missing")
        return stored

    def answer_writer(self, decryption: Decryption, quorum: Iterable[int]) -> ChunkFileWriter:
        """A (private) chunk file writer for the partial of this decryption and quorum;
        :meth:`keep_answer` finishes it."""
        if not self.answers_dir.is_dir():
            self.answers_dir.mkdir(mode=0o700)
            fsync_directory(self.state_dir)
        path = self._answer_path(decryption, normal_quorum(quorum)).with_suffix(CHUNKS_SUFFIX)
        writer = ChunkFileWriter(path)
        os.chmod(writer.tmp, 0o600)
        return writer

    def keep_answer(
        self,
        decryption: Decryption,
        writer: ChunkFileWriter,
        head: PartialHead,
        signature: bytes,
    ) -> StoredAnswer:
        """Store, durably, the partial about to be sent (before it is sent): the chunk file
        ``writer`` holds, finished with ``head``, then its metadata."""
        path = writer.finish(head.to_bytes())
        answer = StoredAnswer(decryption, normal_quorum(head.quorum), head.digest, signature, path)
        write_atomically(self._answer_path(decryption, answer.quorum), answer.to_bytes())
        return answer
