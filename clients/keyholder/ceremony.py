"""The key holder's side of the dealerless key ceremony, relayed by the server.

Phases (every message signed by its sender as a
:class:`~secagg.protocol.statements.CeremonyStatement`, every received one verified
against the roster as the kind, epoch and recipient asked for before it is used,
:mod:`clients.keyholder.ceremony_relay`):

0. EXCHANGE_KEY: a fresh X25519 key pair of this ceremony, generated in memory; its
   public half is posted first, signed (so bound to the deployment and key epoch);
1. SEED_COMMIT, then SEED_REVEAL: the key holders agree on a common random seed;
2. KEY_COMMIT: each commits to its contribution ``b_i`` (which depends on the seed) and
   to the Shamir share it will send each key holder, and collects all ``n`` commitments
   before it reveals anything (it does not rely on the server's phase order);
3. KEY_CONTRIBUTION: each posts ``b_i``; everyone checks every ``b_i`` against its
   commitment and combines the joint public key;
4. TRANSCRIPT: each posts the hash of every EXCHANGE_KEY, SEED_COMMIT, SEED_REVEAL,
   KEY_COMMIT and KEY_CONTRIBUTION it used (:func:`secagg.protocol.ceremony.transcript_hash`)
   and compares all ``n``; on a difference it aborts (:class:`~secagg.errors.TranscriptMismatch`)
   naming nobody: the server or a key holder showed key holders different messages, and
   a key holder named for it would be named on the server's word. (A key holder that
   signed two different messages of one kind and both reached this one is named, by
   the relay channel.) Nothing secret has been sent yet;
5. ENCRYPTED_SHARE: each seals a Shamir share of its secret to every other key holder's
   ceremony exchange key, bound to the route, the joint public key and the agreed
   transcript; the recipient checks it against the sender's commitment. Once the shares
   are opened the exchange key's private half is dropped. Since every key holder saw the
   same commitments, contributions and exchange keys, a share that fails to open or to
   match its commitment is its sender's fault, and names it;
6. TEST_CIPHERTEXT, TEST_PARTIAL: the test decryption of :mod:`secagg.keycheck` (every
   row of every key holder's probe under every test subset);
7. ENDORSEMENT: only if every check passed, and once its own share is stored, each key
   holder signs the joint key's id.

Any failed check raises :class:`~secagg.errors.CeremonyAborted` (a child names the
check) with the key holders that may have deviated; nothing is endorsed.

Bodies are built and read with the codecs of :mod:`secagg.protocol.ceremony`.

Security
--------
The server only relays: it cannot forge a message (signatures), read a share (sealed to
the recipient's exchange key of this ceremony) or move a share to another route, key
or transcript (context). Forward secrecy: the exchange key lives in memory for one
ceremony, so a later copy of a key holder's directory, with the sealed shares the
server kept, opens nothing. A key holder restarted mid-ceremony has lost its exchange
key and its DKG secrets (it cannot finish that epoch; that was already so with a static
exchange key, since ``s_i``, ``e_i`` and ``f_i`` were never stored): the server refuses
its new messages of a phase it posted, and the operator starts a new epoch with
``secagg admin rotate-key``. Equivocation (a key holder signing two KEY_COMMITs, the
server showing each to some) is caught by the transcript before any share is sealed.
A key holder cannot choose its ``b_i`` after seeing the others' (commitments), so no
one can steer the joint key to a secret it knows; a key holder sending shares that do
not fit its ``b_i`` fails the test decryption. What remains (no proofs of knowledge of
``s_i``, ``e_i``) is in :mod:`secagg.keycheck` and the threat model. The received shares
``f_i(j)`` are dropped once the partials are computed (Python cannot wipe them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from clients.keyholder.ceremony_relay import CeremonyRelay
from secagg.dkg import DkgParticipant, combine_public_key, common_seed
from secagg.errors import (
    CeremonyAborted,
    CommitmentMismatch,
    InvalidKeyMaterial,
    TranscriptMismatch,
)
from secagg.keycheck import check_probes, make_probe, probe_partials
from secagg.keys import JointPublicKey, KeyShare
from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.sealing import open_sealed, seal_to

__all__ = ["CeremonyRelay", "run_ceremony"]

log = logging.getLogger("secagg.keyholder")

X = TypeVar("X")
#: Residues (a contribution ``b_i`` or a share ``f_i(j)``), as :mod:`secagg.dkg` holds them.
U64 = npt.NDArray[np.uint64]


def _decoded(bodies: dict[int, bytes], decode: Callable[[int, bytes], X]) -> dict[int, X]:
    """Every sender's body decoded; a body that does not decode aborts, naming its sender."""
    out = {}
    for sender, body in bodies.items():
        try:
            out[sender] = decode(sender, body)
        except InvalidKeyMaterial as exc:
            raise CeremonyAborted(str(exc), culprits=(sender,)) from None
    return out


