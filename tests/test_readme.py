"""The README's library example is real code: extract it and run it."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_library_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # our own file, not input
    mean = namespace["mean"]
    total = namespace["total"]
    weights = namespace["weights"]
    assert abs(float(total[0]) / sum(weights) - float(mean[0])) < 1e-6  # type: ignore[index, arg-type]
