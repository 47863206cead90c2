"""Running the CLI in-process and reading its one error line, shared by the CLI tests."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from foadx_cli.app import app

# progress in a non-terminal: 'foadx: <stage> <done>[/<total>][, detail] (<seconds> s)'
PROGRESS_LINE = re.compile(r"^foadx: (?!error: |warning: ).* \(\d+ s\)$")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="foadx")


def error_line(result) -> str:
    """The one line a failing command prints (progress and warning lines aside), checked to be the only one."""
    lines = [line for line in result.output.splitlines()
             if line.strip() and not PROGRESS_LINE.match(line) and not line.startswith("foadx: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("foadx: error: ") and "Traceback" not in result.output, result.output
    return lines[0]
