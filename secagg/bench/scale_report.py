"""``secagg bench --scale``: memory verdicts, phases from the processes' logs, the table.

The parties log with ``%(asctime)s`` (``2026-12-04 18:23:35,066 server INFO ...``);
:func:`parse_log` turns the lines this benchmark knows into :class:`LogEvent` values and
:func:`phases` into wall times. A line the processes no longer write leaves its phase
``None`` and is listed under ``missing_log_lines``, so a changed log format shows up in
the report instead of as a wrong number.

Memory allowances are those of issue 13: server and key holders at most
``512 MiB + 40 bytes/parameter``, clients ``768 MiB + 24 bytes/parameter``.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from secagg.bench.results import Json

MIB = 1 << 20
#: role -> (base allowance in bytes, bytes per parameter above it)
ALLOWANCES: Mapping[str, tuple[int, int]] = {
    "server": (512 * MIB, 40),
    "keyholder": (512 * MIB, 40),
    "client": (768 * MIB, 24),
}
#: Largest acceptable |released - plaintext weighted mean|.
MAX_ABS_ERROR = 1e-6
ROUND = 1
#: The server's in-service fold timing this benchmark reads if the server logs it.
FOLD_LINE = "round %d: upload from %s folded in %.2f s (%.1fM params/s; %.1fM per CPU-second)"

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)$")
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern.replace("{R}", str(ROUND))))
    for kind, pattern in (
        ("listening", r"server INFO listening on "),
        ("round_open", r"round {R}: open\b"),
        ("accepted", r"round {R}: accepted upload from (?P<subject>[\w.-]+)"),
        (
            "fold",
            r"round {R}: upload from (?P<subject>\S+) folded in (?P<value>[\d.]+) s",
        ),
        ("closed", r"round {R}: closed with "),
        ("locked", r"round {R}: key holder (?P<subject>\d+) locked"),
        ("decrypted", r"round {R}: decrypting done"),
        ("released", r"round {R}: released model"),
        ("ceremony_done", r"ceremony of epoch \d+ done"),
        ("kh_locked", r"round {R} locked to its aggregate"),
        ("uploaded", r"round {R} uploaded \((?P<value>\d+) bytes\)"),
    )
)


@dataclass(frozen=True)
class LogEvent:
    """One recognised log line: when (POSIX seconds), who wrote it, what it says."""

    when: float
    party: str
    kind: str
    subject: str = ""
    value: float | None = None


def parse_log(party: str, text: str) -> list[LogEvent]:
    """The recognised events of one party's log (lines without a timestamp are skipped)."""
    events = []
    for line in text.splitlines():
        stamped = _STAMP.match(line)
        if stamped is None:
            continue
        when = datetime.strptime(stamped.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for kind, pattern in _PATTERNS:
            found = pattern.search(stamped.group(2))
            if found is not None:
                groups = found.groupdict()
                value = groups.get("value")
                events.append(
                    LogEvent(
                        when,
                        party,
                        kind,
                        groups.get("subject") or "",
                        None if value is None else float(value),
                    )
                )
                break
    return events


def quorum_not_met(server_log: str) -> list[str]:
    """Every line of the server's log that mentions ``QuorumNotMet``."""
    return [line for line in server_log.splitlines() if "QuorumNotMet" in line]


def _times(events: Iterable[LogEvent], kind: str) -> list[float]:
    return sorted(e.when for e in events if e.kind == kind)


def _first(times: Sequence[float]) -> float | None:
    return times[0] if times else None


def _last(times: Sequence[float]) -> float | None:
    return times[-1] if times else None


def phases(
    server: Sequence[LogEvent], starts: Mapping[str, float], uploaded: Mapping[str, float]
) -> tuple[dict[str, float | None], list[str]]:
    """Wall times (s) of the round's phases and the names of phases the logs lack.

    Parameters
    ----------
    server
        The server's events.
    starts
        When the benchmark started each client.
    uploaded
        When each client's upload was accepted (the server's ``accepted`` events).
    """
    acc = sorted(uploaded.values())
    open_, closed = _first(_times(server, "round_open")), _first(_times(server, "closed"))
    decrypted = _first(_times(server, "decrypted"))
    released = _first(_times(server, "released"))
    wanted: dict[str, tuple[float | None, float | None]] = {
        "ceremony (server listening -> round open)": (
            _first(_times(server, "listening")),
            open_,
        ),
        **{
            f"{c}: process start -> upload accepted": (start, uploaded.get(c))
            for c, start in starts.items()
        },
        "first -> last upload accepted": (_first(acc), _last(acc)),
        "last upload accepted -> round closed": (_last(acc), closed),
        "round closed -> every key holder locked": (closed, _last(_times(server, "locked"))),
        "round closed -> decrypted": (closed, decrypted),
        "decrypted -> released": (decrypted, released),
        "first upload accepted -> release": (_first(acc), released),
        "round open -> release": (open_, released),
    }
    out: dict[str, float | None] = {}
    for name, (start, end) in wanted.items():
        out[name] = None if start is None or end is None else end - start
    return out, [name for name, value in out.items() if value is None]


def accepted_uploads(server: Sequence[LogEvent]) -> dict[str, float]:
    """When the server accepted each client's upload (its first ``accepted`` line)."""
    out: dict[str, float] = {}
    for e in server:
        if e.kind == "accepted":
            out.setdefault(e.subject, e.when)
    return out


def fold_throughput(events: Sequence[LogEvent], parameters: int) -> Json | None:
    """In-service parse + fold throughput from the server's fold lines (None: not logged)."""
    seconds = [e.value for e in events if e.kind == "fold" and e.value]
    if not seconds:
        return None
    rates = [parameters / s for s in seconds]
    return {
        "uploads": len(seconds),
        "seconds": seconds,
        "parameters_per_second_median": statistics.median(rates),
        "parameters_per_second_min": min(rates),
    }


def memory_row(
    party: str, role: str, maxrss_kib: int, parameters: int, *, fork_floor_kib: int = 0
) -> Json:
    """One party's peak RSS against its allowance: ``(rss - base) / parameters <= limit``.

    ``fork_floor_kib`` is the benchmark's own peak RSS when it forked the party: a reading
    at or below it may be the parent's pages, so it is only an upper bound
    (:mod:`secagg.bench.scale_processes`).
    """
    base, limit = ALLOWANCES[role]
    rss = maxrss_kib * 1024
    over = (rss - base) / parameters
    return {
        "party": party,
        "role": role,
        "peak_rss_bytes": rss,
        "peak_rss_mib": rss / MIB,
        "exact": maxrss_kib > fork_floor_kib,
        "base_allowance_mib": base / MIB,
        "bytes_per_param_over_base": over,
        "limit_bytes_per_param": limit,
        "pass": over <= limit,
    }


def _notes(row: Json) -> str:
    notes = [] if row["exact"] else ["upper bound: not above the reaper's RSS at fork"]
    if row.get("killed"):
        notes.append("SIGKILLed after the grace period")
    elif row.get("exit_code"):
        notes.append(f"exit code {row['exit_code']}")
    return f" ({'; '.join(notes)})" if notes else ""


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:,.2f} {unit}"


