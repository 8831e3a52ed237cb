"""``secagg client``: a training client.

Each round: fetch the round and the global model, check the model (round 1: the hash the
server announces; later rounds: the server's signed release of the previous round),
train, encrypt under the round's joint public key — after checking that every key holder
of the roster endorsed it; when a round names another key (a key rotation) the client
fetches the new bundle and checks it again — sign an
:class:`~secagg.protocol.statements.UploadStatement` (round, client id, nonce,
global-model hash, ciphertext hash, weight, ε spent so far, DP marker) and upload in
chunks. Uploads are idempotent: a retry resends the same signed upload, and a server
answer that it already holds this client's upload counts as done.

The update is encrypted chunk by chunk straight into a chunk file in the client's state
directory (:func:`secagg.ciphertext.encrypt_chunks`); the signed ciphertext hash is the
digest of its head (:class:`secagg.chunked.VectorHead`), and the upload streams the head
then one chunk at a time from the file, so the client never holds the whole ciphertext
(memory: while training, the global model and the update, 8 bytes per parameter each,
plus the trainer's temporaries; while encrypting and sending, the update and O(chunk);
the model blob is dropped once decoded). A server
that is busy (RESOURCE_EXHAUSTED: its concurrent uploads are bounded) is asked again
after a doubling pause, for at most the round timeout.

The signed upload is stored durably before it is sent (:mod:`clients.pending_upload`)
and deleted once confirmed; a client restarted in the same round resends it instead of
training again, so a crash does not spend the round's privacy budget twice.

Security
--------
One window remains: the DP trainer commits the round to its privacy ledger inside
``train()``, before the upload is stored. A crash in between trains again on restart;
the ledger then holds both trainings, so ε rises honestly (over-accounted, never
under-accounted) and only the second update is ever sent.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

import grpc

from clients.connection import Connection, verify_release
from clients.dp_trainer import ACCOUNTANTS, DPConfig
from clients.faults import ClientFault, armed_fault, reach
from clients.pending_upload import PendingUpload, StoredUpload
from clients.public_key import endorsed_epoch, verify_public_key_bundle
from clients.trainer import SyntheticTrainer, Trainer
from clients.uploader import send_upload
from secagg import constants as C
from secagg.encoding import F64, I64
from secagg.errors import (
    ConfigError,
    InvalidKeyMaterial,
    PrivacyBudgetExhausted,
    SignatureInvalid,
)
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import decode_model_in_place, model_blob_size
from secagg.protocol.statements import Signed, UploadStatement, WithdrawalStatement
from secagg.rpc.transport import Identity, identity

log = logging.getLogger("secagg.client")

__all__ = ["TrainingClient", "add_arguments", "run", "verify_public_key_bundle"]


class TrainingClient:
    """One client's agent."""

    def __init__(
        self,
        me: Identity,
        trainer: Trainer,
        *,
        address: str | None = None,
        stop: threading.Event | None = None,
        fault: ClientFault | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self.fault = fault  # test-only (clients.faults); None in a deployment
        self.me = me
        self.roster = me.roster
        self.trainer = trainer
        self.signing_key = me.signing_key()
        self.conn = Connection(me, address, stop=self.stop)
        self.state = DeploymentLayout(me.deployment).state_dir(me.name, "client")
        self.state.mkdir(exist_ok=True)
        self.pending = PendingUpload(self.state, self.roster)
        self.key_epoch = 0  # the key epoch of the newest key accepted (signed endorsements)

    def endorsed_public_key(self) -> JointPublicKey:
        """The joint public key, accepted only with an endorsement from every key holder,
        and only if its key epoch (signed in the endorsements) is not older than the
        epoch of a key this client accepted before (no rollback to a retired key).

        Raises InvalidKeyMaterial (and what :func:`verify_public_key_bundle` raises).
        """
        bundle = self.conn.call(self.conn.stub.GetPublicKey, pb.Empty(), retry_for=600.0)
        key = verify_public_key_bundle(bundle, self.roster)
        epoch = endorsed_epoch(bundle, key)
        if epoch < self.key_epoch:
            raise InvalidKeyMaterial(
                f"the server serves the key of epoch {epoch} after one of epoch "
                f"{self.key_epoch}: an older key"
            )
        self.key_epoch = epoch
        return key

    def _checked_model(self, info: pb.RoundInfo) -> F64:
        """The round's global model, after checking where it comes from.

        Round 1's model must be the one the roster fixes (its SHA-256); a later round's
        must be the model of the previous round's signed release. The download itself
        checks the bytes against the hash; they are received into one buffer and the
        model is a view of it (one copy of a model of any size).
        """
        if info.round == 1 and info.global_model_hash != self.roster.initial_model_hash:
            raise SignatureInvalid("round 1's global model is not the roster's initial model")
        if info.round > 1:
            rel = self.conn.call(self.conn.stub.GetRelease, pb.ReleaseQuery(round=info.round - 1))
            if verify_release(rel, self.roster).model_hash != info.global_model_hash:
                raise SignatureInvalid(
                    "the round's global model is not the one the server released"
                )
        length = self.roster.policy.model_length
        blob = self.conn.download(info.global_model_hash, size=model_blob_size(info.round, length))
        return decode_model_in_place(blob, round_number=info.round, length=length)

    def run_round(self, info: pb.RoundInfo, key: JointPublicKey) -> None:
        """Upload for one round: the stored upload if there is one, else train, encrypt,
        sign and store a new one first."""
        stored = self.pending.for_round(info.round, info.global_model_hash)
        if stored is None:
            stored = self._train(info, key)
            self.pending.store(stored)  # durable before anything leaves the client
            reach(self.fault, ClientFault.KILL_AFTER_UPLOAD_STORED)
        else:
            log.info("%s: round %d: resending the stored upload", self.me.name, info.round)
        send_upload(self.conn, stored, policy=self.roster.policy, name=self.me.name)
        self.pending.confirm(stored)

    def _train(self, info: pb.RoundInfo, key: JointPublicKey) -> StoredUpload:
        """Train, encrypt (straight into the pending chunk file) and sign this round's upload."""
        global_model = self._checked_model(info)  # dropped once trained on
        update: F64 | I64
        try:
            integers = False
            if hasattr(self.trainer, "train_integers"):  # distributed DP: the integer path
                integers = True
                update, weight = self.trainer.train_integers(global_model, info.round)
            else:
                update, weight = self.trainer.train(global_model, info.round)
        except PrivacyBudgetExhausted as exc:
            self.withdraw(info.round, f"privacy budget exhausted: {exc}")
            raise
        del global_model
        head = self.pending.write_ciphertext(key, update, integers=integers)
        upload = Signed.create(
            UploadStatement(
                deployment_id=self.roster.deployment_id,
                round=info.round,
                client_id=self.me.name,
                nonce=os.urandom(C.UPLOAD_NONCE_BYTES),
                global_model_hash=info.global_model_hash,
                ciphertext_hash=head.digest,
                weight=weight,
                epsilon=float(getattr(self.trainer, "epsilon_spent", 0.0)),
                dp=trains_with_dp(self.trainer),
            ),
            self.signing_key,
        )
        return self.pending.upload(upload, head)

    def withdraw(self, round_number: int, reason: str) -> None:
        """Tell the server (signed) that this client takes part in no further rounds."""
        withdrawal = Signed.create(
            WithdrawalStatement(
                deployment_id=self.roster.deployment_id,
                client_id=self.me.name,
                round=round_number,
                reason=reason,
            ),
            self.signing_key,
        )
        self.conn.call(self.conn.stub.Withdraw, withdrawal.statement.to_proto(withdrawal.signature))
        log.warning("%s: withdrew from round %d on: %s", self.me.name, round_number, reason)

    def run(self) -> None:
        """Take part in every round until the deployment is finished or stopped."""
        try:
            self._run(self.stop)
        except PrivacyBudgetExhausted:
            return
        except grpc.RpcError as exc:
            if self.stop.is_set():
                return
            log.error("%s", self.conn.failure_line(exc))  # one line, no traceback
            raise SystemExit(self.conn.exit_status(exc)) from None

    def _current_key(self, info: pb.RoundInfo, key: JointPublicKey) -> JointPublicKey | None:
        """The key of the round ``info`` describes: ``key``, or the endorsed bundle the
        server now serves when the round names another key id (a key rotation). None if
        the served bundle is not yet the round's key (the switch is under way)."""
        if not info.public_key_id or info.public_key_id == key.id_bytes:
            return key
        fresh = self.endorsed_public_key()  # every key holder's endorsement, checked
        if fresh.id_bytes != info.public_key_id:
            log.info("%s: round %d names a key not served yet; waiting", self.me.name, info.round)
            return None
        log.info("%s: the joint key changed to %s (key rotation)", self.me.name, fresh.id[:16])
        return fresh

    def _run(self, stop: threading.Event) -> None:
        key = self.endorsed_public_key()
        while not stop.is_set():
            info = self.conn.call(self.conn.stub.GetRound, pb.Empty(), retry_for=600.0)
            if info.state == pb.FINISHED:
                log.info("%s: all rounds done", self.me.name)
                return
            current = self._current_key(info, key)
            if current is None:
                stop.wait(C.POLL_SECONDS)
                continue
            key = current
            if info.state == pb.COLLECTING and str(info.round) not in self.pending.done():
                try:
                    self.run_round(info, key)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        raise
                    log.warning("%s: round %d: %s", self.me.name, info.round, exc.details())
            stop.wait(C.POLL_SECONDS)


def trains_with_dp(trainer: Trainer) -> bool:
    """The DP marker a client signs: its trainer's ``is_dp`` (DP-SGD, distributed DP's
    noise shares, a custom trainer with DP); False for ``--no-dp`` and synthetic."""
    return bool(getattr(trainer, "is_dp", False))


def dp_trainer_for(me: Identity, args: argparse.Namespace) -> Trainer:
    """This client's DP trainer on its share of the digits federation."""
    from clients.data import load_federation
    from clients.dp_trainer import DPTrainer

    clients = [c.name for c in me.roster.clients]
    index = clients.index(me.name)
    if args.insecure_noise_seed is not None:
        log.warning("%s: DP noise is SEEDED (--insecure-noise-seed): no privacy", me.name)
    federation = load_federation(clients=len(clients), alpha=args.alpha, seed=args.data_seed)
    state_dir = DeploymentLayout(me.deployment).state_dir(me.name, "client")
    policy = me.roster.policy
    if getattr(args, "dp", "local") == "distributed":
        from clients.dist_dp import DistributedDPConfig, DistributedDPTrainer
        from clients.dist_dp_policy import honest_contributors

        dist = DistributedDPConfig(
            target_epsilon=args.epsilon,
            target_delta=args.delta,
            max_grad_norm=args.max_grad_norm,
            rounds=args.budget_rounds or policy.rounds,
            honest_contributors=honest_contributors(policy, colluders=args.colluders),
            noise_seed=args.insecure_noise_seed,
        )
        return DistributedDPTrainer(
            federation.clients[index],
            dist,
            params=me.roster.params,
            state_dir=state_dir,
            client_seed=index,
        )
    config = DPConfig(
        target_epsilon=args.epsilon,
        target_delta=args.delta,
        max_grad_norm=args.max_grad_norm,
        accountant=args.accountant,
        rounds=args.budget_rounds or policy.rounds,
        dp=not args.no_dp,
        noise_seed=args.insecure_noise_seed,
    )
    return DPTrainer(
        federation.clients[index],
        config,
        state_dir=state_dir,
        client_seed=index,
        weight_range=(policy.min_weight, policy.max_client_weight),
    )


def trainer_choice(value: str) -> str:
    """``--trainer``: ``synthetic``, ``dp`` or a ``MODULE:ATTRIBUTE`` path."""
    if value in ("synthetic", "dp") or ":" in value:
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: expected synthetic, dp or MODULE:ATTRIBUTE")


_MLP_DP_OPTIONS = (
    "data_seed", "alpha", "epsilon", "delta", "max_grad_norm", "accountant",
    "budget_rounds", "no_dp", "dp", "colluders",
)  # fmt: skip


def refuse_mlp_dp_options(args: argparse.Namespace) -> None:
    """A custom trainer's DP comes from its own ``DPOptions``: an MLP DP option given on
    the command line would be silently ignored (a user could believe ε is what they typed),
    so it is refused instead.

    Raises ConfigError naming the options.
    """
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    given = [
        "--" + name.replace("_", "-")
        for name in _MLP_DP_OPTIONS
        if getattr(args, name) != parser.get_default(name)
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)} configure the built-in dp trainer only; a --trainer "
            "MODULE:ATTR sets its DP in its own DPOptions"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg client``."""
    parser.add_argument("deployment", type=Path)
    parser.add_argument("--name", required=True, help="client name in the roster (e.g. c1)")
    parser.add_argument(
        "--trainer",
        type=trainer_choice,
        default="synthetic",
        help="synthetic, dp (the MLP on the digits), or MODULE:ATTRIBUTE of a "
        "clients.custom_trainer.CustomTrainer (imports and runs that module: your own code)",
    )
    parser.add_argument("--seed", type=int, default=0, help="synthetic trainer seed")
    parser.add_argument("--weight", type=int, default=100, help="synthetic trainer sample count")
    default = DPConfig.default_of
    dp = parser.add_argument_group("dp trainer (load_digits, Opacus DP-SGD)")
    dp.add_argument("--data-seed", type=int, default=0, help="seed of the federation's data split")
    dp.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of the split")
    dp.add_argument(
        "--epsilon",
        type=float,
        default=default("target_epsilon"),
        help="privacy budget over the whole run",
    )
    dp.add_argument("--delta", type=float, default=default("target_delta"))
    dp.add_argument("--max-grad-norm", type=float, default=default("max_grad_norm"))
    dp.add_argument("--accountant", choices=ACCOUNTANTS, default=default("accountant"))
    dp.add_argument(
        "--budget-rounds", type=int, help="rounds the budget is planned for (default: all)"
    )
    dp.add_argument("--no-dp", action="store_true", help="train without DP (baselines only)")
    dp.add_argument(
        "--dp",
        choices=["local", "distributed"],
        default="local",
        help="local DP-SGD (default) or distributed DP (integer noise shares, central epsilon)",
    )
    dp.add_argument(
        "--colluders",
        type=int,
        default=1,
        help="--dp distributed: contributors assumed to collude (noise counts the others)",
    )
    dp.add_argument(
        "--insecure-noise-seed",
        type=int,
        help="seed the DP noise (demo comparisons only: predictable noise gives NO privacy)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the client until all rounds are done."""
    import signal

    me = identity(args.deployment, args.name)
    trainer: Trainer
    if args.trainer == "dp":
        trainer = dp_trainer_for(me, args)
    elif args.trainer != "synthetic":  # a user's trainer (clients.custom_trainer)
        from clients.custom_trainer import bind, load_trainer

        refuse_mlp_dp_options(args)
        trainer = bind(load_trainer(args.trainer), me, noise_seed=args.insecure_noise_seed)
    else:
        record_dir = DeploymentLayout(me.deployment).party_dir(me.name, "client") / "updates"
        trainer = SyntheticTrainer(seed=args.seed, weight=args.weight, record_dir=record_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    TrainingClient(me, trainer, stop=stop, fault=armed_fault(os.environ)).run()
    return 0
