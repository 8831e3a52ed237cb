"""How the long-running commands log: one line per record, as text or as JSON.

``secagg serve``, ``secagg client`` and ``secagg keyholder`` take ``--log-format
{text,json}`` (default: the :data:`~secagg.constants.LOG_FORMAT_ENV` variable, else
``text``). :func:`configure` installs one handler on the root logger, on stderr:

- ``text``: ``2026-12-04 10:00:00,123 c1 INFO message`` (as before);
- ``json``: one JSON object per line with ``ts`` (UTC, ISO 8601), ``level``,
  ``logger``, ``party``, ``message``, ``exception`` (a traceback, as one string) when
  there is one, and every ``extra=`` field of the call.

The command line (:mod:`secagg.cli`) calls it before the command runs, so every record
of the process, including those logged while the command starts, has the chosen form.

Notes
-----
gRPC's C core writes its own diagnostics to stderr (e.g. a failed TLS handshake) without
going through Python's logging; those lines are not JSON. ``GRPC_VERBOSITY=NONE`` (or
``ERROR``) silences them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from secagg import constants as C
from secagg.errors import ConfigError

#: The commands that take ``--log-format``.
COMMANDS: Final = ("serve", "client", "keyholder")
FORMATS: Final = ("text", "json")
#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line (see the module docstring)."""

    def __init__(self, party: str) -> None:
        super().__init__()
        self.party = party

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of ``record``."""
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "party": self.party,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        return json.dumps(line, default=str, ensure_ascii=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--log-format`` option."""
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        help=f"log lines as text or JSON objects (default: ${C.LOG_FORMAT_ENV}, else text)",
    )


def chosen_format(option: str | None, environ: Mapping[str, str]) -> str:
    """The log format: the option, else the environment variable, else ``text``.

    Raises
    ------
    ConfigError
        The environment names a format that does not exist.
    """
    chosen = option or environ.get(C.LOG_FORMAT_ENV, "").strip().lower() or "text"
    if chosen not in FORMATS:
        raise ConfigError(f"${C.LOG_FORMAT_ENV}={chosen!r}: not one of {', '.join(FORMATS)}")
    return chosen


def formatter(log_format: str, party: str, *, text: str | None = None) -> logging.Formatter:
    """The formatter of ``log_format`` for ``party``; ``text``: another text layout."""
    if log_format == "json":
        return JsonFormatter(party)
    return logging.Formatter(text or f"%(asctime)s {party} %(levelname)s %(message)s")


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as logging's last
    resort does), so a command run in-process (tests) never holds a stale stream."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure(log_format: str, party: str, *, level: int = logging.INFO) -> None:
    """Log every record of the process at ``level`` or above to stderr in ``log_format``.

    Replaces the handler an earlier call installed and leaves any other alone; later
    ``logging.basicConfig`` calls then do nothing (the root logger has a handler).
    """
    handler = _Stderr()
    handler.setFormatter(formatter(log_format, party))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def party_of(args: argparse.Namespace) -> str:
    """The party a command line runs as: ``--name``, ``kh<--index>``, else the command."""
    if getattr(args, "name", None):
        return str(args.name)
    if getattr(args, "index", None) is not None:
        return f"kh{args.index}"
    return "server" if args.command == "serve" else str(args.command)


def configure_command(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """:func:`configure` for a parsed command line of one of :data:`COMMANDS`."""
    configure(chosen_format(args.log_format, environ), party_of(args))
