"""TEST-ONLY fault points: which one an environment variable arms, for any process.

The server (:mod:`server.faults`, ``SECAGG_FAULT``) and the training client
(:mod:`clients.faults`, ``SECAGG_CLIENT_FAULT``) each name the steps where an integration
test can make them crash; both read their variable through :func:`armed_point`.

Security
--------
An armed fault point is a denial of service by design: never set outside the integration
tests. Arming one logs a loud warning; an unknown value raises (a typo must not silently
disarm a test).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from secagg.errors import ConfigError

P = TypeVar("P", bound=Enum)


def armed_point(
    environ: Mapping[str, str], variable: str, points: type[P], *, who: str, log: logging.Logger
) -> P | None:
    """The fault point ``variable`` arms in ``environ`` (None if unset or empty).

    Raises
    ------
    ConfigError
        The variable names no member of ``points``.
    """
    value = environ.get(variable, "")
    if not value:
        return None
    try:
        point = points(value)
    except ValueError:
        known = ", ".join(str(p.value) for p in points)
        raise ConfigError(f"{variable}={value!r} names no fault point ({known})") from None
    log.warning(
        "TEST-ONLY FAULT POINT ARMED (%s=%s): this %s will SIGKILL itself at that step. "
        "Never run a deployment like this.",
        variable,
        point.value,
        who,
    )
    return point


def sigkill_self() -> None:
    """Die at once, as a crash would (SIGKILL cannot be caught)."""
    os.kill(os.getpid(), signal.SIGKILL)
