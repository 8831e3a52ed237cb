"""An in-process Flower Grid for the tests (not a test module): no Ray, no SuperLink.

:class:`InProcessGrid` hands each message to a real ``ClientApp`` (its real mods) in the
test's process, one node after the other, with each node's own ``Context`` (its node
configuration: the secagg trust anchor and data partition). A failing ClientApp becomes
an error reply, as Flower's runtime makes it, and the exception is kept for the test.
Every message's content is digested before and after the ClientApp ran: Flower hands
the same ``RecordDict`` to every node, so a mod that mutates it would leak into the
next node's message; the grid fails the test if it does.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


def content_digest(content: RecordDict) -> bytes:
    """A digest of a message's whole content (every record, serialized)."""
    return hashlib.sha256(content.deflate()).digest()


class InProcessGrid(Grid):
    """Nodes 1..n, each a ``ClientApp`` call with its own node configuration."""

    def __init__(
        self,
        app: ClientApp,
        node_configs: Iterable[Mapping[str, Any]],
        run_config: Mapping[str, Any],
    ) -> None:
        self.app = app
        self.contexts = {
            i: Context(
                run_id=1, node_id=i, node_config=dict(cfg), state=RecordDict(),
                run_config=dict(run_config),
            )
            for i, cfg in enumerate(node_configs, start=1)
        }  # fmt: skip
        self.failures: list[BaseException] = []
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0  # as a ServerApp
        self.replies: list[Message] = []

    def set_run(self, run: Any) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            before = content_digest(msg.content)
            try:
                reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
            except Exception as exc:  # Flower's runtime turns it into an error reply
                self.failures.append(exc)
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
            assert content_digest(msg.content) == before, "a mod mutated the message it got"
            replies.append(reply)
        self.replies.extend(replies)
        return replies
