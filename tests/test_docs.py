"""The documentation is part of the product: the site builds in strict mode, every `foadx ...`
command in a bash block of the README and the docs parses against the real CLI (the command,
every option, the argument count), every `make X` they name is a Makefile target, every command's
help opens with a summary and an example that parses, and the API page lists every public name."""

from __future__ import annotations

import functools
import html
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

import foadx
from foadx_cli.app import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_OPERATORS = {">", ">>", "2>", "<", "|", "||", "&&", ";", "&"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _options_table_module():
    spec = importlib.util.spec_from_file_location("options_table", ROOT / "scripts" / "options_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shell_lines(markdown: str) -> list[str]:
    """The command lines of a page's bash/sh/console blocks, continuation lines joined."""
    lines = []
    for language, body in FENCE.findall(markdown):
        if language in ("bash", "sh", "shell", "console"):
            lines += [line.removeprefix("$ ").strip() for line in body.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line]


def foadx_arguments(line: str) -> list[str] | None:
    """The arguments after `foadx` (or `.venv/bin/foadx`, `-m foadx_cli`), cut at the first shell
    operator and comment; None when the line does not run foadx."""
    if not re.search(r"\bfoadx(_cli)?\b", line):
        return None
    tokens = shlex.split(line, comments=True)
    for index, token in enumerate(tokens):
        if token == "foadx" or token.endswith("/foadx") or (token == "foadx_cli" and tokens[index - 1] == "-m"):
            arguments = tokens[index + 1:]
            cut = next((i for i, t in enumerate(arguments) if t in SHELL_OPERATORS), len(arguments))
            return arguments[:cut]
        if index == 0 and token not in ("torchrun", "time"):
            return None
    return None


@functools.cache
def cli_group():
    return typer.main.get_command(app)


def parse_error(arguments: list[str]) -> str | None:
    """Parses `foadx ARGUMENTS` as the CLI would, running nothing: None if it parses, else why not."""
    group = cli_group()
    try:
        root = group.make_context("foadx", list(arguments), resilient_parsing=False)
        remaining = [*root._protected_args, *root.args]
        if not remaining:
            return None
        name, command, rest = group.resolve_command(root, remaining)
        command.make_context(name, rest, parent=root, resilient_parsing=False)
    except Exception as error:  # Click's usage errors (vendored by typer), duck-typed as app.py does
        if getattr(error, "exit_code", None) == 0 and not hasattr(error, "format_message"):
            return None  # --help / --version: an eager option that ends the parse successfully
        return f"{type(error).__name__}: {error.format_message() if hasattr(error, 'format_message') else error}"
    return None


def documented_commands() -> list[tuple[str, str]]:
    return [(page.name, line) for page in PAGES for line in shell_lines(page.read_text())
            if foadx_arguments(line) is not None]


def test_the_checker_refuses_what_the_cli_refuses():
    assert parse_error(["prune", "mobilefacenet", "--data", "demo", "--out", "out/x", "--ratio", "0.5"]) is None
    assert parse_error(["--version"]) is None
    assert "No such option" in parse_error(["prune", "mobilefacenet", "--data", "demo", "--out", "o", "--ratoi", "0.5"])
    assert "Missing option" in parse_error(["prune", "mobilefacenet", "--data", "demo"])
    assert "No such command" in parse_error(["prunes", "mobilefacenet"])
    assert "unexpected extra argument" in parse_error(["inspect", "mobilefacenet", "vgg16_cifar"])
    assert "Invalid value for '--images'" in parse_error(["prune", "m", "--data", "d", "--out", "o", "--images", "many"])
    assert foadx_arguments("foadx report out/latency.json > out/latency.md  # Markdown") == ["report", "out/latency.json"]
    assert foadx_arguments("torchrun --nproc_per_node 2 -m foadx_cli finetune x") == ["finetune", "x"]
    assert foadx_arguments("make demo") is None


def test_every_documented_command_parses():
    commands = documented_commands()
    assert len(commands) >= 40 and {page for page, _ in commands} >= {"README.md", "getting-started.md"}
    failures = [f"{page}: {line}: {error}" for page, line in commands
                if (error := parse_error(foadx_arguments(line))) is not None]
    assert failures == []


def test_every_make_target_named_exists():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    named = set()
    for page in PAGES:
        text = page.read_text()
        named |= set(re.findall(r"`make ([\w-]+)", text))
        named |= {shlex.split(line)[1] for line in shell_lines(text) if line.startswith("make ")}
    assert {"demo", "test", "docs"} <= named
    assert sorted(named - targets) == []


def test_every_command_help_opens_with_a_summary_and_an_example_that_parses():
    help_parts = _options_table_module().help_parts
    group = typer.main.get_command(app)
    summary, examples, _ = help_parts(group.help)  # `foadx --help` too
    assert summary.endswith(".") and [parse_error(shlex.split(e)[1:]) for e in examples] == [None]
    for name, command in group.commands.items():
        summary, examples, _ = help_parts(command.help)
        assert summary and "\n" not in summary and summary.endswith("."), name
        assert examples and all(example.split()[:2] == ["foadx", name] for example in examples), name
        assert [parse_error(shlex.split(example, comments=True)[1:]) for example in examples] == [None] * len(examples)
    output = subprocess.run([sys.executable, "-m", "foadx_cli", "prune", "--help"], capture_output=True, text=True,
                            check=False, timeout=60, env={**os.environ, "COLUMNS": "200"}).stdout
    example = help_parts(group.commands["prune"].help)[1][0]
    assert output.index(example) < output.index("--flops-target"), output


def test_the_api_page_renders_every_public_name():
    page = (ROOT / "docs" / "api.md").read_text()
    rendered = {line.split(".")[-1] for line in re.findall(r"^::: ([\w.]+)$", page, re.M)}
    assert rendered == set(foadx.__all__) - {"__version__"}


def strict_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` as `make docs` runs it (not --quiet: mkdocs then stops counting warnings)."""
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, check=False, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_strict_build_fails_on_a_broken_link_or_anchor(tmp_path):
    """The project's validation settings on a two-page site: each broken reference alone fails it."""
    validation = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["validation"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# B\n\n## Here\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(yaml.safe_dump({"site_name": "t", "validation": validation, "nav": ["index.md", "b.md"]}))
    for link, passes in [("b.md#here", True), ("c.md", False), ("b.md#nowhere", False)]:
        (tmp_path / "docs" / "index.md").write_text(f"# A\n\n[b]({link})\n")
        result = strict_build(config, tmp_path / "site")
        assert (result.returncode == 0) is passes, (link, result.stderr)


def test_the_docs_site_builds_in_strict_mode(tmp_path):
    result = strict_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "cli-reference" / "index.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # the page as read, highlighting spans aside
    assert all(f"foadx {name}" in text for name in typer.main.get_command(app).commands)
    assert "foadx prune mobilefacenet --data demo --flops-target 0.636" in text
    assert "Fraction of MACs to remove, one (t, s) for all groups." in text


@pytest.mark.parametrize("page", ["getting-started.md", "commands-prune.md", "latency.md", "trust.md", "changelog.md"])
def test_the_nav_names_the_pages(page):
    assert re.search(rf":\s*{re.escape(page)}$", (ROOT / "mkdocs.yml").read_text(), re.M)