def _checked_contributions(
    relay: CeremonyRelay, commits: dict[int, tuple[bytes, tuple[bytes, ...]]], stop: threading.Event
) -> dict[int, U64]:
    """Every ``b_i``, each checked against its sender's KEY_COMMIT."""
    roster = relay.roster
    bodies = relay.collect(pb.KEY_CONTRIBUTION, roster.policy.keyholders, stop)
    for sender, body in bodies.items():
        hashed = codec.contribution_hash(roster.deployment_id, sender, body, epoch=relay.epoch)
        if hashed != commits[sender][0]:
            raise CommitmentMismatch(
                f"key holder {relay.index}: the public-key contribution of key holder {sender} "
                "does not match its commitment",
                culprits=(sender,),
            )
    return _decoded(bodies, lambda _, body: codec.decode_key_contribution(body, roster.params))


def _agreed_transcript(relay: CeremonyRelay, stop: threading.Event) -> bytes:
    """Post this key holder's TRANSCRIPT and require every key holder's to be the same.

    Raises :class:`TranscriptMismatch` naming nobody on a difference (see the module
    docstring: the relay alone can show key holders different views only with a key
    holder's help, and this key holder cannot tell which one).
    """
    transcript = codec.transcript_hash(
        relay.roster.deployment_id,
        epoch=relay.epoch,
        digests={kind: relay.digests(kind) for kind in codec.TRANSCRIPT_KINDS},
    )
    relay.post(pb.TRANSCRIPT, transcript)
    others = relay.collect(pb.TRANSCRIPT, relay.roster.policy.keyholders, stop)
    differ = sorted(sender for sender, body in others.items() if body != transcript)
    if differ:
        raise TranscriptMismatch(
            f"key holder {relay.index}: key holders {differ} saw other ceremony messages than "
            "this one: the server or a key holder equivocated"
        )
    return transcript


def _exchange_shares(
    relay: CeremonyRelay,
    exchange_key: X25519PrivateKey,
    exchange_keys: dict[int, X25519PublicKey],
    outgoing: dict[int, bytes],
    commits: dict[int, tuple[bytes, tuple[bytes, ...]]],
    public_key: JointPublicKey,
    transcript: bytes,
    stop: threading.Event,
) -> dict[int, U64]:
    """Seal ``outgoing`` share plaintexts to their recipients' ceremony exchange keys;
    open and check the received ones."""
    roster, index = relay.roster, relay.index

    def context(sender: int, recipient: int) -> bytes:
        return codec.share_context(
            roster.deployment_id,
            sender,
            recipient,
            public_key.id_bytes,
            epoch=relay.epoch,
            transcript=transcript,
        )

    for j, plain in outgoing.items():
        if j == index:
            continue
        sealed = seal_to(exchange_keys[j], plain, context=context(index, j))
        relay.post(pb.ENCRYPTED_SHARE, codec.encode_sealed(*sealed), recipient=j)

    def opened(sender: int, body: bytes) -> U64:
        plain = open_sealed(
            exchange_key, *codec.decode_sealed(body), context=context(sender, index)
        )
        committed = commits[sender][1][index - 1]
        hashed = codec.share_hash(roster.deployment_id, sender, index, plain, epoch=relay.epoch)
        if hashed != committed:
            raise CommitmentMismatch(
                f"key holder {index}: the share from key holder {sender} does not match "
                "its commitment",
                culprits=(sender,),
            )
        return codec.decode_share(plain, roster.params, sender=sender)

    received = _decoded(relay.collect(pb.ENCRYPTED_SHARE, len(outgoing) - 1, stop), opened)
    received[index] = codec.decode_share(outgoing[index], roster.params, sender=index)
    return received


