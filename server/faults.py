"""TEST-ONLY fault points: make the server crash at a chosen step, deterministically.

The crash-recovery tests need the server to die in a window a few microseconds wide
(e.g. after the last partial of a task is committed and before the release). A fault
point names such a window; the environment variable :data:`FAULT_ENV` arms one of them
for the life of the process, read once by ``secagg serve`` at start::

    SECAGG_FAULT=kill-after-last-partial secagg serve DIR

When the server reaches an armed point it SIGKILLs itself: no cleanup, no flush, exactly
what a power cut or the OOM killer does. Unset (the only setting for a real deployment)
nothing is armed and :meth:`Faults.reach` does nothing.

Security
--------
An armed fault point is a denial of service by design. It is never set by the project's
own tooling outside the integration tests; a server that starts with one logs a loud
warning, and an unknown value refuses to start (a typo must not silently disarm a test).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from secagg.fault_points import armed_point, sigkill_self

log = logging.getLogger("secagg.server")

#: The environment variable that arms a fault point (test-only).
FAULT_ENV = "SECAGG_FAULT"


class FaultPoint(Enum):
    """Steps where a test can make the server crash (the value is :data:`FAULT_ENV`'s)."""

    #: The last partial of a task is committed (store and audit log); nothing is released.
    KILL_AFTER_LAST_PARTIAL = "kill-after-last-partial"


@dataclass(frozen=True)
class Faults:
    """The fault point armed in this process (none by default) and how it crashes.

    ``crash`` is :func:`sigkill_self` for a real server; in-process tests pass a function
    that raises, and then drop the manager as the crash would.
    """

    armed: FaultPoint | None = None
    crash: Callable[[], None] = sigkill_self

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Faults:
        """The fault point :data:`FAULT_ENV` arms (none if unset or empty).

        Raises
        ------
        ConfigError
            The variable names no fault point.
        """
        return cls(armed_point(environ, FAULT_ENV, FaultPoint, who="server", log=log))

    def reach(self, point: FaultPoint) -> None:
        """Crash here if ``point`` is the armed one; otherwise do nothing."""
        if self.armed is point:
            log.warning("TEST-ONLY fault point %s reached: crashing now", point.value)
            self.crash()
