"""Report registry (kinds, envelope), schemas, reading, and Markdown renderings."""

from foadx.report.kinds import REPORT_KINDS, ReportKind, envelope, get_kind
from foadx.report.markdown import render_markdown
from foadx.report.schema import read_report, validate_report

__all__ = ["REPORT_KINDS", "ReportKind", "envelope", "get_kind", "read_report", "render_markdown", "validate_report"]
