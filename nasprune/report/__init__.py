"""Reports on a search: tables first (``tables``), figures from them (``figures``), one HTML page (``page``)
and a live view (``dashboard``).

``make_page(study)`` is the whole pipeline; ``nasprune report`` writes its result to a file and
``nasprune dashboard`` serves it, re-reading the storage on every refresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nasprune.report.figures import SECTIONS, Section, build_sections
from nasprune.report.page import PageOptions, render_page, write_report
from nasprune.report.tables import ReportTables, build_tables, hypervolume_2d

if TYPE_CHECKING:
    import optuna

__all__ = [
    "SECTIONS", "PageOptions", "ReportTables", "Section", "build_sections", "build_tables", "hypervolume_2d",
    "make_page", "render_page", "write_report",
]


def make_page(study: optuna.Study, *, storage_arg: str | None = None,
              options: PageOptions = PageOptions()) -> tuple[ReportTables, str]:
    """Tables and the HTML page for ``study`` (``storage_arg`` is repeated in the export commands)."""
    tables = build_tables(study, storage_arg=storage_arg)
    return tables, render_page(tables, build_sections(tables, study), options)
