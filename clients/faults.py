"""TEST-ONLY fault points of the training client: crash at a chosen step, deterministically.

The crash tests need a client to die after it trained and stored its upload and before
the server confirmed it. :data:`CLIENT_FAULT_ENV` arms such a point for the life of the
process, read once when the client starts::

    SECAGG_CLIENT_FAULT=kill-after-upload-stored secagg client DIR --name c1 ...

Reaching the armed point the client SIGKILLs itself (no cleanup, as a power cut). Unset
(the only setting for a real deployment) nothing is armed. The server's own fault points
are :mod:`server.faults` (``SECAGG_FAULT``); this module mirrors it for the client, which
may not import the server.

Security
--------
An armed fault point is a denial of service by design: never set it outside the
integration tests. A client that starts with one logs a loud warning; an unknown value
refuses to start (a typo must not silently disarm a test).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from enum import Enum

from secagg.errors import ConfigError

log = logging.getLogger("secagg.client")

#: The environment variable that arms a client fault point (test-only).
CLIENT_FAULT_ENV = "SECAGG_CLIENT_FAULT"


class ClientFault(Enum):
    """Steps where a test can make the client crash (the value is the variable's)."""

    #: The round's update is trained (ledger committed) and its signed upload stored
    #: durably; nothing was sent.
    KILL_AFTER_UPLOAD_STORED = "kill-after-upload-stored"


def armed_fault(environ: Mapping[str, str]) -> ClientFault | None:
    """The fault point :data:`CLIENT_FAULT_ENV` arms (None if unset or empty).

    Raises
    ------
    ConfigError
        The variable names no fault point.
    """
    value = environ.get(CLIENT_FAULT_ENV, "")
    if not value:
        return None
    try:
        point = ClientFault(value)
    except ValueError:
        known = ", ".join(p.value for p in ClientFault)
        raise ConfigError(f"{CLIENT_FAULT_ENV}={value!r} names no fault point ({known})") from None
    log.warning(
        "TEST-ONLY FAULT POINT ARMED (%s=%s): this client will SIGKILL itself at that step. "
        "Never run a deployment like this.",
        CLIENT_FAULT_ENV,
        point.value,
    )
    return point


def reach(armed: ClientFault | None, point: ClientFault) -> None:
    """SIGKILL this process if ``point`` is the armed one; otherwise do nothing."""
    if armed is point:
        log.warning("TEST-ONLY fault point %s reached: crashing now", point.value)
        os.kill(os.getpid(), signal.SIGKILL)