def _test_decryption(
    relay: CeremonyRelay,
    public_key: JointPublicKey,
    contributions: dict[int, U64],
    share: KeyShare,
    received: dict[int, U64],
    stop: threading.Event,
) -> None:
    """Post a probe and this key holder's partials of every probe; check them all."""
    params, n, t = public_key.params, share.keyholders, share.threshold
    probe, values = make_probe(public_key, contributions)
    relay.post(pb.TEST_CIPHERTEXT, codec.encode_probe(probe))
    probes = _decoded(
        relay.collect(pb.TEST_CIPHERTEXT, n, stop),
        lambda sender, body: codec.decode_probe(
            body, params, keyholders=n, public_key_id=public_key.id_bytes, sender=sender
        ),
    )
    relay.post(
        pb.TEST_PARTIAL, codec.encode_probe_partials(probe_partials(probes, share, received))
    )
    received.clear()  # the f_i(j) are not needed any more
    partials = _decoded(
        relay.collect(pb.TEST_PARTIAL, n, stop),
        lambda sender, body: codec.decode_probe_partials(
            body, params, keyholders=n, threshold=t, sender=sender
        ),
    )
    check_probes(relay.index, probes, values, partials, threshold=t)


def run_ceremony(
    relay: CeremonyRelay, *, keep: Callable[[KeyShare], None], stop: threading.Event
) -> KeyShare:
    """Run the dealerless key generation; ``keep`` stores the share before the endorsement.

    Raises
    ------
    CeremonyAborted
        A contribution or share does not match its commitment, a message does not decode,
        key holders saw different messages (:class:`TranscriptMismatch`), or the test
        decryption failed; ``culprits`` names who may have deviated. Nothing was endorsed.

    Security
    --------
    The ceremony's exchange key is generated here and never leaves memory; a key holder
    restarted mid-ceremony cannot finish that epoch (module docstring).
    """
    roster, index = relay.roster, relay.index
    params, policy = roster.params, roster.policy
    n = policy.keyholders
    exchange_key = X25519PrivateKey.generate()
    relay.post(pb.EXCHANGE_KEY, codec.encode_exchange_key(exchange_key.public_key()))
    exchange_keys = _decoded(  # all n before the next phase (the server keeps the order)
        relay.collect(pb.EXCHANGE_KEY, n, stop),
        lambda sender, body: codec.decode_exchange_key(body, sender=sender),
    )
    me = DkgParticipant(params, index=index, keyholders=n, threshold=policy.threshold)
    relay.post(pb.SEED_COMMIT, me.commitment())
    seed_commits = relay.collect(pb.SEED_COMMIT, n, stop)
    relay.post(pb.SEED_REVEAL, me.reveal())
    seed = common_seed(seed_commits, relay.collect(pb.SEED_REVEAL, n, stop))
    contribution = codec.encode_key_contribution(me.public_key_contribution(seed))
    outgoing = {j: codec.encode_share(piece) for j, piece in me.outgoing_shares().items()}
    commitment = codec.encode_key_commit(
        roster.deployment_id, index, contribution, outgoing, epoch=relay.epoch
    )
    try:
        relay.post(pb.KEY_COMMIT, commitment)
        commits = _decoded(
            relay.collect(pb.KEY_COMMIT, n, stop), lambda _, b: codec.decode_key_commit(b, n)
        )
        relay.post(pb.KEY_CONTRIBUTION, contribution)  # only once every commitment is in
        contributions = _checked_contributions(relay, commits, stop)
        transcript = _agreed_transcript(relay, stop)
        public_key = combine_public_key(
            params, seed, contributions, keyholders=n, threshold=policy.threshold
        )
        received = _exchange_shares(
            relay, exchange_key, exchange_keys, outgoing, commits, public_key, transcript, stop
        )
        del exchange_key  # forward secrecy: the sealed shares the server keeps open no more
        outgoing.clear()
        share = me.finalize(received, public_key)
        _test_decryption(relay, public_key, contributions, share, received, stop)
    except CeremonyAborted as exc:
        log.error("key holder %d: key ceremony of epoch %d aborted: %s", index, relay.epoch, exc)
        raise
    keep(share)
    relay.post(pb.ENDORSEMENT, public_key.id_bytes)
    log.info(
        "key holder %d: ceremony of epoch %d done, joint public key %s",
        index,
        relay.epoch,
        public_key.id[:16],
    )
    return share
