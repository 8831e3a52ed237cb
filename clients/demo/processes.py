"""The demo's child processes: each party runs ``secagg ROLE ...`` with its log in a file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

#: How long stopped children get to exit before they are killed (seconds).
STOP_GRACE_SECONDS = 10.0


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """The demo's child processes, with logs in ``logs/NAME.log``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        """Start ``secagg ARGS...`` as the child called ``name`` (with ``env`` added)."""
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the child)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "secagg.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None,
        )

    def check(self) -> None:
        """Raise ``RuntimeError`` (with the log's tail) if a child exited with an error."""
        for name, p in self.procs.items():
            if p.poll() not in (None, 0):
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{tail}")

    def stop(self) -> None:
        """Terminate every child still running; kill those that outlive the grace period."""
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
