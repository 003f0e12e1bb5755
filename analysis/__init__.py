"""Analysis of lrbench results: pure DataFrame functions (``tables``), thin
plotting (``plots``), the report folder (``report``) and the one loader that
reads results directories (``load``). Needs neither Ray nor TensorFlow."""

from __future__ import annotations

from analysis.display import display_tables
from analysis.load import Results, load_results
from analysis.report import Report, build_figures, build_tables, write_report

__all__ = [
    "Report",
    "Results",
    "build_figures",
    "build_tables",
    "display_tables",
    "load_results",
    "write_report",
]
