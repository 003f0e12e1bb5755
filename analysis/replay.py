"""``lrbench replay``: what a pruning rule would have done to a sweep that ran
unpruned, decided by the same function the live stop rule calls
(``harness.rules.pruning.prune_check``) on every prefix of each stored curve; and,
with ``guard``, what the frontier guard would then have run again in full,
decided by the same function the live sweep calls (``harness.rules.frontier.frontier``).

Pure: the trials and curves DataFrames of ``analysis.load`` in, tidy frames out.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.cells import guard_series
from analysis.labels import fmt_lr
from harness.grid.specs import StopRule
from harness.rules.frontier import Cell, frontier
from harness.rules.pruning import prune_check
from harness.store.records import CurvePoint, TrialStatus

if TYPE_CHECKING:
    from harness.store.records import Manifest

REACHED, BUDGET, ERROR = (
    TrialStatus.REACHED.value,
    TrialStatus.BUDGET.value,
    TrialStatus.ERROR.value,
)
_POINT_FIELDS = [f.name for f in fields(CurvePoint)]


def stop_rules(manifests: dict[str, Manifest | None]) -> dict[str, StopRule]:
    """Each source's stop rule, from the grid its manifest stores."""
    return {
        source: manifest.resolved_grid().spec.stop if manifest is not None else StopRule()
        for source, manifest in manifests.items()
    }


def _points(curve: pd.DataFrame) -> list[CurvePoint]:
    rows = curve[_POINT_FIELDS].to_dict("records")
    return [CurvePoint(**{**r, "val_acc": None}) for r in rows]


