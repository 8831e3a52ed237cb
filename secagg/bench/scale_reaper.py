"""Run one command, reap it with ``wait4``, write its exit code and peak RSS (a script).

:mod:`secagg.bench.scale_processes` starts every party as
``python -S scale_reaper.py REPORT COMMAND...``. Linux charges a child the high-water
RSS of the process it forked from (``exec`` records the forked copy's high-water mark in
``ru_maxrss``, and the copy inherits the parent's historical peak): a party forked
straight from the benchmark would report at least the benchmark's own peak (gigabytes
after checking a 100M-parameter model). Forked from this fresh, small process instead,
its reading is exact as soon as it exceeds this process's ~10 MiB, which ``REPORT`` also
records (``fork_floor_kib``).

SIGTERM and SIGINT are passed on to the command; SIGUSR1 makes this process SIGKILL it.
Once the command has exited, ``REPORT`` receives ``{"pid", "exit_code", "maxrss_kib",
"fork_floor_kib", "cpu_seconds"}`` (written to a temporary name, then renamed) and this
process exits with the command's code (128 + signal number if a signal ended it).

Notes
-----
Runs with ``-S`` and the standard library only, so that its own footprint stays small.
The only ``/proc`` read is of its own ``VmHWM``, once, before the fork; the party's
reading is ``wait4``'s alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
from types import FrameType

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def _own_high_water_kib() -> int:
    """This process's own memory high-water mark (what a child forked now inherits).

    ``VmHWM`` of this process's memory, read once; ``ru_maxrss`` would also count the
    benchmark's peak, which the ``exec`` that started this process carried over.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main(argv: list[str]) -> int:
    """Run ``argv[1:]``, write the report to ``argv[0]``; the command's exit code."""
    report, command = argv[0], argv[1:]
    child = 0

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL if signum == signal.SIGUSR1 else signum)

    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)  # until the child's pid is known
    for signum in _FORWARDED:
        signal.signal(signum, forward)
    floor = _own_high_water_kib()
    child = os.fork()
    if child == 0:
        try:
            for signum in _FORWARDED:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
            os.execv(command[0], command)
        finally:
            os._exit(127)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
    _, status, usage = os.wait4(child, 0)  # retried after a forwarded signal (PEP 475)
    reaped, child = child, 0  # its pid may be reused now: forward nothing more
    code = os.waitstatus_to_exitcode(status)
    result = {"pid": reaped, "exit_code": code, "maxrss_kib": usage.ru_maxrss,
              "fork_floor_kib": floor, "cpu_seconds": usage.ru_utime + usage.ru_stime}  # fmt: skip
    with open(report + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(report + ".tmp", report)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
