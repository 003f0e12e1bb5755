"""The report's tables formatted for reading: strings, rounded, with the
columns a person needs (the tidy tables keep full precision)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.cells import is_lr_sweep
from analysis.labels import fmt_lr

# The tables the console shows after a report or a range test, with their titles.
TITLES = {
    "summary": "Sweeps",
    "optimizers": "Per optimizer",
    "union_band": "Union band: LRs where at least one optimizer succeeds",
    "devices": "Devices: trials ran on several; compare steps, not times, across them",
    "conditions": "Warning: trials of one sweep ran under different conditions",
    "compare": "Comparison (ratios to the first results directory)",
    "shifts": "How the valley moves: each setup against its optimizer's reference",
    "finder": "LR range test: suggestions against the grid's measured band",
    "finder_rules": "LR range test: how each suggestion rule did against the grid",
    "finder_confirm": "LR range test, confirmed: each suggestion against its ladder's best LR",
    "scaling": "Width scaling: fits of time to target against size",
}


def num(x: Any, spec: str = ".3g", none: str = "") -> str:
    """A number as text in format ``spec``; ``none`` for a missing value."""
    return none if x is None or pd.isna(x) else format(float(x), spec)


def _lr(x: Any) -> str:
    return "none" if x is None or pd.isna(x) else fmt_lr(float(x))


def display_tables(built: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The report's tables formatted for reading (strings), by name."""
    several = built["summary"]["source"].nunique() > 1
    o = built["optimizers"]
    optimizers = pd.DataFrame(
        {
            "source": o["source"],
            "optimizer": o["series"],
            "reached": [f"{r}/{n}" for r, n in zip(o["reached"], o["trials"], strict=True)],
            "band (LR)": [
                f"{_lr(lo)} .. {_lr(hi)}" if pd.notna(lo) else "none"
                for lo, hi in zip(o["lr_low"], o["lr_high"], strict=True)
            ],
            "decades": [num(d, ".1f", "-") for d in o["decades"]],
            "holes": o["holes"],
            "best LR": [_lr(x) for x in o["best_lr"]],
            "time (s)": [num(x, ".3g", "-") for x in o["best_time_s"]],
            "steps": [num(x, ".0f", "-") for x in o["best_steps"]],
            "diverged": o["diverged"],
            "errors": o["error"],
            "wasted (s)": [num(x, ".1f") for x in o["wasted_s"]],
        }
    )
    u = built["union_band"]
    union = pd.DataFrame(
        {
            "source": u["source"],
            "variant": u["variant"],
            "band (LR)": [
                f"{_lr(lo)} .. {_lr(hi)}" if pd.notna(lo) else "none"
                for lo, hi in zip(u["lr_low"], u["lr_high"], strict=True)
            ],
            "decades": [num(d, ".1f", "-") for d in u["decades"]],
            "LRs succeeding": [
                f"{a}/{b}" for a, b in zip(u["n_success_lrs"], u["n_lrs"], strict=True)
            ],
            "holes": u["holes"],
            "lowest by": u["low_by"],
            "highest by": u["high_by"],
        }
    )
    s = built["summary"]
    summary = pd.DataFrame(
        {
            "source": s["source"],
            "sweep": s["sweep"],
            "device": s["devices"],
            "versions": [
                f"tensorflow {tf}, keras {k}, ray {r}, python {p}"
                for tf, k, r, p in zip(
                    s["tensorflow"], s["keras"], s["ray"], s["python"], strict=True
                )
            ],
            "trials": s["trials"],
            "reached / budget / diverged / error": [
                f"{a} / {b} / {c} / {d}"
                for a, b, c, d in zip(
                    s["reached"], s["budget"], s["diverged"], s["error"], strict=True
                )
            ],
            "trial time (s)": [num(x, ".1f") for x in s["trial_time_s"]],
            "wall time (s)": [num(x, ".1f") for x in s["wall_s"]],
            "runs": s["runs"],
        }
    )
    shown = {"summary": summary, "optimizers": optimizers, "union_band": union}
    if not several:
        for name in ("optimizers", "union_band", "summary"):
            shown[name] = shown[name].drop(columns="source")
    if (union["variant"] == "").all():
        shown["union_band"] = shown["union_band"].drop(columns="variant")
    if "compare" in built:
        c = built["compare"]
        shown["compare"] = pd.DataFrame(
            {
                "optimizer": c["series"],
                "source": c["source"],
                "device": c["devices"],
                "best LR": [_lr(x) for x in c["best_lr"]],
                "time (s)": [num(x, ".3g", "-") for x in c["best_time_s"]],
                "steps": [num(x, ".0f", "-") for x in c["best_steps"]],
                "time vs first": [num(x, ".2f", "-") for x in c["time_ratio"]],
                "steps vs first": [num(x, ".2f", "-") for x in c["steps_ratio"]],
                "differs from first": c["differs"],
            }
        )
        order = {name: i for i, name in enumerate(dict.fromkeys(c["series"]))}
        shown["compare"] = shown["compare"].sort_values(
            "optimizer", key=lambda col: col.map(order), kind="stable"
        )
    if "devices" in built:
        d = built["devices"]
        shown["devices"] = pd.DataFrame(
            {
                "source": d["source"],
                "device": d["device"],
                "nodes": d["nodes"],
                "reached": [f"{r}/{n}" for r, n in zip(d["reached"], d["trials"], strict=True)],
                "s / step": [num(x, ".3g", "-") for x in d["step_time_median_s"]],
                "vs fastest": [num(x, ".2f", "-") for x in d["step_time_ratio"]],
                "median time to target (s)": [num(x, ".3g", "-") for x in d["time_median_s"]],
                "mixed cells": d["mixed_cells"],
            }
        )
        if not several:
            shown["devices"] = shown["devices"].drop(columns="source")
    if "conditions" in built:
        shown["conditions"] = built["conditions"]
        if not several:
            shown["conditions"] = shown["conditions"].drop(columns="source")
    if "scaling_fits" in built:
        shown["scaling"] = _scaling_display(built["scaling_fits"], several)
    if "shifts" in built:
        shown["shifts"] = shifts_display(built["shifts"], several)
    if "finder" in built:
        shown["finder"] = finder_display(built["finder"], several)
        r = built["finder_rules"]
        shown["finder_rules"] = pd.DataFrame(
            {
                "rule": r["rule"],
                "in band": [f"{a}/{b}" for a, b in zip(r["in_band"], r["tests"], strict=True)],
                "median |decades from best|": [num(x, ".2f", "-") for x in r["median_abs_decades"]],
                "worst": [num(x, ".2f", "-") for x in r["max_abs_decades"]],
            }
        )
    if "finder_confirm" in built:
        shown["finder_confirm"] = finder_confirm_display(built["finder_confirm"], several)
    if not is_lr_sweep(built["cells"]):  # one LR per optimizer: no band to speak of
        del shown["optimizers"], shown["union_band"]
    return shown


