"""The frontier guard: pruned verdicts next to the band are checked in full.

A pruning rule (``harness.rules.pruning``) reads only the curve so far, so no rule
can tell a trial that starts late (flat for a long while, then climbing) from
a hopeless one. The guard does not try to. It leans on what the learning-rate
ladder shows in every sweep: along one series (every field but the LR equal;
each seed its own series), the cells that reach the target form one band. A
pruned trial far from the band is where the rule is safe; a pruned trial
*next to* a reached cell is where a late starter would be, so it runs again
in full with pruning off, and takes that run's verdict. A recheck that reaches
extends the band, and its own pruned neighbour is checked next, until no new
cell reaches.

The guard's one assumption: a band has no holes. A failing cell, then a cell
that would reach only after a long plateau, is not caught (the report counts
the holes each band shows). A series with no reached cell keeps its pruned
verdicts: they rest on the rule alone, and the report says so.

``frontier`` is the decision, and both its callers use it: the live sweep
(``Guard``, fed by Ray Tune through ``harness.sweep.driver``) and ``lrbench replay``
(``analysis.replay``), which replays it on the full curves of an unpruned sweep.
Plain Python, no Ray and no TensorFlow.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from harness.grid.specs import TrialSpec
from harness.store.records import TrialStatus

REACHED = TrialStatus.REACHED.value


@dataclass(frozen=True)
class Cell:
    """One trial as the guard sees it: its series, its LR and its verdict so far
    (``status`` "" while it has not finished)."""

    trial_id: str
    series: str
    lr: float
    status: str = ""
    pruned: bool = False


@dataclass(frozen=True)
class Recheck:
    """Where a trial's first, pruned run stopped; its recheck records it."""

    pruned_at_s: float | None
    pruned_at_step: int | None


def series_of(spec: TrialSpec) -> str:
    """The id of ``spec``'s series: every field of its trial id but the LR."""
    return replace(spec, lr=0.0).trial_id


def frontier(cells: Iterable[Cell]) -> list[str]:
    """The ids of the pruned cells that sit next to a reached cell on their
    series' LR ladder, in ladder order. Only series whose every cell has
    finished are looked at: a neighbour still running may yet reach."""
    ladders: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        ladders[cell.series].append(cell)
    found = []
    for ladder in ladders.values():
        if any(not c.status for c in ladder):
            continue
        ladder.sort(key=lambda c: c.lr)
        for i, cell in enumerate(ladder):
            near = ladder[max(0, i - 1) : i] + ladder[i + 1 : i + 2]
            if cell.pruned and any(n.status == REACHED for n in near):
                found.append(cell.trial_id)
    return found


def unguarded(cells: Iterable[Cell]) -> dict[str, int]:
    """Series id -> pruned cells, for the series with pruned cells and no
    reached cell: their verdicts rest on the pruning rule alone."""
    ladders: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        ladders[cell.series].append(cell)
    return {
        series: sum(c.pruned for c in ladder)
        for series, ladder in ladders.items()
        if any(c.pruned for c in ladder) and not any(c.status == REACHED for c in ladder)
    }


class Guard:
    """A sweep's queue of trials under the guard: every pending trial as the
    grid says and, as each series finishes, the rechecks ``frontier`` finds in
    it (ahead of the first runs still queued), until none is left.

    ``stored``: the verdicts of the grid's trials already stored (resume and
    growth: a grown grid can put an old pruned trial on the frontier, and a
    sweep stopped before its rechecks does them when run again). ``release``
    is called with each batch of rechecks before they run (the store takes
    their rows out of compacted parts: ``Store.release``)."""

    def __init__(
        self,
        specs: Sequence[TrialSpec],
        stored: Mapping[str, Cell],
        pruned_at: Mapping[str, Recheck],
        release: Callable[[list[str]], object] | None = None,
    ) -> None:
        self._specs = {s.trial_id: s for s in specs}
        self._cells = {
            s.trial_id: stored.get(s.trial_id) or Cell(s.trial_id, series_of(s), s.lr)
            for s in specs
        }
        self._ladders: dict[str, list[str]] = defaultdict(list)  # series -> trial ids
        for trial_id, cell in self._cells.items():
            self._ladders[cell.series].append(trial_id)
        self._pruned_at = dict(pruned_at)
        self._release = release
        self._queue: deque[tuple[TrialSpec, Recheck | None]] = deque(
            (s, None) for s in specs if not self._cells[s.trial_id].status
        )
        # series -> its trials queued or running (a series is judged at 0)
        self._busy: Counter[str] = Counter(self._cells[s.trial_id].series for s, _ in self._queue)
        self.rechecks = 0  # rechecks queued so far
        self._running: set[str] = set()
        for series in list(self._ladders):
            self._look(series)

    # -- what runs next
    def next(self) -> tuple[TrialSpec, Recheck | None] | None:
        """The next trial to run (and, for a recheck, where its first run was
        pruned), or None when nothing is ready now."""
        if not self._queue:
            return None
        spec, recheck = self._queue.popleft()
        self._running.add(spec.trial_id)
        return spec, recheck

    def queued(self) -> list[TrialSpec]:
        """The trials queued now, in order."""
        return [spec for spec, _ in self._queue]

    @property
    def finished(self) -> bool:
        """True when nothing is queued or running: the guard is done."""
        return not self._queue and not self._running

    @property
    def pending(self) -> int:
        """Trials queued or running."""
        return len(self._queue) + len(self._running)

    def done(self, trial_id: str, status: str, pruned: Recheck | None = None) -> None:
        """A trial ended with ``status`` (``error`` when Ray gave up on it);
        ``pruned``: where the pruning rule stopped it, if it did."""
        if trial_id not in self._running:
            return
        self._running.discard(trial_id)
        cell = self._cells[trial_id]
        self._busy[cell.series] -= 1
        if pruned is not None:
            self._pruned_at[trial_id] = pruned
        self._cells[trial_id] = replace(cell, status=status, pruned=pruned is not None)
        self._look(cell.series)

    def cells(self) -> list[Cell]:
        """Every trial's cell as it stands."""
        return list(self._cells.values())

    def _look(self, series: str) -> None:
        """Queue the rechecks of ``series`` once nothing of it is queued or running."""
        if self._busy[series]:
            return
        cells = [self._cells[i] for i in self._ladders[series]]
        found = frontier(cells)
        if not found:
            return
        if self._release is not None:
            self._release(found)
        rechecks = []
        for trial_id in found:
            spec = self._specs[trial_id]
            unpruned = replace(spec, stop=replace(spec.stop, prune=None))
            recheck = self._pruned_at.get(trial_id) or Recheck(None, None)
            self._cells[trial_id] = replace(self._cells[trial_id], status="", pruned=False)
            rechecks.append((unpruned, recheck))
        # ahead of the grid's first runs: a series' verdicts settle early, and
        # the sweep does not end on a tail of rechecks
        self._queue.extendleft(reversed(rechecks))
        self._busy[series] += len(rechecks)
        self.rechecks += len(rechecks)