def replay(
    trials: pd.DataFrame,
    curves: pd.DataFrame,
    rules: dict[str, StopRule],
    prune: str,
    guard: bool = False,
) -> pd.DataFrame:
    """Per finished trial: its stored status, the status under the ``prune``
    rule, where the rule pruned it (step, seconds, the bound's margin below the
    target) and the training seconds it saves (stored ``train_s`` less the
    seconds at the prune). A trial is pruned at the first check, before its last,
    where ``prune_check`` says so; its verdict becomes ``budget``.

    With ``guard``, the frontier guard follows: each pruned trial it finds next
    to a reached cell is ``rechecked``, takes its stored (full-run) verdict
    back, and its pruned first run's seconds count as spent, not saved."""
    by_trial = {key: g for key, g in curves.groupby(["source", "trial_id"], sort=False)}
    rows = []
    for t in trials[trials["status"] != ERROR].itertuples(index=False):
        curve = by_trial.get((t.source, t.trial_id))
        points = _points(curve) if curve is not None else []
        rule = replace_stop(rules[t.source], t)
        decision = None
        for i in range(1, len(points)):  # the last check is where the trial ended anyway
            decision = prune_check(prune, points[:i], rule)
            if decision is not None:
                break
        rows.append(
            {
                "source": t.source,
                "trial_id": t.trial_id,
                "optimizer": t.optimizer,
                "lr": t.lr,
                "seed": t.seed,
                "status": t.status,
                "replayed": BUDGET if decision else t.status,
                "pruned": decision is not None,
                "pruned_at_step": decision.step if decision else np.nan,
                "pruned_at_s": decision.elapsed_s if decision else np.nan,
                "margin": decision.margin if decision else np.nan,
                "train_s": float(t.train_s),
                "saved_s": float(t.train_s) - decision.elapsed_s if decision else 0.0,
                "rechecked": False,
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        done = trials[trials["status"] != ERROR]
        out["series"] = guard_series(done).to_numpy()
    if guard and len(out):
        out = guarded(out)
    return out.drop(columns="series") if "series" in out else out


def guarded(replayed: pd.DataFrame) -> pd.DataFrame:
    """``replay``'s rows after the frontier guard: ``frontier`` is asked again
    after each round of rechecks (a recheck that reaches uncovers its own
    neighbour) until it finds none."""
    df = replayed.reset_index(drop=True)
    while True:
        # cells by row (a trial id may stand in two sources)
        cells = [
            Cell(str(i), r.series, r.lr, r.replayed, r.pruned)
            for i, r in zip(df.index, df.itertuples(index=False), strict=True)
        ]
        found = df.index.isin([int(i) for i in frontier(cells)])
        if not found.any():
            return df
        df.loc[found, "replayed"] = df.loc[found, "status"]
        df.loc[found, "pruned"] = False
        df.loc[found, "rechecked"] = True
        df.loc[found, "saved_s"] = -df.loc[found, "pruned_at_s"]  # the first run, spent


def replace_stop(rule: StopRule, trial: Any) -> StopRule:
    """The source's stop rule with what the trial's own row says of it (target,
    metric, budget, epochs)."""
    return replace(
        rule,
        target=float(trial.target_acc),
        metric=str(trial.target_metric),
        budget_s=float(trial.budget_s),
        max_epochs=int(trial.max_epochs),
    )


def replay_summary(replayed: pd.DataFrame, prune: str, guard: bool = False) -> dict[str, Any]:
    """One rule's replay in numbers: trials that keep their verdict, reached
    trials lost, training seconds saved in all and on budget trials, and the
    smallest and largest margin the pruning relied on."""
    changed = replayed[replayed["status"] != replayed["replayed"]]
    budget = replayed[replayed["status"] == BUDGET]
    total_s, budget_s = float(replayed["train_s"].sum()), float(budget["train_s"].sum())
    saved, saved_budget = float(replayed["saved_s"].sum()), float(budget["saved_s"].sum())
    margins = replayed["margin"].dropna()
    rechecked = replayed["rechecked"].astype(bool)
    return {
        "rule": prune,
        "guard": guard,
        "rechecks": int(rechecked.sum()),
        "rechecks_reached": int((rechecked & (replayed["status"] == REACHED)).sum()),
        "trials": len(replayed),
        "kept": len(replayed) - len(changed),
        "agreement": (len(replayed) - len(changed)) / len(replayed) if len(replayed) else 1.0,
        "reached_lost": int((changed["status"] == REACHED).sum()),
        "pruned": int(replayed["pruned"].sum()),  # after the guard: pruned for good
        "train_s": total_s,
        "saved_s": saved,
        "saved_share": saved / total_s if total_s else 0.0,
        "budget_train_s": budget_s,
        "budget_saved_s": saved_budget,
        "budget_saved_share": saved_budget / budget_s if budget_s else 0.0,
        "margin_min": float(margins.min()) if len(margins) else float("nan"),
        "margin_max": float(margins.max()) if len(margins) else float("nan"),
        "changed": changed,
    }


def replay_lines(summary: dict[str, Any]) -> list[str]:
    """A rule's replay as console lines: agreement, every changed trial, the
    seconds saved, the margins."""
    s = summary
    name = f"{s['rule']} + frontier guard" if s["guard"] else f"{s['rule']} alone"
    lines = [
        f"rule {name}: {s['kept']} of {s['trials']} trials keep their verdict "
        f"({s['agreement']:.1%}); {s['reached_lost']} that reached the target would be cut; "
        f"{s['pruned']} pruned",
        f"  training seconds saved: {s['saved_s']:.1f} of {s['train_s']:.1f} s "
        f"({s['saved_share']:.0%}); on budget trials {s['budget_saved_s']:.1f} of "
        f"{s['budget_train_s']:.1f} s ({s['budget_saved_share']:.0%})",
    ]
    if s["guard"]:
        lines.append(
            f"  re-runs: {s['rechecks']} pruned trials next to a reached cell run again in "
            f"full ({s['rechecks_reached']} of them reach the target)"
        )
    if s["pruned"]:
        lines.append(
            f"  margin the pruning relied on (target - bound): smallest {s['margin_min']:.3f}, "
            f"largest {s['margin_max']:.3f}"
        )
    for t in s["changed"].itertuples(index=False):
        lines.append(
            f"  changed: {t.optimizer} lr {fmt_lr(t.lr)} seed {t.seed}: {t.status} -> "
            f"{t.replayed} (pruned at step {t.pruned_at_step:.0f}, margin {t.margin:.3f})"
        )
    return lines
