"""``secagg bench --scale``: the real ``secagg`` processes and their exact peak RSS.

Every party is ``python -m secagg.cli COMMAND ...``, its stdout and stderr in one log
file. The benchmark starts it through :mod:`secagg.bench.scale_reaper` (with
:class:`subprocess.Popen`): a small fresh process that forks the party, reaps it with
``os.wait4(pid, 0)`` and reports its exit code and ``ru_maxrss`` (KiB on Linux). The
benchmark reaps the reaper with ``wait4`` in turn; whether it is still running is asked
with ``waitid(..., WNOWAIT)``, which leaves it waitable. Nothing polls ``/proc``.

Parties that do not exit by themselves get SIGTERM (what the integration harness sends
for a clean stop; the reaper passes it on), key holders before the server; SIGKILL only
after a grace period (SIGUSR1 to the reaper), and the result says so.

Notes
-----
Why the reaper: Linux charges a child the high-water RSS of the process it forked from,
historical peak included (a ``python -c pass`` forked by a process that once held 1 GiB
reports 1 GiB). Forked straight from the benchmark, which holds a whole released model
while it checks one size, every later party would report at least that. The reaper's
own high-water mark at the fork (about 10 MiB) is kept as :attr:`Party.fork_floor_kib`;
a reading at or below it is flagged as an upper bound only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from secagg.bench import scale_reaper
from secagg.constants import KEYHOLDER_PASSPHRASE_ENV

#: Seconds a process gets between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS = 60.0
#: ``secagg`` command -> the role its process plays.
ROLE_OF_COMMAND = {"serve": "server", "keyholder": "keyholder", "client": "client"}
_POLL_SECONDS = 0.25
_REAPER = Path(scale_reaper.__file__)


class ScaleRunFailed(RuntimeError):
    """A benchmark run could not complete (a process died, a wait ran out of time).

    A failure of the benchmark harness, not a check of the protocol: the message names
    the cause and the run's log files hold the details.
    """


@dataclass
class Party:
    """One started party (behind its reaper) and, once reaped, its exit and peak RSS."""

    name: str
    role: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    report_path: Path
    started: float
    exit_code: int | None = None
    maxrss_kib: int | None = None
    fork_floor_kib: int = 0
    cpu_seconds: float | None = None
    terminated: bool = False
    killed: bool = False
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """The reaper's process id (signals sent to it reach the party)."""
        return self.popen.pid

    def running(self) -> bool:
        """Whether the party has not exited yet (never reaps it)."""
        if self.exit_code is not None:
            return False
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, self.pid, flags) is None

    def reap(self) -> None:
        """``wait4`` the reaper, then take the party's exit code and ``ru_maxrss``."""
        if self.exit_code is not None:
            return
        _, status, _ = os.wait4(self.pid, 0)
        self.popen.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        self.exit_code = self.popen.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        with contextlib.suppress(OSError, ValueError):  # none if the reaper itself was killed
            report = json.loads(self.report_path.read_text(encoding="utf-8"))
            self.exit_code = int(report["exit_code"])
            self.maxrss_kib = int(report["maxrss_kib"])
            self.fork_floor_kib = int(report["fork_floor_kib"])
            self.cpu_seconds = float(report["cpu_seconds"])

    def wait_exit(self, timeout: float) -> bool:
        """Reap the party if it exits within ``timeout`` seconds; whether it did."""
        give_up = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > give_up:
                return False
            time.sleep(_POLL_SECONDS)
        self.reap()
        return True

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        """Send SIGTERM once (a second one could cut the clean shutdown short)."""
        if not self.terminated and self.running():
            self.terminated = True
            self._signal(signal.SIGTERM)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; reaped either way."""
        self.terminate()
        if self.wait_exit(grace):
            return
        self.killed = True
        self._signal(signal.SIGUSR1)  # the reaper SIGKILLs the party and still reports
        if not self.wait_exit(10.0):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # the reaper's session: both of them
            self.reap()

    def log_text(self) -> str:
        """Everything the party wrote so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


def spawn(
    name: str, role: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str]
) -> Party:
    """Start ``argv`` behind a reaper in its own session, stdout and stderr to ``log_path``."""
    report = log_path.with_suffix(".rusage.json")
    log = log_path.open("wb")
    try:
        popen = subprocess.Popen(
            [sys.executable, "-S", str(_REAPER), str(report), *argv],
            cwd=log_path.parent,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError:
        log.close()
        raise
    return Party(name, role, popen, log_path, report, time.time(), _log=log)


class Processes:
    """The parties of one deployment: started in ``logs``, checked, stopped, reaped."""

    def __init__(self, logs: Path, passphrase: str) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self._passphrase = passphrase
        self.parties: dict[str, Party] = {}

    def start(self, name: str, command: str, args: Sequence[str | Path]) -> Party:
        """Start ``python -m secagg.cli COMMAND ARGS`` as party ``name``.

        Security
        --------
        Only key holders get the share passphrase in their environment
        (``SECAGG_KEYHOLDER_PASSPHRASE``, as the integration harness passes it).
        """
        env = dict(os.environ)
        env.pop(KEYHOLDER_PASSPHRASE_ENV, None)
        env["PYTHONUNBUFFERED"] = "1"
        role = ROLE_OF_COMMAND[command]
        if role == "keyholder":
            env[KEYHOLDER_PASSPHRASE_ENV] = self._passphrase
        argv = [sys.executable, "-m", "secagg.cli", command, *map(str, args)]
        party = spawn(name, role, argv, self.logs / f"{name}.log", env)
        self.parties[name] = party
        return party

    def check(self, alive: Sequence[str], may_exit: Sequence[str] = ()) -> None:
        """Raise :class:`ScaleRunFailed` (with the log's tail) if a party of ``alive``
        exited, or one of ``may_exit`` exited with a non-zero code (not started: fine)."""
        for name in (*alive, *may_exit):
            party = self.parties.get(name)
            if party is None or party.running():
                continue
            party.reap()
            if name in alive or party.exit_code:
                raise ScaleRunFailed(
                    f"{name} exited with {party.exit_code}:\n{party.log_text()[-3000:]}"
                )

    def wait_for(
        self,
        what: str,
        predicate: Callable[[], bool],
        *,
        timeout: float,
        alive: Sequence[str],
        may_exit: Sequence[str] = (),
        interval: float = 1.0,
    ) -> None:
        """Poll ``predicate`` until true; see :meth:`check` for ``alive`` and ``may_exit``."""
        give_up = time.monotonic() + timeout
        while True:
            self.check(alive, may_exit)
            if predicate():
                return
            if time.monotonic() > give_up:
                raise ScaleRunFailed(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def stop_all(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop every party still running, the server last; all end up reaped."""
        agents = [p for p in self.parties.values() if p.role != "server"]
        for party in agents:
            party.terminate()
        for party in agents:
            party.stop(grace)
        for party in self.parties.values():
            party.stop(grace)

    def logs_by_party(self) -> Mapping[str, str]:
        """Every party's log text."""
        return {name: party.log_text() for name, party in self.parties.items()}
