"""A key holder's channel to the ceremony relay: signed posts, verified and remembered reads.

Every message this key holder reads is verified as a message of the kind, key epoch and
recipient it asked for, before its body is looked at; a message the relay put under the
wrong kind or epoch is the server's doing and names nobody. Every verified body is
remembered per (kind, sender): a sender whose second signed message of a kind differs
from its first is named (it signed both, so it equivocated), and the remembered bodies
are what the key holders' TRANSCRIPT hashes (:mod:`clients.keyholder.transcript`).

Security
--------
Only a signature verified over the requested kind, epoch and recipient lets a body reach
a decoder (whose failure names the signer, :func:`clients.keyholder.ceremony._decoded`):
the server cannot get an honest key holder named by relaying one of its genuine messages
of another kind (a SEED_COMMIT as its KEY_COMMIT) or epoch. Naming a sender for two
conflicting messages needs both signatures; the server cannot forge either. Caveat: an
honest key holder restarted mid-ceremony signs a second, different message of a phase it
had posted (its DKG secrets were in memory only); a server relaying both gets it named.
It cannot finish that epoch in any case (see :mod:`clients.keyholder.ceremony`).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import KW_ONLY, dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.connection import Connection
from secagg import constants as C
from secagg.errors import CeremonyAborted, ReplayDetected, TranscriptMismatch
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CeremonyStatement, Signed


def _kind_name(kind: int) -> str:
    try:
        return pb.CeremonyKind.Name(kind)
    except ValueError:
        return f"unknown kind {kind}"


@dataclass(eq=False)
class CeremonyRelay:
    """Signed ceremony messages posted to and collected from the server.

    Messages go out as key holder ``index`` in key epoch ``epoch``, signed with
    ``signing_key``; received ones are verified against ``roster`` as messages of the
    requested kind in ``epoch`` (a message of another epoch is refused: no replay across
    ceremonies).
    """

    conn: Connection
    roster: Roster
    _: KW_ONLY
    index: int
    signing_key: Ed25519PrivateKey
    epoch: int = 1
    _seen: dict[tuple[int, int], bytes] = field(default_factory=dict, repr=False)

    def post(self, kind: pb.CeremonyKind, body: bytes, recipient: int = 0) -> None:
        """Sign and post one message."""
        message = Signed.create(
            CeremonyStatement.of_body(
                self.roster.deployment_id,
                kind=kind,
                sender=self.index,
                recipient=recipient,
                body=body,
                epoch=self.epoch,
            ),
            self.signing_key,
        )
        self.conn.call(
            self.conn.stub.PostCeremonyMessage, message.statement.to_proto(body, message.signature)
        )

    def collect(self, kind: pb.CeremonyKind, count: int, stop: threading.Event) -> dict[int, bytes]:
        """Sender -> body of ``count`` messages of ``kind``, each verified against the roster.

        Shares addressed to other key holders are skipped. Raises ReplayDetected on a
        message of another epoch and :class:`CeremonyAborted` (no culprit) on one of
        another kind, both before reading anything else of it; SignatureInvalid or
        UnknownParty on a message that does not verify as ``kind`` of this epoch (to
        this key holder, for shares); :class:`TranscriptMismatch` naming a sender that
        signed two different bodies of ``kind``; InterruptedError once ``stop`` is set.
        """
        query = pb.CeremonyQuery(kind=kind, epoch=self.epoch)
        recipient = self.index if kind == pb.ENCRYPTED_SHARE else 0
        while not stop.is_set():
            reply = self.conn.call(self.conn.stub.GetCeremonyMessages, query)
            bodies: dict[int, bytes] = {}
            for m in reply.messages:
                if kind == pb.ENCRYPTED_SHARE and m.recipient != self.index:
                    continue
                self._require_requested(m, kind)
                statement = CeremonyStatement.of_body(
                    self.roster.deployment_id,
                    kind=kind,
                    sender=m.sender,
                    recipient=recipient,
                    body=m.body,
                    epoch=self.epoch,
                )
                Signed(statement, m.signature).verify(self.roster)
                self._remember(kind, m.sender, m.body)
                bodies[m.sender] = m.body
            if len(bodies) >= count:
                return bodies
            stop.wait(C.POLL_SECONDS)
        raise InterruptedError("stopped during the key ceremony")

    def _require_requested(self, m: pb.CeremonyMessage, kind: int) -> None:
        """Refuse a message relayed under another epoch or kind (the relay's doing)."""
        if m.epoch != self.epoch:
            raise ReplayDetected(
                f"a ceremony message of key epoch {m.epoch} relayed into epoch {self.epoch}"
            )
        if m.kind != kind:
            raise CeremonyAborted(
                f"key holder {self.index}: the server relayed a {_kind_name(m.kind)} message "
                f"as a {_kind_name(kind)} (the server's doing)"
            )

    def _remember(self, kind: int, sender: int, body: bytes) -> None:
        """Keep a verified body; a second, different one proves its sender equivocated."""
        first = self._seen.setdefault((kind, sender), body)
        if first != body:
            raise TranscriptMismatch(
                f"key holder {self.index}: key holder {sender} signed two different "
                f"{_kind_name(kind)} messages of key epoch {self.epoch}",
                culprits=(sender,),
            )

    def digests(self, kind: int) -> dict[int, bytes]:
        """Sender -> SHA-256 of every verified body of ``kind`` (shares to this key holder)."""
        return {s: hashlib.sha256(b).digest() for (k, s), b in self._seen.items() if k == kind}