def format_size(result: Json) -> list[str]:
    """The table of one size's run."""
    n = result["parameters"]
    cfg = result["deployment"]
    head = (
        f"== {n:,} parameters: {cfg['clients']} clients "
        f"({'one after another' if cfg['stagger'] else 'concurrent'}), "
        f"{cfg['keyholders']} key holders (t = {cfg['threshold']}) =="
    )
    failed = [f"FAILED: {result['error'].splitlines()[0]}"] if result.get("error") else []
    lines = [
        head,
        *failed,
        f"{'party':<8}{'peak RSS':>14}{'(RSS - base)/param':>22}{'allowance':>24}"
        f"{'CPU':>10}  verdict",
    ]
    for row in result["memory"]:
        allowance = f"{row['base_allowance_mib']:.0f} MiB + {row['limit_bytes_per_param']} B/p"
        lines.append(
            f"{row['party']:<8}{row['peak_rss_mib']:>10,.1f} MiB"
            f"{row['bytes_per_param_over_base']:>20,.1f} B{allowance:>24}"
            f"{_fmt(row.get('cpu_seconds')):>10}  "
            f"{'PASS' if row['pass'] else 'FAIL'}{_notes(row)}"
        )
    lines.append("phases (wall time from the processes' own log timestamps)")
    lines += [f"  {name:<48}{_fmt(sec):>14}" for name, sec in result["phases"].items()]
    uploads = result["upload_bytes"]
    if uploads:
        size = max(uploads.values())
        lines.append(f"upload size: {size:,} bytes per client ({size / n:.2f} bytes/param)")
    fold = result["fold_throughput"]
    lines.append(
        "in-service parse+fold: "
        + (
            f"{fold['parameters_per_second_median'] / 1e6:.2f}M params/s (median of "
            f"{fold['uploads']} uploads)"
            if fold
            else "not in the server log (needs a line like "
            f"'{FOLD_LINE % (ROUND, 'c1', 0.5, 20.0, 25.0)}')"
        )
    )
    error = result["max_abs_error"]
    lines.append(
        "released model: not checked (no release)"
        if error is None
        else f"released model: max abs error {error:.3g} vs the plaintext weighted mean "
        f"(<= {MAX_ABS_ERROR:g}): {'PASS' if result['correct'] else 'FAIL'}"
    )
    qnm = result["quorum_not_met"]
    lines.append(f"QuorumNotMet in the server log: {len(qnm)}: {'FAIL' if qnm else 'PASS'}")
    if result["missing_log_lines"]:
        lines.append("phases the logs did not show: " + "; ".join(result["missing_log_lines"]))
    lines.append(f"total wall time of the run: {result['wall_seconds']:,.1f} s")
    return lines


def format_scale_report(report: Json) -> str:
    """The printed report of a ``secagg bench --scale`` run."""
    machine = report["machine"]
    lines = [
        f"secagg bench --scale | {machine['cpu_model']} | {machine['logical_cores']} cores",
        f"command: {report['command']}",
    ]
    for result in report["results"]:
        lines += ["", *format_size(result)]
    return "\n".join(lines)
