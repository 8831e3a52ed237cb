"""Every mitigation row of the threat model names tests that exist (CI then runs them)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "threat_model" / "THREAT_MODEL.md"
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _rows() -> list[str]:
    text = MODEL.read_text()
    table = text.split("## Attacks, mitigations and the tests that show them", 1)[1]
    table = table.split("\n## ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("|") and "---" not in line][1:]


def test_every_mitigation_row_names_a_test() -> None:
    rows = _rows()
    assert len(rows) >= 12
    for row in rows:
        assert REF.search(row), f"row names no test: {row[:80]}"


def test_every_named_test_exists() -> None:
    missing = []
    for row in _rows():
        for path, name in REF.findall(row):
            source = (ROOT / path).read_text() if (ROOT / path).exists() else ""
            if not re.search(rf"^def {name}\(", source, flags=re.M):
                missing.append(f"{path}::{name}")
    assert not missing, f"threat model names tests that do not exist: {missing}"
