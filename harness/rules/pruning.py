"""Verdict-preserving pruning: stop a trial once even an optimistic projection
of its curve cannot reach the target before its budget ends.

One function, ``prune_check``, decides from the curve so far. The live stop
rule (``harness.rules.tracker``) calls it at every check; ``lrbench replay``
(``analysis.replay``) calls it on every prefix of a stored, unpruned curve. So
what a replay shows a rule would have done is what the sweep does.

The ``optimistic`` bound, at a check at step ``s`` with the target metric at
``a(s)``::

    slope  = the steepest rise of the metric per step over any stretch of the
             curve so far at least ``span`` steps long (span: the window, and
             at least a quarter of the steps so far, so noise cannot pose as a
             rise), measured between points every half span
    left   = the steps the budget still allows: the fewer of what the time
             budget allows at the trial's own speed so far and what
             ``max_epochs`` allows
    bound  = a(s) + slack * max(slope, 0) * left + margin

and the trial is pruned when ``bound < target``. Accuracy curves of training
mostly rise fastest early and flatten, so the steepest rise so far, four times
over (``slack``) and carried over every step left, overestimates what a trial
still climbing can do; the slack also covers curves that sit near chance and
then accelerate (slow momentum or plain GD), and the ``margin`` covers the
metric's own noise. Nothing is pruned during a warm-up (before a quarter of
the budget, in time or in epochs, and before two windows of steps).

A pruned trial keeps the status ``budget``: that is the verdict the full run
would have given. Its row says ``pruned`` and where.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.grid.specs import StopRule
from harness.store.records import CurvePoint


@dataclass(frozen=True)
class OptimisticRule:
    """The optimistic bound's constants (see the module docstring)."""

    slack: float = 4.0  # the steepest rise so far is multiplied by this
    margin: float = 0.1  # and the bound raised by this much accuracy
    warmup: float = 0.25  # no pruning before this share of the budget (time or epochs)
    min_span_share: float = 0.25  # rises are measured over at least this share of the steps


DEFAULT_RULE = "optimistic"  # what ``prune = true`` names
# Named rules a grid's ``[stop] prune`` or ``lrbench replay --prune`` may give.
PRUNE_RULES = {
    "optimistic": OptimisticRule(),
    # half the optimism: saves more, and shows by replay what the default's room is
    # for (it cuts trials whose accuracy accelerates late, such as slow momentum)
    "aggressive": OptimisticRule(slack=2.0, margin=0.05, warmup=0.15),
}


@dataclass(frozen=True)
class PruneDecision:
    """Where a rule pruned a trial, and how far the bound fell short of the target."""

    step: int
    elapsed_s: float
    metric: float  # the target metric at that check
    bound: float  # the optimistic bound on the metric at the end of the budget
    margin: float  # target - bound: how much the pruning relied on (> 0)


def steps_per_epoch(points: Sequence[CurvePoint]) -> int:
    """Updates per epoch, from a curve: its batch size (examples at step 1) and
    training-set size (examples over epochs)."""
    first, last = points[0], points[-1]
    batch = first.examples / first.step
    n_train = last.examples / last.epoch if last.epoch > 0 else batch
    return max(1, math.ceil(round(n_train) / round(batch)))


def prune_check(rule: str, points: Sequence[CurvePoint], stop: StopRule) -> PruneDecision | None:
    """The decision of the named rule at the curve's last point: a
    ``PruneDecision`` when it prunes there, else None."""
    params = PRUNE_RULES[rule]
    if len(points) < 3:
        return None
    now = points[-1]
    max_steps = stop.max_epochs * steps_per_epoch(points)
    done = max(now.elapsed_s / stop.budget_s, now.step / max_steps)
    if done < params.warmup or now.step < 2 * stop.window:
        return None
    # steps the budget still allows: time at this trial's own speed, and epochs
    per_step = now.elapsed_s / max(1, now.step - 1)  # the clock starts after step 1
    by_time = (stop.budget_s - now.elapsed_s) / per_step if per_step > 0 else math.inf
    left = max(0.0, min(by_time, max_steps - now.step))
    span = max(stop.window, params.min_span_share * now.step)
    slope = _steepest_rise(points, span)
    bound = now.train_acc + params.slack * max(slope, 0.0) * left + params.margin
    if bound >= stop.target:
        return None
    return PruneDecision(now.step, now.elapsed_s, now.train_acc, bound, stop.target - bound)


def _steepest_rise(points: Sequence[CurvePoint], span: float) -> float:
    """The largest (metric rise) / (steps) between two anchors at least ``span``
    steps apart; anchors are the last points at or before every half span, so a
    check costs the same however long the curve is."""
    half = span / 2
    last = points[-1].step
    anchors = []
    for i in range(int(last // half) + 1):
        k = bisect.bisect_right(points, i * half, key=lambda p: p.step)
        if k:
            anchors.append(points[k - 1])
    anchors.append(points[-1])
    best = -math.inf
    for i, b in enumerate(anchors):
        for a in anchors[:i]:
            if b.step - a.step >= span:
                best = max(best, (b.train_acc - a.train_acc) / (b.step - a.step))
    return best
