"""Report schemas, reading, and Markdown renderings."""

from foadx.report.markdown import render_markdown
from foadx.report.schema import read_report, validate_report

__all__ = ["read_report", "render_markdown", "validate_report"]
