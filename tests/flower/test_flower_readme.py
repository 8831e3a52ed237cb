"""The example's README, sections 1 and 2a, run as written: ``secagg serve`` + 3 key
holders, a Flower SuperLink and 3 SuperNodes (each with its own node configuration), and
``flwr run`` of the example app (no Ray). The final model must be plaintext FedAvg's
(same seeds) within 1e-6, and the deployment FINISHED after 2 rounds.

Separate processes for every party (~45 s); part of ``make test``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.clientapp import ClientApp

from clients.flower import ModelLayout
from clients.flower.example.secagg_flower_example import server_app, task

from ._grid import InProcessGrid

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"  # its section "Use with Flower"


def _block(title: str) -> str:
    text = README.read_text()
    start = text.index(f"### {title}", text.index("## Use with Flower\n"))
    end = re.compile(r"\n##+ ").search(text, start + 1).start()  # type: ignore[union-attr]
    (block,) = re.findall(r"```sh\n(.*?)```", text[start:end], re.S)
    return str(block)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _started_by(group: int) -> list[int]:
    """The processes of process group ``group`` and every process below them (a daemon
    may start its own session), read from /proc before anything is killed."""
    parents: dict[int, list[int]] = {}
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parents.setdefault(int(fields[1]), []).append(pid)
            if int(fields[2]) == group:
                members.append(pid)
    found, todo = set(members), list(members)
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def plaintext_fedavg() -> np.ndarray:
    config = {"num-server-rounds": 2, "local-epochs": 1, "lr": 0.1, "seed": 0, "result-file": ""}
    nodes = [{"partition-id": i, "num-partitions": 3} for i in range(3)]
    app = ClientApp()
    app.train()(task.train)
    result = server_app.run(InProcessGrid(app, nodes, config), config, secagg=False)
    return ModelLayout.of(result.arrays).flatten(result.arrays)


def test_readme_flower_deployment_runs(tmp_path: Path) -> None:
    script = _block("1. The deployment") + _block("2a. Deployment")
    script = script.replace("$((39100 + i))", "$((BASE + i))")
    for port in ("50051", "39090"):
        script = script.replace(port, str(_free_port()))
    base = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "W": str(tmp_path), "BASE": str(base)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    proc = subprocess.Popen(
        ["bash", "-ec", script], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        for pid in _started_by(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    assert "model length 2410" in output and '"state": "FINISHED"' in output, output
    error = float(np.abs(np.load(tmp_path / "final.npy") - plaintext_fedavg()).max())
    assert error < 1e-6, error
