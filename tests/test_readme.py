"""The README's examples are real code: extract them and run them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_readme_library_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # our own file, not input
    mean = namespace["mean"]
    total = namespace["total"]
    weights = namespace["weights"]
    assert abs(float(total[0]) / sum(weights) - float(mean[0])) < 1e-6  # type: ignore[index, arg-type]


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def test_readme_bring_your_own_model_runs(tmp_path: Path) -> None:
    """The section's module is the shipped CNN's code; its shell snippet runs a deployment
    of 3 clients for 3 rounds with DP and ends FINISHED with every epsilon within 3."""
    section = _section("Bring your own model")
    (module,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (script,) = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert (REPO / "clients" / "models" / "digits_cnn.py").read_text().endswith(module)
    (tmp_path / "my_cnn.py").write_text(module)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = str(Path(sys.executable).parent)  # python and secagg of this environment
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        ["bash", "-c", script.replace("127.0.0.1:50051", f"127.0.0.1:{port}")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever the snippet left running
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    assert "model length 1914" in output and '"state": "FINISHED"' in output, output
    for client in ("c1", "c2", "c3"):
        state = tmp_path / "byo" / "clients" / client / "state" / "privacy.json"
        spent = json.loads(state.read_text())["epsilon"]
        assert sorted(spent) == ["1", "2", "3"] and 0 < spent["3"] <= 3.0, (client, spent)
