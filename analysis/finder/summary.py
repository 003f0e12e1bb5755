"""What ``lrbench find-lr`` leaves behind: the suggestions set against the
grid's measured band, and ``finder.png``/``.svg`` in the results directory."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analysis.finder import suggest as F
from analysis.finder.finder_plots import finder_figure
from analysis.load import source_labels
from harness.lazy import lazy
from harness.store.results import TRIALS, Store

if TYPE_CHECKING:
    import matplotlib
    import matplotlib.pyplot as plt
    import pandas as pd
else:
    matplotlib = lazy("matplotlib")
    plt = lazy("matplotlib.pyplot")


@dataclass(frozen=True)
class FinderSummary:
    """The range tests of one results directory, judged against its sweep."""

    compared: pd.DataFrame  # ``analysis.finder.suggest.against_grid``
    figure: str  # where finder.png was written
    has_sweep: bool  # False: no sweep stored there yet, so no band to compare with


def write_finder_summary(target: str) -> FinderSummary:
    """Read the stored range tests (and the sweep, if any) of ``target``, set
    each suggestion against the band, and draw the figure into ``target``."""
    matplotlib.use("Agg")  # files only, never a window (pyplot loads after this)
    store = Store(target)
    label = source_labels([target])[0]
    points = store.read_finder().assign(source=label)
    trials = store.read_trials().assign(source=label) if store.has(TRIALS) else None
    compared = F.against_grid(F.suggestions(points), trials)
    fig = finder_figure(points, compared)
    for ext in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, dpi=130)
        store.write_bytes(f"finder.{ext}", buffer.getvalue())
    plt.close(fig)
    return FinderSummary(compared, store.uri("finder.png"), trials is not None)
