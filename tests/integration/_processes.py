"""Real processes for the integration tests (not a test module).

``python -m secagg.cli ...`` started with stdout and stderr captured to files so that a
failing test can print them; :class:`ProcessGroup` is the part of a deployment that
starts, stops and inspects them. Every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from secagg.constants import KEYHOLDER_PASSPHRASE_ENV

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
#: The key holders' share passphrase (generated per test session; only key holders get it).
KEYHOLDER_PASSPHRASE = secrets.token_urlsafe(24)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(*, keyholder: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(KEYHOLDER_PASSPHRASE_ENV, None)
    env["PYTHONUNBUFFERED"] = "1"
    if keyholder:
        env[KEYHOLDER_PASSPHRASE_ENV] = KEYHOLDER_PASSPHRASE
    return env


def cli(*args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m secagg.cli ARGS`` to completion (bounded by ``timeout``)."""
    return subprocess.run(
        [sys.executable, "-m", "secagg.cli", *map(str, args)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    give_up = time.monotonic() + timeout
    last = predicate()
    while not last:
        if time.monotonic() > give_up:
            extra = f"\n{diagnostics()}" if diagnostics else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)
        last = predicate()
    return last


@dataclass
class Proc:
    """One started process and its captured output."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """stdout + stderr captured so far."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def close_files(self) -> None:
        for fh in self.files:
            with contextlib.suppress(OSError):
                fh.close()
        self.files.clear()


class ProcessGroup:
    """The processes started for one deployment, by party name, with their logs."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, Proc] = {}
        self.history: list[Proc] = []  # every process ever started, for the logs

    def start(self, name: str, *args: str | Path) -> Proc:
        """Start ``python -m secagg.cli ARGS`` as party ``name``."""
        if name in self.procs and self.procs[name].alive():
            raise AssertionError(f"{name} is already running")
        n = sum(1 for p in self.history if p.name == name)
        out_path = self.logs / f"{name}.{n}.stdout"
        err_path = self.logs / f"{name}.{n}.stderr"
        out, err = open(out_path, "wb"), open(err_path, "wb")  # noqa: SIM115 (closed in stop)
        popen = subprocess.Popen(
            [sys.executable, "-m", "secagg.cli", *map(str, args)],
            cwd=REPO,
            env=_env(keyholder=bool(args) and str(args[0]) == "keyholder"),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        proc = Proc(name, popen, out_path, err_path, [out, err])
        self.procs[name] = proc
        self.history.append(proc)
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` to one process and wait for it to exit; returns its exit code."""
        proc = self.procs[name]
        proc.signal(sig)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.signal(signal.SIGKILL)
            code = proc.wait(10)
        proc.close_files()
        return code

    def kill(self, name: str) -> None:
        """SIGKILL one process (no chance to clean up)."""
        self.stop(name, signal.SIGKILL)

    def wait_exit(self, name: str, timeout: float) -> int:
        proc = self.procs[name]
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{name} did not exit within {timeout:.0f}s\n{self.log_tail()}"
            ) from None

    def stop_all(self) -> None:
        """Terminate every process still running (SIGTERM, then SIGKILL), the server last:
        agents whose server is gone retry for minutes before they look at SIGTERM."""
        agents = [p for p in self.procs.values() if p.name != "server"]
        server = [p for p in self.procs.values() if p.name == "server"]
        for group in (agents, server):
            # without a server, agents would sit out their retries: don't wait long for them
            grace = 10.0 if any(p.alive() for p in server) or group is server else 2.0
            for proc in group:
                proc.signal(signal.SIGCONT)  # in case a test left it stopped
                proc.signal(signal.SIGTERM)
            give_up = time.monotonic() + grace
            for proc in group:
                try:
                    proc.wait(max(0.1, give_up - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.signal(signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(10)
                proc.close_files()

    def assert_running(self, *names: str) -> None:
        for name in names:
            proc = self.procs[name]
            assert proc.alive(), (
                f"{name} exited with {proc.popen.returncode}:\n{proc.output()[-4000:]}"
            )

    def log_tail(self, chars: int = 3000) -> str:
        out = []
        for proc in self.history:
            text = proc.output()
            if text:
                out.append(f"----- {proc.name} (pid {proc.pid}) -----\n{text[-chars:]}")
        return "\n".join(out)
