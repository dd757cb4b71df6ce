"""Hostile input gets one clear line and exit 2 — never a traceback or a hang (#16.5).

Each corpus case (:mod:`tests.reliability.hostile_corpus`, ~270 argv lists: broken
pipeline files, calendar-edge and oversized partitions, bad CLI arguments and
addresses, malformed traces) runs in-process through ``CliRunner`` under a
per-case timeout. A case passes when the exit code is the allowed one, the
output holds no ``Traceback``, the error is on one line, and nothing was
created in the daskflow home.
"""

from __future__ import annotations

import os
import pathlib

import pytest
from click.testing import CliRunner

from daskflow.cli import main
from tests.reliability.hostile_corpus import CASES, write_corpus

#: generous per-case bound: every case is a parse/load/plan failure (milliseconds to ~2 s)
CASE_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> pathlib.Path:
    return write_corpus(tmp_path_factory.mktemp("hostile-corpus"))


def invoke(argv: list[str], home: pathlib.Path):
    env = {"DASKFLOW_HOME": str(home), "DASKFLOW_DEBUG": ""}
    return CliRunner().invoke(main, argv, env=env, catch_exceptions=True)


def error_lines(output: str) -> list[str]:
    """The lines that carry the error (click's usage lines are its standard two-line preamble)."""
    return [line for line in output.splitlines()
            if line.strip() and not line.startswith(("Usage:", "Try '")) and "warn" not in line.lower()]


@pytest.mark.timeout(CASE_TIMEOUT_S)
@pytest.mark.parametrize("case_id, argv, codes", CASES, ids=[c[0] for c in CASES])
def test_hostile_case_fails_with_one_clear_line(case_id, argv, codes, corpus_dir, daskflow_home, monkeypatch):
    monkeypatch.chdir(daskflow_home.parent)
    argv = [a.replace("{d}", str(corpus_dir)) for a in argv]
    before = sorted(os.listdir(daskflow_home))
    result = invoke(argv, daskflow_home)
    output = result.output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in codes, (result.exit_code, output[-2000:])
    if result.exit_code == 2:
        lines = error_lines(output)
        assert len(lines) == 1, lines[:5]
        assert lines[0].startswith(("error:", "Error:")), lines[0]
        assert len(lines[0]) < 20_000
    if argv[0] in ("runs", "lineage", "assets", "explain", "decisions", "config", "cluster", "bench", "model"):
        assert sorted(os.listdir(daskflow_home)) == before, "a read-only or refused command created files"


def test_keyboard_interrupt_is_one_line_and_exit_130(corpus_dir, daskflow_home):
    (corpus_dir / "interrupt.py").write_text("raise KeyboardInterrupt\n")
    result = invoke(["assets", str(corpus_dir / "interrupt.py")], daskflow_home)
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output and len(error_lines(result.output)) == 1


def test_unexpected_exception_is_one_line_with_the_debug_hint(monkeypatch, daskflow_home):
    import daskflow.cli.config as config_cli

    def broken():
        raise ZeroDivisionError("division by zero somewhere deep")

    monkeypatch.setattr(config_cli.config_lib, "effective_config", broken)
    result = invoke(["config", "show"], daskflow_home)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    (line,) = error_lines(result.output)
    assert "ZeroDivisionError" in line and "DASKFLOW_DEBUG=1" in line


def test_debug_env_shows_the_traceback(monkeypatch, daskflow_home):
    import daskflow.cli.config as config_cli

    monkeypatch.setattr(config_cli.config_lib, "effective_config", lambda: 1 / 0)
    result = CliRunner().invoke(main, ["config", "show"], env={"DASKFLOW_DEBUG": "1", "DASKFLOW_HOME": str(daskflow_home)})
    assert isinstance(result.exception, ZeroDivisionError)


def test_the_corpus_is_large():
    assert len(CASES) >= 100
