"""Analysis of lrbench results: pure DataFrame functions and thin plotting, no Ray
and no TensorFlow. ``load`` reads results directories; ``labels`` names series;
``cells`` finds cells, bands and best LRs; ``tables`` makes the summaries;
``display`` formats them for the console; ``plotkit`` is the shared figure kit;
``bestlr`` chooses a grid's LRs from an earlier sweep; ``replay`` replays pruning
rules on stored curves. The folders: ``report/`` (the report folder and its
figures), ``finder/`` (the LR range test read back) and ``nightly/`` (a night
judged and its trend report)."""

from __future__ import annotations

from analysis.display import display_tables
from analysis.load import Results, load_results
from analysis.report.writer import Report, build_figures, build_tables, write_report

__all__ = [
    "Report",
    "Results",
    "build_figures",
    "build_tables",
    "display_tables",
    "load_results",
    "write_report",
]
