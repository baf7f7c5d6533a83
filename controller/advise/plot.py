"""The front as a plot: the objective against the goal's latency and against throughput, each candidate
a point (its median, bars from its lowest to its highest run), the front joined, the goal drawn,
the recommendation starred."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from controller.advise.answer import Answer
from controller.advise.race import axes_of


def _front(points: dict[str, tuple[float, float]], higher_x_better: bool) -> set[str]:
    """The names no other point beats on both x and y (lower y; lower x, or higher where better)."""

    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        ax, bx = (-a[0], -b[0]) if higher_x_better else (a[0], b[0])
        return ax <= bx and a[1] <= b[1] and (ax < bx or a[1] < b[1])

    return {n for n, p in points.items() if not any(beats(q, p) for m, q in points.items() if m != n)}


def _panel(ax: Any, answer: Answer, x_of: Any, x_label: str, higher_x_better: bool, goal: Any) -> None:
    basis = answer.outcome.basis
    points = {
        r["name"]: (x_of(r), r["objective_median"])
        for r in answer.rows
        if r["admissible"] and x_of(r) is not None and r["objective_median"] is not None
    }
    front = _front(points, higher_x_better)
    for row in answer.rows:
        x, vals = x_of(row), row["objective"]
        if x is None or not vals or row["objective_median"] is None:
            continue
        y = row["objective_median"]
        recommended = row["status"] == "RECOMMENDED"
        colour = "tab:red" if recommended else ("tab:blue" if row["name"] in front else "0.6")
        marker = "*" if recommended else ("o" if row["admissible"] else "x")
        ax.errorbar(
            x, y, yerr=[[y - min(vals)], [max(vals) - y]], fmt=marker, color=colour, ms=11 if recommended else 5,
            capsize=2, lw=0.8,
        )  # fmt: skip
        if row["name"] in front or recommended:
            ax.annotate(row["name"], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if front:
        pts = sorted((points[n] for n in front), key=lambda p: -p[0] if higher_x_better else p[0])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", lw=0.8, alpha=0.6, label="front (medians)")
    ax.plot([], [], "*", color="tab:red", label="recommended")
    ax.plot([], [], "x", color="0.6", label="excluded (quality, failures)")
    if goal is not None and math.isfinite(goal.limit):
        ax.axvline(goal.limit, color="tab:green", ls="--", lw=0.8, label=f"goal: {goal.describe()}")
    _log_if_wide(ax, [p[0] for p in points.values()], "x")
    _log_if_wide(ax, [p[1] for p in points.values()], "y")
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"{basis.label.split(' (')[0]} [{basis.unit}]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _log_if_wide(ax: Any, values: list[float], axis: str) -> None:
    """A log axis where the candidates span more than a decade (llama.cpp beside ONNX Runtime GenAI)."""
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def plot_front(answer: Answer, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    req = answer.outcome.space.request
    latency = axes_of(req.goals, answer.outcome.basis, req.mode)[1]
    unit = "tokens/s" if req.mode == "serving" else "samples/s"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    _panel(
        left,
        answer,
        lambda r: r["figures"].get(latency.name),
        f"{latency.label} [{latency.goal.unit if latency.goal else 'ms'}]",
        latency.higher_is_better,
        latency.goal,
    )
    throughput_goal = next((g for g in req.goals if g.key == "throughput"), None)
    _panel(right, answer, lambda r: r["throughput"], f"throughput [{unit}]", True, throughput_goal)
    fig.suptitle(
        f"advise: {req.model} — {answer.outcome.basis.label}; bars: lowest to highest run, point: median", fontsize=9
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
