"""Analysis of lrbench results: pure DataFrame functions (``labels``: series and
their names; ``cells``: cells, bands, best LRs; ``tables``: the report's
summaries; ``scaling``, ``shifts``, ``devices``, ``finder``, ``nightly*``), thin
plotting on a shared kit (``plotkit``, ``plots``, ``*_plots``), the report folder
(``report``, ``report_page``) and the one loader that reads results directories
(``load``). Needs neither Ray nor TensorFlow."""

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
