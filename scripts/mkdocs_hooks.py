"""mkdocs hook (mkdocs.yml `hooks:`): puts each command's generated reference
(scripts/options_table.py, read from the Typer app) into the CLI reference page at build time.

mkdocs-typer2 0.4.1 was tried first and does not work with this app under typer 0.29: its native
engine fails on ``TyperOption`` (no ``.type``), its legacy engine (``typer ... utils docs``) lists
the root group without any of its commands."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from options_table import commands_reference  # noqa: E402

MARKER = "<!-- cli-commands: filled in by scripts/mkdocs_hooks.py from the Typer app -->"
END = "<!-- cli-commands:end -->"  # what lies between is the note a reader of the repository sees


def on_page_markdown(markdown: str, page, config, files) -> str:
    """The CLI reference page with its marker replaced; every other page unchanged."""
    if page.file.src_uri != "cli-reference.md":
        return markdown
    if MARKER not in markdown or END not in markdown:
        raise ValueError("docs/cli-reference.md lost its generated-commands markers")
    before, rest = markdown.split(MARKER, 1)
    return before + commands_reference() + rest.split(END, 1)[1]  # the repository's note gives way to the commands
