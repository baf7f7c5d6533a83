"""`advise` against a full grid of the same space: its recommendation, the grid's best, and the runs
and wall time each took, measured side by side on this host.

1. `advise` runs with the arguments given (its own campaign folder), and prints its answer.
2. The same space (the candidates `advise --plan` lists) runs as an ordinary campaign, every candidate
   ``--grid-repetitions`` times, into another folder (the same artifact cache: the conversions advise
   made are reused, so the grid's time holds no conversion).
3. The grid's answer is chosen by advise's own rule (meets the goal and the quality constraint, least
   median objective); the script prints both, the grid's figure of advise's pick against the grid's
   best, whether that gap lies within the margin advise stated, and runs and minutes of each.

    python benchmarks/advise_vs_grid.py --model resnet50 --images onnx-cpu,openvino-cpu,torch-cpu \\
        --threads 2 --batch-sizes 1,8 --fix graph_optimization_level=all --fix performance_hint=LATENCY \\
        --samples 16 --warmup 2 --runner local --budget 30m --grid-repetitions 5 --results /tmp/avg

Every argument but ``--grid-repetitions`` goes to `advise` unchanged (give ``--results``; the
folders are ``advise-MODEL`` and ``grid-MODEL`` under it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run(*args: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "controller", *args], cwd=REPO, text=True, stdout=subprocess.PIPE)
    return proc.returncode, proc.stdout, time.monotonic() - t0


def main() -> int:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--grid-repetitions", type=int, default=5)
    mine, advise_args = own.parse_known_args()

    from controller.advise.campaign import campaign_text, load_text
    from controller.advise.observe import observe, values
    from controller.advise.race import axes_of, best, standings
    from controller.advise.space import build_space
    from controller.cli import build_parser
    from controller.cli_advise import request_from

    code, out, advise_s = run("advise", *advise_args)
    print(out)
    req = request_from(build_parser().parse_args(["advise", *advise_args]))
    answer = json.loads((req.results / req.campaign / "advise" / "advise.json").read_text())
    if answer["recommended"] is None:
        print(f"advise recommended nothing (exit {code}); no comparison")
        return 1

    # The grid: the same candidates, each measured --grid-repetitions times, in its own folder.
    space = build_space(req)
    grid_req = dataclasses.replace(req, campaign=req.campaign.replace("advise-", "grid-", 1))
    reps = {c.name: mine.grid_repetitions for c in space.candidates}
    file = req.results / grid_req.campaign / "grid.toml"
    load_text(campaign_text(grid_req, space.candidates, reps, seed=11), file)
    grid_args = ["campaign", "run", str(file), "--results", str(req.results)]
    if req.cache:
        grid_args += ["--cache", str(req.cache)]
    _, _, grid_s = run(*grid_args)

    obs, basis = observe(space.candidates, req.results, grid_req.campaign, req.goals, req.mode == "serving")
    axes = axes_of(req.goals, basis, req.mode)
    table = standings(obs, basis, req.goals, axes, req.alpha, req.min_agreement, req.max_accuracy_drop)
    grid_best = best(obs, table, basis)
    grid_runs = sum(o.n + len(o.failures) for o in obs.values())
    pick = answer["recommended"]
    print("\n--- advise against the full grid of the same space ---")
    print(f"space             {len(space.candidates)} candidates; ranked on {basis.label}")
    print(f"advise            {pick}  ({answer['runs_used']} runs, {advise_s / 60:.1f} min, stopped by "
          f"{answer['stopped_by']})")  # fmt: skip
    print(f"grid's best       {grid_best}  ({grid_runs} runs = {len(space.candidates)} x {mine.grid_repetitions}, "
          f"{grid_s / 60:.1f} min)")  # fmt: skip
    if grid_best is None:
        return 1
    med = {n: statistics.median(values(o, basis)) for n, o in obs.items() if values(o, basis)}
    gap = med[pick] / med[grid_best] - 1 if pick in med else float("nan")
    margin = answer.get("margin_next") or {}
    low: float | None = margin.get("low")
    high: float | None = margin.get("high")
    stated = max(abs(low), abs(high)) if low is not None and high is not None else abs(margin.get("change") or 0.0)
    same = pick == grid_best
    print(f"in the grid       advise's pick {med.get(pick, float('nan')):.4g} {basis.unit}, the grid's best "
          f"{med[grid_best]:.4g} {basis.unit}: advise's pick is {100 * gap:+.1f} % from the grid's best")  # fmt: skip
    change = 100 * (margin.get("change") or 0.0)
    interval = ", no interval"
    if low is not None and high is not None:
        interval = f", interval {100 * low:+.1f} % … {100 * high:+.1f} %"
    print(f"advise's margin   over its next candidate {margin.get('other')}: change {change:+.1f} %{interval}")
    within = "within" if abs(gap) <= stated else "OUTSIDE"
    verdict = "the same candidate" if same else f"{within} advise's stated margin"
    print(f"verdict           {verdict}")
    used = answer["runs_used"]
    print(f"runs              advise {used} vs grid {grid_runs}: {used / grid_runs:.2f} x")
    print(f"wall time         advise {advise_s / 60:.1f} min vs grid {grid_s / 60:.1f} min: {advise_s / grid_s:.2f} x")
    return 0 if same or abs(gap) <= stated else 1


if __name__ == "__main__":
    sys.exit(main())
