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
from collections.abc import Mapping
from enum import Enum

from secagg.fault_points import armed_point, sigkill_self

log = logging.getLogger("secagg.client")

#: The environment variable that arms a client fault point (test-only).
CLIENT_FAULT_ENV = "SECAGG_CLIENT_FAULT"


class ClientFault(Enum):
    """Steps where a test can make the client crash (the value is the variable's)."""

    #: The round's update is trained (ledger committed) and its signed upload stored
    #: durably; nothing was sent.
    KILL_AFTER_UPLOAD_STORED = "kill-after-upload-stored"


def armed_fault(environ: Mapping[str, str]) -> ClientFault | None:
    """The fault point :data:`CLIENT_FAULT_ENV` arms (None if unset; ConfigError if unknown)."""
    return armed_point(environ, CLIENT_FAULT_ENV, ClientFault, who="client", log=log)


def reach(armed: ClientFault | None, point: ClientFault) -> None:
    """SIGKILL this process if ``point`` is the armed one; otherwise do nothing."""
    if armed is point:
        log.warning("TEST-ONLY fault point %s reached: crashing now", point.value)
        sigkill_self()
