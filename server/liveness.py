"""Key-holder liveness: who polled recently enough to be asked for a partial decryption.

A key holder is live while its last poll is younger than
``secagg.constants.KEYHOLDER_LIVENESS_SECONDS``. The clock is injected (monotonic by
default), so tests step time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from secagg import constants as C


class Liveness:
    """Last-seen times of key holders (thread-safe)."""

    def __init__(
        self,
        *,
        window: float = C.KEYHOLDER_LIVENESS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.clock = clock
        self._seen: dict[int, float] = {}
        self._lock = threading.Lock()

    def seen(self, keyholder: int) -> None:
        """Record that a key holder polled now."""
        with self._lock:
            self._seen[keyholder] = self.clock()

    def live(self) -> list[int]:
        """Key holders seen within the window, sorted."""
        now = self.clock()
        with self._lock:
            return sorted(i for i, t in self._seen.items() if now - t < self.window)
