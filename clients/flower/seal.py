"""The seal between the user's train function and the SecAgg mod: nothing may change the
model or the update in between.

Flower composes mods around the ClientApp's functions; the SecAgg mod sees only the
message it is handed and the reply it gets back. So the train function is wrapped with
:func:`sealed_train`, which records the digest (:func:`~clients.flower.records.arrays_digest`)
of the model it *received* and of the arrays it *returned* in a slot the mod opened for
this call (a :class:`contextvars.ContextVar`: per thread and per call). After the call the
mod compares them with the model it checked and the update it is about to encrypt:

- a mod between them that changes the update (clipping, noise, a bug) makes the
  returned digest differ: :class:`~secagg.errors.UpdateTampered`;
- a mod between them that changes the model before training (so the node would train
  from a model nobody verified) makes the received digest differ: the same error;
- a train function that is not sealed leaves the slot empty: :class:`ConfigError`.

Legitimate changes (local DP noise, clipping) belong inside the sealed function.

Security
--------
This detects misconfiguration and code that does not try to hide; it is no defence
against malicious code in the same process (which could fill the slot itself or read
the update directly). The ClientApp's code comes from whoever runs ``flwr run``: a node
operator must trust it (Flower's app verification), as with any code it executes.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flwr.app import Context, Message

from clients.flower.records import arrays_digest, only_arrays
from secagg.errors import ConfigError, UpdateTampered

TrainFunction = Callable[[Message, Context], Message]


@dataclass
class Seal:
    """What the sealed train function saw and produced in one call."""

    received: bytes | None = None
    returned: bytes | None = None

    def check(self, received: bytes, returned: bytes) -> None:
        """The train function received ``received`` and returned ``returned`` (digests).

        Raises
        ------
        ConfigError
            The train function is not wrapped with :func:`sealed_train`.
        UpdateTampered
            A mod between the SecAgg mod and the train function changed the model or the
            update.
        """
        if self.received is None or self.returned is None:
            raise ConfigError(
                "the train function is not sealed: wrap it with clients.flower.sealed_train "
                "so the SecAgg mod can check that no mod changed the update"
            )
        if self.received != received:
            raise UpdateTampered(
                "a mod between the SecAgg mod and the train function changed the model "
                "before training: the node would train from a model nobody verified"
            )
        if self.returned != returned:
            raise UpdateTampered(
                "a mod between the train function and the SecAgg mod changed the update: "
                "place the SecAgg mod last (innermost) and change updates inside the "
                "sealed train function"
            )


_SLOT: contextvars.ContextVar[Seal | None] = contextvars.ContextVar("secagg_seal", default=None)


@contextmanager
def open_seal() -> Iterator[Seal]:
    """A fresh slot for one call of the train function (the SecAgg mod opens it)."""
    seal = Seal()
    token = _SLOT.set(seal)
    try:
        yield seal
    finally:
        _SLOT.reset(token)


def sealed_train(fn: TrainFunction) -> TrainFunction:
    """Wrap a ClientApp train function so the SecAgg mod can check what it trained on and
    what it returned (see the module docstring). Outside a SecAgg mod it changes nothing.

    Use it under Flower's decorator::

        @app.train()
        @sealed_train
        def train(msg: Message, context: Context) -> Message: ...
    """

    @functools.wraps(fn)
    def train(msg: Message, context: Context) -> Message:
        seal = _SLOT.get()
        if seal is None:
            return fn(msg, context)
        seal.received = arrays_digest(only_arrays(msg.content))
        reply = fn(msg, context)
        if reply.has_content():
            seal.returned = arrays_digest(only_arrays(reply.content))
        return reply

    return train
