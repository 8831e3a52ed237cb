"""Following a demo run: what the server released, read from the evidence it leaves.

The demo reads the server's store and blobs and the clients' privacy records through a
:class:`~secagg.protocol.layout.DeploymentLayout`, prints one table row per released
round (and a progress bar on a terminal), and returns the per-round records that go
into ``summary.json``.

Notes
-----
These readers look at the server's SQLite store directly (tables ``rounds``, ``uploads``
and ``withdrawals``): the demo is a local observer of its own run, not a protocol party.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from typing import Any

import numpy.typing as npt

from clients.demo import baselines
from clients.demo.processes import Processes
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import decode_model
from secagg.protocol.roster import Party

#: How long the demo waits for all rounds before it gives up (seconds).
FOLLOW_TIMEOUT_SECONDS = 3600.0


def released_models(layout: DeploymentLayout, length: int) -> dict[int, npt.NDArray[Any]]:
    """Round -> released model vector, read from the server's store."""
    from secagg.proto import service_pb2 as pb

    if not layout.database.exists():
        return {}
    out = {}
    with closing(sqlite3.connect(layout.database)) as conn:
        try:
            rows = conn.execute("SELECT round, release FROM rounds WHERE release IS NOT NULL")
        except sqlite3.OperationalError:  # the server has created the file, not yet its tables
            return {}
        for rnd, blob in rows:
            rel = pb.Release.FromString(blob)
            data = (layout.blobs / rel.model_hash.hex()).read_bytes()
            out[int(rnd)] = decode_model(data, length=length)[1]
    return out


def withdrawn(layout: DeploymentLayout) -> dict[str, str]:
    """Client -> reason, for every client that withdrew."""
    with closing(sqlite3.connect(layout.database)) as conn:
        return {c: r for c, r in conn.execute("SELECT client_id, reason FROM withdrawals")}


def round_stats(layout: DeploymentLayout, rnd: int) -> tuple[int, int]:
    """(contributors, upload bytes) of a round."""
    with closing(sqlite3.connect(layout.database)) as conn:
        hashes = [
            h for (h,) in conn.execute("SELECT ciphertext_hash FROM uploads WHERE round=?", (rnd,))
        ]
    return len(hashes), sum((layout.blobs / h.hex()).stat().st_size for h in hashes)


def epsilons(layout: DeploymentLayout, clients: Sequence[Party], rnd: int) -> dict[str, float]:
    """Client -> ε spent after round ``rnd``, from each client's own privacy record."""
    out = {}
    for c in clients:
        path = layout.state_dir(c.name, "client") / "privacy.json"
        if path.exists():
            eps = json.loads(path.read_text()).get("epsilon", {})
            if str(rnd) in eps:
                out[c.name] = float(eps[str(rnd)])
    return out


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def follow(
    layout: DeploymentLayout,
    clients: Sequence[Party],
    federation: Any,
    hidden: int,
    *,
    rounds: int,
    length: int,
    procs: Processes,
    to_model: Callable[[int, Any], Any] = lambda _, release: release,
) -> list[dict[str, Any]]:
    """Print progress until every round is released; return the per-round records.

    ``to_model(round, release)`` is the model a release stands for, called once per round
    in order (the release itself under local DP; see :func:`clients.demo.models_of`).
    """
    print(
        f"{'round':>5} {'accuracy':>9} {'loss':>7} {'max eps':>8} {'clients':>8} "
        f"{'upload MB':>10} {'seconds':>8}"
    )
    rows: list[dict[str, Any]] = []
    last = time.monotonic()
    deadline = time.monotonic() + FOLLOW_TIMEOUT_SECONDS
    while len(rows) < rounds and time.monotonic() < deadline:
        procs.check()
        models = released_models(layout, length)
        for rnd in sorted(models):
            if rnd <= len(rows):
                continue
            vector = to_model(rnd, models[rnd])
            acc, loss = baselines.test_metrics(federation, vector, hidden)
            count, size = round_stats(layout, rnd)
            now = time.monotonic()
            epsilon = epsilons(layout, clients, rnd)
            seconds = now - last
            row: dict[str, Any] = {
                "round": rnd,
                "accuracy": acc,
                "loss": loss,
                "epsilon": epsilon,
                "clients_aggregated": count,
                "upload_bytes": size,
                "seconds": seconds,
            }
            last = now
            rows.append(row)
            clear = "\r" + " " * 40 + "\r" if sys.stdout.isatty() else ""
            print(
                f"{clear}{rnd:>5} {acc:>9.3f} {loss:>7.3f} "
                f"{max(epsilon.values(), default=0):>8.3f} {count:>8} {size / 1e6:>10.2f} "
                f"{seconds:>8.1f}"
            )
        if sys.stdout.isatty():
            print(f"\r{_bar(len(rows), rounds)}", end="", flush=True)
        time.sleep(0.5)
    if sys.stdout.isatty():
        print()
    return rows
