"""Prints the README's table of every option of every `foadx` command, generated from the CLI
itself so it cannot drift (tests/test_readme.py compares the README with this output).

    .venv/bin/python scripts/options_table.py
"""

from __future__ import annotations

import typer

from foadx_cli.app import app


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
        lines.append(f"| `{flags}` | {where} | {meaning.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(options_table())
