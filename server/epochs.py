"""Key epochs as the server sees them: which joint key each round uses, and when to rotate.

The ceremony of epoch ``e`` (:mod:`server.ceremony`) produces key ``K_e``. A round's key
is fixed by the durable :class:`~server.store.base.KeyEpoch` rows:

* epoch 1 is used from round 1;
* once every key holder endorsed ``K_{e+1}`` (its bundle is complete), :meth:`schedule`
  fixes its first round as the round after the one open now, so a round never changes
  key: rounds keep running under ``K_e`` while the next ceremony runs, and the next
  round opened after the endorsements uses ``K_{e+1}``;
* :meth:`announce` logs the key (:class:`~secagg.protocol.audit_entries.PublicKeyEntry`)
  when its first round is reached, before any aggregate under it is logged.

Rotation starts on the operator's word (``secagg admin rotate-key``) or by the budget
rule of :meth:`rotate_if_budget_low`: the server counts the partials it accepted per key
holder and key (``ciphertexts x N`` coefficients each, what the key holder charges to
its own budget) and opens the next ceremony once one key holder spent
:data:`~secagg.constants.KEY_ROTATION_BUDGET_FRACTION` of
:attr:`~secagg.params.Parameters.decryption_budget` under the current key.

Security
--------
Nothing here protects anyone: the server may lie about a round's key. Clients encrypt
only under a key every key holder endorsed (:func:`clients.client.verify_public_key_bundle`),
and key holders refuse to decrypt under a key they retired and enforce their budget
themselves (:mod:`clients.keyholder.epochs`, :mod:`clients.keyholder.budget`). The
budget rule is a liveness aid: it starts the new ceremony before the key holders refuse.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter

from secagg import constants as C
from secagg.ciphertext import ciphertext_count
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import PublicKeyEntry
from server.ceremony import Ceremony
from server.context import Context
from server.store.base import KeyEpoch, PartialRecord

log = logging.getLogger("secagg.server")


class KeyEpochs:
    """Which key each round uses; scheduling, announcing and starting key epochs.

    ``lock``: the round manager's; :meth:`bundle` and :meth:`rotate` (called by the
    service) take it, the others are called under it.
    ``known_key``: epoch 1's key given in advance (in-process tests run no ceremony).
    """

    def __init__(
        self,
        ctx: Context,
        ceremony: Ceremony,
        lock: threading.RLock,
        *,
        known_key: JointPublicKey | None = None,
    ) -> None:
        self.ctx = ctx
        self.ceremony = ceremony
        self.lock = lock
        self.known_key = known_key

    def epochs(self) -> dict[int, KeyEpoch]:
        """Every epoch by number; epoch 1 (used from round 1) is implicit until announced."""
        rows = {e.epoch: e for e in self.ctx.store.key_epochs()}
        rows.setdefault(1, KeyEpoch(1, first_round=1))
        return rows

    def epoch_of_round(self, round_number: int) -> int:
        """The epoch whose key round ``round_number`` uses (the latest scheduled before it)."""
        started = [
            e.epoch
            for e in self.epochs().values()
            if e.first_round is not None and e.first_round <= round_number
        ]
        return max(started, default=1)

    def key(self, epoch: int) -> JointPublicKey | None:
        """An epoch's joint key (None while its contributions are incomplete)."""
        if epoch == 1 and self.known_key is not None:
            return self.known_key
        return self.ceremony.joint_public_key(epoch)

    def key_of_round(self, round_number: int) -> JointPublicKey | None:
        """The joint key round ``round_number`` uses."""
        return self.key(self.epoch_of_round(round_number))

    def current_epoch(self) -> int:
        """The epoch of the current round (of round 1 before any round opened)."""
        cur = self.ctx.store.current_round()
        return self.epoch_of_round(cur.number if cur else 1)

    def bundle(self) -> pb.PublicKeyBundle | None:
        """The current round's key with every key holder's endorsement (None: incomplete)."""
        with self.lock:
            return self.ceremony.bundle(self.current_epoch())

    def messages(self, kind: int, recipient: int, epoch: int) -> list[pb.CeremonyMessage]:
        """Messages of a ceremony (``epoch`` 0: the open one); shares only for ``recipient``."""
        return self.ceremony.messages(kind, recipient, epoch or self.ceremony.open_epoch())

    # ------------------------------------------------------------ transitions
    def schedule(self) -> None:
        """Fix the first round of an epoch whose key every key holder just endorsed."""
        for row in self.epochs().values():
            if row.first_round is not None or self.ceremony.bundle(row.epoch) is None:
                continue
            if row.epoch != self.ceremony.open_epoch():
                continue  # an abandoned epoch is never used
            cur = self.ctx.store.current_round()
            first = cur.number + 1 if cur is not None else 1
            self.ctx.store.put_key_epoch(dataclasses.replace(row, first_round=first))
            log.info(
                "key epoch %d: endorsed by every key holder; used from round %d", row.epoch, first
            )

    def announce(self, round_number: int) -> None:
        """Log the key of ``round_number`` (once per epoch), before anything under it."""
        row = self.epochs()[self.epoch_of_round(round_number)]
        key = self.key(row.epoch)
        if row.announced or key is None:
            return
        with self.ctx.store.transaction():
            self.ctx.audit.record(PublicKeyEntry(key.id_bytes, key.keyholders, key.threshold))
            self.ctx.store.put_key_epoch(dataclasses.replace(row, announced=True))

    def rotate(self) -> int:
        """Open the next epoch's ceremony (the operator's ``secagg admin rotate-key``)."""
        with self.lock:
            epoch = self.ceremony.open_next()
        log.info("key epoch %d: ceremony opened", epoch)
        return epoch

    def spent(self, epoch: int) -> Counter[int]:
        """Coefficients each key holder decrypted under an epoch's key, by accepted partials."""
        store, params = self.ctx.store, self.ctx.params
        per_partial = ciphertext_count(params, self.ctx.policy.model_length)
        per_partial *= params.poly_modulus_degree
        spent: Counter[int] = Counter()
        for rnd in store.rounds():
            if self.epoch_of_round(rnd.number) != epoch:
                continue
            for task in store.tasks(round_number=rnd.number):
                for record in store.answers(task.task_id, PartialRecord):
                    spent[record.keyholder] += per_partial
        return spent

    def rotate_if_budget_low(self) -> None:
        """Open the next ceremony once a key holder spent the rotation fraction of its budget.

        Only when the current key is the newest scheduled one and no later ceremony is
        open (a running ceremony is never abandoned by this rule).
        """
        epoch = self.current_epoch()
        if self.ceremony.open_epoch() != epoch:
            return
        spent = self.spent(epoch)
        limit = C.KEY_ROTATION_BUDGET_FRACTION * self.ctx.params.decryption_budget
        if spent and max(spent.values()) >= limit:
            log.info("key epoch %d: a key holder's decryption budget runs low", epoch)
            self.rotate()
