"""Log lines as text or JSON (:mod:`secagg.logging_setup`): one object per line with the
fields an operator's tools expect, ``extra=`` fields kept, a traceback folded into one
string; the format chosen by option, else environment, else text.

The end-to-end check (every line of real processes parsed as JSON) is
``tests/integration/test_operability.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import pytest

from secagg import constants as C
from secagg import logging_setup
from secagg.errors import ConfigError


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("secagg.server", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_a_record_is_one_json_object_on_one_line() -> None:
    formatter = logging_setup.formatter("json", "kh2")
    line = formatter.format(_record("round %d: %s", 3, "multi\nline", client="c1"))
    assert "\n" not in line
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["logger"] == "secagg.server"
    assert record["party"] == "kh2" and record["message"] == "round 3: multi\nline"
    assert record["client"] == "c1"  # an extra= field
    assert record["ts"].endswith("+00:00")


def test_a_traceback_is_one_string_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = logging_setup.formatter("json", "server").format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_text_is_the_layout_the_commands_had() -> None:
    line = logging_setup.formatter("text", "c1").format(_record("hello"))
    assert line.endswith(" c1 WARNING hello")


def test_the_option_wins_over_the_environment_which_wins_over_text() -> None:
    env = {C.LOG_FORMAT_ENV: "JSON"}
    assert logging_setup.chosen_format("text", env) == "text"
    assert logging_setup.chosen_format(None, env) == "json"
    assert logging_setup.chosen_format(None, {}) == "text"
    with pytest.raises(ConfigError, match="yaml"):
        logging_setup.chosen_format(None, {C.LOG_FORMAT_ENV: "yaml"})


def test_the_party_comes_from_the_command_line() -> None:
    ns = argparse.Namespace
    assert logging_setup.party_of(ns(command="client", name="c3")) == "c3"
    assert logging_setup.party_of(ns(command="keyholder", index=2)) == "kh2"
    assert logging_setup.party_of(ns(command="serve")) == "server"


def test_configure_replaces_only_its_own_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = list(root.handlers)  # may hold one configure() left by an in-process CLI test
    others = [h for h in before if not isinstance(h, logging_setup._Stderr)]
    level = root.level
    try:
        logging_setup.configure("text", "c1")
        logging_setup.configure("json", "c1")
        assert [h for h in root.handlers if h in others] == others  # left alone
        assert len([h for h in root.handlers if h not in others]) == 1  # its own, replaced
        logging.getLogger("secagg.test").info("hello %s", "there")
        err = capsys.readouterr().err.strip().splitlines()
        assert json.loads(err[-1])["message"] == "hello there"
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)
