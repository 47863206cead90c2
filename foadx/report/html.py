"""A self-contained HTML page from Markdown-like sections and PNG figures: every image is embedded
as a data URI, the style is inline, and nothing refers to a URL, a script or a font, so the page
opens offline and can be attached to a CI run as one file."""

from __future__ import annotations

import base64
import html
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError, first_line
from foadx.report.kinds import get_kind
from foadx.report.markdown import render_markdown

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}"
         "img{max-width:100%;border:1px solid #eee}code{background:#f4f4f4}")


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells as HTML: split at the pipes ``markdown_cell`` left unescaped,
    its ``\\|`` and entities undone, then escaped for HTML."""
    cells = re.split(r"(?<!\\)\|", line.strip().removeprefix("|").removesuffix("|"))
    return [_inline(cell.replace("\\|", "|")) for cell in cells]


def _inline(text: str) -> str:
    return html.escape(html.unescape(text.strip()))


def _table(lines: list[str]) -> str:
    rows = [_cells(line) for line in lines]
    body = [row for row in rows[1:] if not all(set(cell) <= set("-: ") for cell in row)]
    head = "".join(f"<th>{cell}</th>" for cell in rows[0])
    return f"<table><tr>{head}</tr>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body) + "</table>"


def markdown_to_html(text: str) -> str:
    """The subset foadx's own Markdown uses: headings, pipe tables, paragraphs."""
    parts, table = [], []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        if table:
            parts.append(_table(table))
            table = []
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            parts.append(f"<h{level}>{_inline(line.lstrip('#'))}</h{level}>")
        elif line.strip():
            parts.append(f"<p>{_inline(line)}</p>")
    return "\n".join(parts)


def embedded_image(path: Path, caption: str) -> str:
    """A ``<figure>`` holding the PNG at ``path`` as a data URI, captioned."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def html_page(title: str, markdown: str, figures: dict[str, Path]) -> str:
    """A whole page: ``markdown`` (foadx's subset) as HTML, then ``figures`` ({caption: PNG path})."""
    images = "\n".join(embedded_image(path, caption) for caption, path in figures.items())
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{markdown_to_html(markdown)}\n{images}\n</body></html>\n")


def report_figures(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """The figures a report of this kind carries the data for (``ReportKind.figures``), written
    into ``folder``: {caption: PNG path}; {} for kinds without figures.

    Raises:
        BadInputError: the kind is not registered, or its numbers cannot be drawn (e.g. 1e308
            where a latency belongs; matplotlib's own warnings are kept off the terminal).
        MissingDependencyError: matplotlib is absent.
    """
    figures = get_kind(report.get("kind")).figures
    if figures is None:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return figures(report, folder)
        except (ValueError, OverflowError, ZeroDivisionError) as error:
            raise BadInputError(f"the {report.get('kind')} report's numbers cannot be drawn: "
                                f"{first_line(error)}") from None


def render_html(report: dict[str, Any]) -> str:
    """A report of any kind as one self-contained page (HTML text): its Markdown and its figures.

    Raises:
        BadInputError: the kind is not registered or has no Markdown rendering.
        MissingDependencyError: the kind has figures and matplotlib is absent.
    """
    with tempfile.TemporaryDirectory(prefix="foadx-report-") as scratch:
        return html_page(f"foadx {report['kind']}", render_markdown(report), report_figures(report, Path(scratch)))
