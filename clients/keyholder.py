"""``secagg keyholder``: a key holder's agent (key ceremony, then policy-checked decryption).

The agent keeps its Shamir share encrypted at rest (ChaCha20-Poly1305 under the key file
``storage.key`` or a scrypt-derived passphrase key) and polls the server for decryption
tasks. Before returning a partial decryption it checks, without trusting the server:

* every listed contribution is signed by a roster client over this round, its nonce, the
  global-model hash, the ciphertext hash and the weight;
* at least ``min_contributors`` distinct clients, all on the same global model;
* no client's weight exceeds ``max_weight_share`` of the total;
* the round has not been released and no other aggregate was decrypted for it;
* the aggregate equals the weighted sum of the listed ciphertexts (recomputed here from
  the downloaded inputs — O(clients x model) work per round).

A refusal is signed and reported to the server with its reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from contextlib import suppress
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from secagg import constants as C
from secagg.aggregate import Aggregator, EncryptedAggregate
from secagg.protocol.audit_log import checkpoint_digest
from secagg.ciphertext import EncryptedVector
from secagg.dkg import DkgParticipant, combine_public_key, common_seed
from secagg.errors import InvalidKeyMaterial, SecAggError, SignatureInvalid
from secagg.keys import JointPublicKey, KeyShare
from secagg._internal.modarith import pack60, unpack60
from secagg.proto import service_pb2 as pb
from secagg.protocol.sealing import decrypt_at_rest, encrypt_at_rest, open_sealed, seal_to
from secagg.protocol.signing import (
    ceremony_digest,
    partial_signature_digest,
    refusal_digest,
    sign,
    upload_digest,
    verify,
)
from secagg.threshold import partial_decrypt
from secagg.rpc.transport import Identity, identity

from clients.connection import Connection, blob_header, partial_stream, verify_release

log = logging.getLogger("secagg.keyholder")


class KeyHolder:
    """One key holder's agent."""

    def __init__(
        self, me: Identity, *, passphrase: bytes | None = None, stop: threading.Event | None = None
    ) -> None:
        self.stop = stop or threading.Event()
        self.me = me
        self.roster = me.roster
        self.params = me.roster.params
        self.index = next(k.index for k in self.roster.keyholders if k.name == me.name)
        self.n = self.roster.policy.keyholders
        self.signing_key = me.signing_key()
        self.state = me.directory / "state"
        self.state.mkdir(exist_ok=True)
        self.passphrase = passphrase
        self.conn = Connection(me, stop=self.stop)

    # ------------------------------------------------------------ share at rest
    def _storage_secret(self) -> tuple[bytes, bool]:
        if self.passphrase is not None:
            return self.passphrase, True
        return (self.me.directory / "storage.key").read_bytes(), False

    def save_share(self, share: KeyShare) -> None:
        """Encrypt the share and write it atomically (0600)."""
        secret, is_pass = self._storage_secret()
        blob = encrypt_at_rest(share.to_bytes(), secret, is_passphrase=is_pass)
        tmp = self.state / "share.enc.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state / "share.enc")

    def load_share(self) -> KeyShare | None:
        """The stored share, or None before the ceremony."""
        path = self.state / "share.enc"
        if not path.exists():
            return None
        secret, is_pass = self._storage_secret()
        return KeyShare.from_bytes(
            decrypt_at_rest(path.read_bytes(), secret, is_passphrase=is_pass), self.params
        )

    # ------------------------------------------------------------ ceremony
    def _post(self, kind: pb.CeremonyKind, body: bytes, recipient: int = 0) -> None:
        signature = sign(
            self.signing_key,
            ceremony_digest(
                deployment_id=self.roster.deployment_id,
                kind=kind,
                sender=self.index,
                recipient=recipient,
                body=body,
            ),
        )
        msg = pb.CeremonyMessage(
            kind=kind, sender=self.index, recipient=recipient, body=body, signature=signature
        )
        self.conn.call(self.conn.stub.PostCeremonyMessage, msg)

    def _collect(
        self, kind: pb.CeremonyKind, count: int, stop: threading.Event
    ) -> dict[int, pb.CeremonyMessage]:
        """Wait for ``count`` messages of a kind, each verified against the roster."""
        while not stop.is_set():
            reply = self.conn.call(self.conn.stub.GetCeremonyMessages, pb.CeremonyQuery(kind=kind))
            got: dict[int, pb.CeremonyMessage] = {}
            for m in reply.messages:
                if kind == pb.ENCRYPTED_SHARE and m.recipient != self.index:
                    continue
                verify(
                    self.roster.keyholder(m.sender).signing_public_key,
                    m.signature,
                    ceremony_digest(
                        deployment_id=self.roster.deployment_id,
                        kind=m.kind,
                        sender=m.sender,
                        recipient=m.recipient,
                        body=m.body,
                    ),
                    who=f"key holder {m.sender}",
                )
                got[m.sender] = m
            if len(got) >= count:
                return got
            time.sleep(C.POLL_SECONDS)
        raise InterruptedError("stopped during the key ceremony")

    def ceremony(self, stop: threading.Event) -> KeyShare:
        """Run the dealerless key generation through the server relay."""
        policy = self.roster.policy
        me = DkgParticipant(
            self.params, index=self.index, keyholders=self.n, threshold=policy.threshold
        )
        self._post(pb.SEED_COMMIT, me.commitment())
        commits = {i: m.body for i, m in self._collect(pb.SEED_COMMIT, self.n, stop).items()}
        self._post(pb.SEED_REVEAL, me.reveal())
        reveals = {i: m.body for i, m in self._collect(pb.SEED_REVEAL, self.n, stop).items()}
        seed = common_seed(commits, reveals)
        self._post(pb.KEY_CONTRIBUTION, pack60(me.public_key_contribution(seed)))
        k, n = len(self.params.coeff_modulus), self.params.poly_modulus_degree
        contributions = {
            i: unpack60(m.body, k * n).reshape(k, n)
            for i, m in self._collect(pb.KEY_CONTRIBUTION, self.n, stop).items()
        }
        public_key = combine_public_key(
            self.params, seed, contributions, keyholders=self.n, threshold=policy.threshold
        )
        outgoing = me.outgoing_shares()

        def context_of(sender: int, recipient: int) -> bytes:
            route = f"{self.roster.deployment_id}/{sender}->{recipient}".encode()
            return route + public_key.id_bytes

        for j, piece in outgoing.items():
            if j == self.index:
                continue
            rcpt = X25519PublicKey.from_public_bytes(self.roster.keyholder(j).exchange_public_key)
            eph, nonce, ct = seal_to(rcpt, pack60(piece), context=context_of(self.index, j))
            sealed = pb.SealedShare(ephemeral_public_key=eph, nonce=nonce, ciphertext=ct)
            self._post(pb.ENCRYPTED_SHARE, sealed.SerializeToString(), recipient=j)
        received = {self.index: outgoing[self.index]}
        exchange = self.me.exchange_key()
        width = len(self.params.data_primes) * n
        for sender, m in self._collect(pb.ENCRYPTED_SHARE, self.n - 1, stop).items():
            sealed = pb.SealedShare()
            sealed.ParseFromString(m.body)
            plain = open_sealed(
                exchange,
                sealed.ephemeral_public_key,
                sealed.nonce,
                sealed.ciphertext,
                context=context_of(sender, self.index),
            )
            if len(plain) != width * 60 // 8:
                raise InvalidKeyMaterial(f"share from key holder {sender} has the wrong size")
            received[sender] = unpack60(plain, width).reshape(len(self.params.data_primes), n)
        share = me.finalize(received, public_key)
        self.save_share(share)
        self._post(pb.ENDORSEMENT, public_key.id_bytes)
        log.info(
            "key holder %d: ceremony done, joint public key %s", self.index, public_key.id[:16]
        )
        return share

    # ------------------------------------------------------------ decryption
    def _decrypted(self) -> dict[str, str]:
        path = self.state / "decrypted.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _remember(self, rnd: int, digest: bytes) -> None:
        record = self._decrypted()
        record[str(rnd)] = digest.hex()
        tmp = self.state / "decrypted.json.tmp"
        with open(tmp, "w") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state / "decrypted.json")

    def check_policy(
        self, task: pb.DecryptionTask, public_key_id: bytes
    ) -> tuple[str | None, EncryptedAggregate | None]:
        """Return (reason to refuse or None, the verified aggregate)."""
        policy = self.roster.policy
        contribs = list(task.contributions)
        clients = {c.client_id for c in contribs}
        if len(clients) != len(contribs):
            return "the same client is listed twice", None
        if len(clients) < policy.min_contributors:
            return (
                f"{len(clients)} contributor(s); the policy requires at least "
                f"{policy.min_contributors}",
                None,
            )
        for c in contribs:
            try:
                verify(
                    self.roster.client(c.client_id).signing_public_key,
                    c.signature,
                    upload_digest(
                        deployment_id=self.roster.deployment_id,
                        round_number=task.round,
                        client_id=c.client_id,
                        nonce=c.nonce,
                        global_model_hash=c.global_model_hash,
                        ciphertext_hash=c.ciphertext_hash,
                        weight=c.weight,
                        epsilon=c.epsilon,
                    ),
                    who=c.client_id,
                )
            except (SignatureInvalid, SecAggError) as exc:
                return f"contribution of {c.client_id}: {exc}", None
        if len({c.global_model_hash for c in contribs}) != 1:
            return "contributors trained from different global models", None
        total = sum(c.weight for c in contribs)
        heaviest = max(c.weight for c in contribs)
        if total == 0 or heaviest > policy.max_weight_share * total:
            return (
                f"a client holds {heaviest}/{total} of the weight; cap {policy.max_weight_share}",
                None,
            )
        info = self.conn.call(self.conn.stub.GetRound, pb.Empty())
        if info.round == task.round and info.state == pb.COLLECTING:
            return f"round {task.round} is still collecting uploads", None
        done = self._decrypted().get(str(task.round))
        if done is not None and done != task.aggregate_digest.hex():
            return f"round {task.round} was already decrypted with another aggregate", None
        try:
            rel = self.conn.stub.GetRelease(
                pb.ReleaseQuery(round=task.round), timeout=C.RPC_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            try:
                verify_release(rel, self.roster)
                return f"round {task.round} was already decrypted and released", None
            except SignatureInvalid:
                pass
        aggregate = EncryptedAggregate.from_bytes(
            self.conn.download(task.aggregate_hash), self.params
        )
        if aggregate.digest != task.aggregate_digest:
            return "aggregate digest does not match the task", None
        recomputed = Aggregator(
            self.params, public_key_id=public_key_id, length=aggregate.vector.length
        )
        for c in contribs:
            blob = self.conn.download(c.ciphertext_hash)
            recomputed.add(EncryptedVector.from_bytes(blob, self.params), c.weight)
        if recomputed.result().digest != aggregate.digest:
            return "aggregate does not equal the weighted sum of the listed uploads", None
        return None, aggregate

    def handle(self, task: pb.DecryptionTask, share: KeyShare) -> None:
        """Answer one task, keeping the server informed that this key holder is alive."""
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(C.POLL_SECONDS * 3):
                with suppress(grpc.RpcError):
                    self.conn.stub.GetRound(pb.Empty(), timeout=C.RPC_TIMEOUT_SECONDS)

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            self._answer(task, share)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            log.warning(
                "key holder %d: task %d dropped: %s", self.index, task.task_id, exc.details()
            )
        finally:
            done.set()
            beat.join()

    def _answer(self, task: pb.DecryptionTask, share: KeyShare) -> None:
        """A signed partial decryption, or a signed refusal."""
        try:
            reason, aggregate = self.check_policy(task, share.public_key_id)
        except SecAggError as exc:
            reason, aggregate = f"invalid task: {exc}", None
        if reason is not None or aggregate is None:
            reason = reason or "invalid task"
            log.warning("key holder %d refuses round %d: %s", self.index, task.round, reason)
            sig = sign(
                self.signing_key,
                refusal_digest(
                    deployment_id=self.roster.deployment_id,
                    round_number=task.round,
                    keyholder=self.index,
                    reason=reason,
                ),
            )
            self.conn.call(
                self.conn.stub.RefuseTask,
                pb.Refusal(
                    task_id=task.task_id,
                    round=task.round,
                    keyholder=self.index,
                    reason=reason,
                    signature=sig,
                ),
            )
            return
        part = partial_decrypt(share, aggregate, quorum=list(task.quorum))
        self._remember(task.round, aggregate.digest)
        blob = part.to_bytes()
        sig = sign(
            self.signing_key,
            partial_signature_digest(
                deployment_id=self.roster.deployment_id,
                round_number=task.round,
                keyholder=self.index,
                partial_digest=part.digest,
                aggregate_digest=aggregate.digest,
            ),
        )
        cosignature = sign(
            self.signing_key,
            checkpoint_digest(
                deployment_id=self.roster.deployment_id, size=task.log_size, head=task.log_head
            ),
        )
        header = pb.PartialHeader(
            task_id=task.task_id,
            round=task.round,
            keyholder=self.index,
            blob=blob_header(blob),
            signature=sig,
            checkpoint_signature=cosignature,
        )
        self.conn.call(
            lambda _, timeout: self.conn.stub.SubmitPartial(
                partial_stream(header, blob), timeout=timeout
            ),
            None,
            timeout=C.TRANSFER_TIMEOUT_SECONDS,
        )
        log.info("key holder %d: partial decryption for round %d sent", self.index, task.round)

    def run(self) -> None:
        """Ceremony if needed, then answer tasks until stopped."""
        try:
            self._run()
        except (grpc.RpcError, InterruptedError):
            if not self.stop.is_set():
                raise

    def _run(self) -> None:
        stop = self.stop
        share = self.load_share() or self.ceremony(stop)
        bundle_key = JointPublicKey.from_bytes(
            self.conn.call(self.conn.stub.GetPublicKey, pb.Empty()).public_key, self.params
        )
        if bundle_key.id_bytes != share.public_key_id:
            raise InvalidKeyMaterial("the server publishes another joint public key than ours")
        while not stop.is_set():
            task = self.conn.call(self.conn.stub.GetDecryptionTask, pb.Empty())
            if task.pending:
                self.handle(task, share)
            else:
                stop.wait(C.POLL_SECONDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg keyholder``."""
    parser.add_argument("deployment", type=Path)
    parser.add_argument("--index", type=int, required=True, help="key-holder index (1..n)")
    parser.add_argument("--passphrase-env", help="read the share passphrase from this variable")


def run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT."""
    import signal

    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s kh{args.index} %(levelname)s %(message)s"
    )
    me = identity(args.deployment, f"kh{args.index}")
    passphrase = os.environ[args.passphrase_env].encode() if args.passphrase_env else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    KeyHolder(me, passphrase=passphrase, stop=stop).run()
    return 0