def _moved(decades: Any, more: str, less: str) -> str:
    if pd.isna(decades):
        return ""
    if abs(decades) < 0.05:
        return "same"
    return f"{abs(decades):.1f} decades {more if decades > 0 else less}"


def shifts_display(shifts: pd.DataFrame, several: bool) -> pd.DataFrame:
    """The valley-shift table for reading: each setup against its optimizer's
    reference, in decades."""
    moved = []
    for _, r in shifts.iterrows():
        if r["is_reference"]:
            moved.append("reference")
        elif pd.isna(r["best_lr"]) or pd.isna(r["best_shift_decades"]):
            moved.append("no band to compare" if pd.isna(r["best_lr"]) else "reference has no band")
        else:
            moved.append(
                f"best LR {_moved(r['best_shift_decades'], 'higher', 'lower')}; band "
                f"{_moved(r['width_change_decades'], 'wider', 'narrower')}"
            )
    out = pd.DataFrame(
        {
            "source": shifts["source"],
            "setup": shifts["series"],
            "best LR": [_lr(x) for x in shifts["best_lr"]],
            "best LR shift (decades)": [num(x, "+.1f", "-") for x in shifts["best_shift_decades"]],
            "band (LR)": [
                f"{_lr(lo)} .. {_lr(hi)}" if pd.notna(lo) else "none"
                for lo, hi in zip(shifts["lr_low"], shifts["lr_high"], strict=True)
            ],
            "width (decades)": [num(x, ".1f", "-") for x in shifts["decades"]],
            "width change": [num(x, "+.1f", "-") for x in shifts["width_change_decades"]],
            "initial loss": [num(x, ".3g", "-") for x in shifts["initial_loss"]],
            "moved": moved,
        }
    )
    return out if several else out.drop(columns="source")


