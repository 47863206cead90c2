"""Generates the CLI reference from the CLI itself, so it cannot drift: the table of every option
of every `foadx` command (docs/cli-reference.md holds it; tests/test_readme.py compares the page
with this output) and each command's summary, example, usage and options (put into the docs site
by scripts/mkdocs_hooks.py at build time).

    .venv/bin/python scripts/options_table.py
"""

from __future__ import annotations

import inspect

import typer

from foadx_cli.app import app

EXAMPLE_HEADING = "Example:"


def options_table() -> str:
    group = typer.main.get_command(app)
    commands = list(group.commands)
    seen: dict[str, dict] = {}
    for name in commands:
        for parameter in group.commands[name].params:
            if parameter.param_type_name != "option" or parameter.name == "help":
                continue
            flags = " / ".join(parameter.opts + parameter.secondary_opts)
            entry = seen.setdefault(flags, {"commands": [], "helps": {}})
            entry["commands"].append(name)
            entry["helps"].setdefault(" ".join((parameter.help or "").split()), []).append(name)
    lines = ["| option | commands | meaning |", "|---|---|---|"]
    for flags, entry in sorted(seen.items(), key=lambda item: (-len(item[1]["commands"]), item[0])):
        where = "all" if len(entry["commands"]) == len(commands) else ", ".join(entry["commands"])
        helps = entry["helps"]
        meaning = next(iter(helps)) if len(helps) == 1 else "<br>".join(
            f"*{', '.join(names)}*: {text}" for text, names in helps.items())
        lines.append(f"| `{flags}` | {where} | {_cell(meaning)} |")
    return "\n".join(lines)


def help_parts(help_text: str) -> tuple[str, list[str], str]:
    """A command's docstring as (one-line summary, its example command lines, the rest).

    The convention every command follows: the first line is the summary; the second paragraph is
    ``Example:`` with the command(s) on the lines under it, indented; the paragraphs after it explain.
    """
    summary, *paragraphs = inspect.cleandoc(help_text).split("\n\n")
    heading, *commands = paragraphs[0].splitlines() if paragraphs else [""]
    if heading.strip() != EXAMPLE_HEADING:
        return " ".join(summary.split()), [], "\n\n".join(paragraphs)
    return " ".join(summary.split()), [line.strip() for line in commands], "\n\n".join(paragraphs[1:])


def commands_reference() -> str:
    """Markdown: per command, its summary, example, usage, explanation and a table of its options."""
    group = typer.main.get_command(app)
    root = group.make_context("foadx", [], resilient_parsing=True)
    sections = []
    for name, command in group.commands.items():
        context = command.make_context(name, [], parent=root, resilient_parsing=True)
        summary, examples, rest = help_parts(command.help or "")
        usage = " ".join(["foadx", name, *command.collect_usage_pieces(context)])
        section = [f"### foadx {name}", "", summary, ""]
        if examples:
            section += ["```bash", *examples, "```", ""]
        section += [f"Usage: `{usage}`", ""] + ([rest, ""] if rest else [])
        section += ["| argument or option | default | meaning |", "|---|---|---|"]
        section += [_parameter_row(parameter) for parameter in command.params if parameter.name != "help"]
        sections.append("\n".join(section))
    return "\n\n".join(sections)


def _parameter_row(parameter) -> str:
    if parameter.param_type_name == "argument":
        flags = (parameter.metavar or parameter.name.upper()).strip("{}")
    else:
        flags = " / ".join(parameter.opts + parameter.secondary_opts)
    default = "required" if parameter.required else (
        "" if parameter.default in (None, False, (), []) else str(parameter.default))
    return f"| `{flags}` | {_cell(default)} | {_cell(' '.join((parameter.help or '').split()))} |"


def _cell(text: str) -> str:
    return text.replace("|", chr(92) + "|")


if __name__ == "__main__":
    print(options_table())
