"""Following a key rotation: the next epoch's ceremony in the background.

The server announces the key epoch whose ceremony is open in every answer to the key
holder's poll (``DecryptionTask.ceremony_epoch``). When that epoch is newer than the
newest share this key holder holds, :class:`Rotation` runs the ceremony in a thread while
the agent keeps answering tasks under the current key; a ceremony the server abandoned
(a newer epoch opened meanwhile) is stopped and the newer one started.

Security
--------
Nothing is trusted here: the ceremony verifies every message as one of its epoch
(:mod:`clients.keyholder.ceremony`); a server that announces epochs needlessly only
makes key holders run ceremonies. A ceremony that aborts ends the agent (the error names
the culprits), like the first one. A ceremony's secrets (DKG secrets, exchange key) live
only in this process: a key holder restarted mid-ceremony cannot finish that epoch (the
server refuses its fresh messages of a phase it had posted); the operator opens a new
epoch with ``secagg admin rotate-key``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("secagg.keyholder")

#: Runs the ceremony of an epoch until it is done or the event is set.
CeremonyRunner = Callable[[int, threading.Event], object]


class Rotation:
    """At most one background ceremony, of the newest announced epoch."""

    def __init__(self, run: CeremonyRunner) -> None:
        self._run = run
        self._epoch = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def follow(self, announced: int, newest_held: int) -> None:
        """Start the ceremony of ``announced`` if newer than every share held and than the
        one running (a ceremony the server abandoned is stopped, its failure forgotten);
        re-raise the failure of the announced ceremony if it ended with one."""
        if announced <= max(newest_held, self._epoch):
            if self._failure is not None and announced == self._epoch:
                raise self._failure
            return
        self.stop()
        self._failure = None
        self._epoch, self._stop = announced, threading.Event()
        self._thread = threading.Thread(
            target=self._ceremony, args=(announced, self._stop), name=f"ceremony-e{announced}"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("key epoch %d: ceremony started (key rotation)", announced)

    def _ceremony(self, epoch: int, stop: threading.Event) -> None:
        try:
            self._run(epoch, stop)
        except InterruptedError:
            log.info("key epoch %d: ceremony stopped", epoch)
        except BaseException as exc:  # handed to the agent's loop
            self._failure = exc

    def stop(self) -> None:
        """Stop the running ceremony, if any (bounded wait)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