def finder_display(compared: pd.DataFrame, several: bool) -> pd.DataFrame:
    """The range-test table for reading: per test and rule, the suggestion, the
    grid's band and best LR, the distance in decades and whether it is inside."""

    def inside(x: Any) -> str:
        return "-" if pd.isna(x) else ("yes" if x else "no")

    out = pd.DataFrame(
        {
            "source": compared["source"],
            "range test": compared["label"],
            "stopped": [
                f"{r} at {_lr(lr)}"
                for r, lr in zip(compared["stop_reason"], compared["last_lr"], strict=True)
            ],
            "rule": compared["rule"],
            "suggested LR": [_lr(x) for x in compared["suggested_lr"]],
            "grid band": [
                f"{_lr(lo)} .. {_lr(hi)}" if pd.notna(lo) else "-"
                for lo, hi in zip(compared["lr_low"], compared["lr_high"], strict=True)
            ],
            "grid best LR": [_lr(x) if pd.notna(x) else "-" for x in compared["best_lr"]],
            "decades from best": [num(x, "+.2f", "-") for x in compared["decades_from_best"]],
            "in band": [inside(x) for x in compared["in_band"]],
        }
    )
    return out if several else out.drop(columns="source")


def finder_confirm_display(confirmed: pd.DataFrame, several: bool) -> pd.DataFrame:
    """The confirmation table for reading: per optimizer, the rule's suggestion,
    the ladder around it, the best LR it confirmed, how far apart they are, and
    how the suggestion itself did."""

    def itself(outcome: str, rate: Any) -> str:
        if not outcome:
            return "not run"
        return outcome + ("" if pd.isna(rate) else f" ({rate:.0%} of seeds)")

    def edge(x: Any) -> str:
        return "-" if pd.isna(x) else ("yes: widen the ladder" if x else "no")

    out = pd.DataFrame(
        {
            "source": confirmed["source"],
            "optimizer": confirmed["series"],
            "rule": confirmed["rule"],
            "suggested LR": [_lr(x) for x in confirmed["suggested_lr"]],
            "ladder": [
                f"{_lr(lo)} .. {_lr(hi)} ({n})"
                for lo, hi, n in zip(
                    confirmed["ladder_low"],
                    confirmed["ladder_high"],
                    confirmed["ladder_num"],
                    strict=True,
                )
            ],
            "confirmed best LR": [_lr(x) for x in confirmed["best_lr"]],
            "decades from best": [num(x, "+.2f", "-") for x in confirmed["decades_from_best"]],
            "suggestion itself": [
                itself(o, r)
                for o, r in zip(
                    confirmed["suggested_outcome"], confirmed["suggested_success_rate"], strict=True
                )
            ],
            "best at ladder edge": [edge(x) for x in confirmed["best_at_edge"]],
        }
    )
    return out if several else out.drop(columns="source")


def _scaling_display(fits: pd.DataFrame, several: bool) -> pd.DataFrame:
    def pick(measure: str, size: str) -> pd.DataFrame:
        f = fits[(fits["measure"] == measure) & (fits["size"] == size)]
        return f.set_index(["source", "series"])

    time_w = pick("time_to_target_s", "width")
    time_p = pick("time_to_target_s", "n_params")
    steps_p = pick("steps_to_target", "n_params")
    step_p = pick("step_time_s", "n_params")
    rows = []
    for key, t in time_w.iterrows():
        rows.append(
            {
                "source": key[0],
                "optimizer @ lr": key[1],
                "widths reached": f"{int(t['n_points'])}/{int(t['n_sizes'])}",
                "time slope (s per 1x width)": num(t["slope"], ".3g", "-"),
                "R² linear": num(t["r2"], ".3f", "-"),
                "time exponent vs weights": num(time_p.loc[key, "exponent"], ".2f", "-"),
                "R² log-log": num(time_p.loc[key, "r2_log"], ".3f", "-"),
                "steps exponent": num(steps_p.loc[key, "exponent"], ".2f", "-"),
                "step-time exponent": num(step_p.loc[key, "exponent"], ".2f", "-"),
            }
        )
    out = pd.DataFrame(rows)
    return out if several or out.empty else out.drop(columns="source")
