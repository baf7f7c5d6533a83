"""A least-squares cross-check of the phase attribution: E ~ static·t + a·prompt tokens + b·output tokens.

Rows: the sampling intervals of a load point's window, each with its energy (all measured domains,
gross), its length, the prompt tokens processed and the output tokens made in it
(:mod:`controller.serving.phases`). The record keeps the fit's sufficient statistics (the Gram
matrix over :data:`~controller.serving.phases.FIT_COLUMNS`), so that a report pools the rows of every
load point of a configuration by adding them: one fit over load points and intervals.

With an idle baseline, static is fixed at its power and a, b are fitted to the active energy; without
one, the three are fitted together (``static_w`` then says how far the fitted idle power is from
nothing: compare it with a baseline measured later). Quality: R², the residual's RMS per interval
and the coefficients' standard errors (rows are consecutive intervals whose meter errors are
correlated, so these understate the spread: they are a floor, not a bound). A fit is unavailable,
with the reason, when its columns cannot be told apart (no prefill or no decode in the rows, or
prompt work in fixed proportion to output work).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from controller.serving.phases import FIT_COLUMNS

#: Columns in the Gram matrix.
ROWS, SECONDS, PROMPT, OUTPUT, ENERGY = range(len(FIT_COLUMNS))
#: Above this condition number the fitted coefficients are not told apart.
MAX_CONDITION = 1e10
MODEL = "E = static_w * seconds + j_per_prompt_token * prompt_tokens + j_per_output_token * output_tokens"


def add_grams(grams: list[list[list[float]]]) -> list[list[float]]:
    """Rows of several fits pooled: their Gram matrices added."""
    total = np.zeros((len(FIT_COLUMNS), len(FIT_COLUMNS)))
    for g in grams:
        total += np.asarray(g, dtype=float)
    return total.tolist()


def _unavailable(reason: str, **extra: Any) -> dict[str, Any]:
    return {"available": False, "reason": reason, "model": MODEL, **extra}


def fit(gram: list[list[float]], static_w: float | None = None) -> dict[str, Any]:
    """The fit over the rows summed in ``gram``; ``static_w``: the idle power, held fixed (None: fitted)."""
    g = np.asarray(gram, dtype=float)
    n = g[ROWS, ROWS]
    cols = [PROMPT, OUTPUT] if static_w is not None else [SECONDS, PROMPT, OUTPUT]
    k = len(cols)
    if n <= k + 1:
        return _unavailable(f"{n:.0f} sampling intervals, too few for {k} coefficients", rows=int(n))
    s0 = static_w or 0.0
    # y' = y - s0 * seconds: its cross-products from the Gram matrix of y.
    xtx = g[np.ix_(cols, cols)]
    xty = g[cols, ENERGY] - s0 * g[cols, SECONDS]
    yty = g[ENERGY, ENERGY] - 2 * s0 * g[SECONDS, ENERGY] + s0 * s0 * g[SECONDS, SECONDS]
    ysum = g[ROWS, ENERGY] - s0 * g[ROWS, SECONDS]
    missing = [FIT_COLUMNS[c] for c in cols if g[c, c] <= 0]
    if missing:
        return _unavailable(f"no {' and no '.join(missing).replace('_', ' ')} in the rows", rows=int(n))
    scale = np.sqrt(np.diag(xtx))
    cond = np.linalg.cond(xtx / np.outer(scale, scale))
    if not math.isfinite(cond) or cond > MAX_CONDITION:
        return _unavailable(
            "the columns cannot be told apart (prompt work in fixed proportion to output work or time)", rows=int(n)
        )
    beta = np.linalg.solve(xtx, xty)
    ssr = max(float(yty - 2 * beta @ xty + beta @ xtx @ beta), 0.0)
    sst = float(yty - ysum * ysum / n)
    sigma2 = ssr / (n - k)
    se = np.sqrt(np.clip(np.diag(np.linalg.inv(xtx)) * sigma2, 0.0, None))
    coef = dict(zip([FIT_COLUMNS[c] for c in cols], beta.tolist(), strict=True))
    err = dict(zip([FIT_COLUMNS[c] for c in cols], se.tolist(), strict=True))
    return {
        "available": True,
        "reason": None,
        "model": MODEL,
        "static": "fixed at the idle baseline's power" if static_w is not None else "fitted",
        "static_w": static_w if static_w is not None else coef["seconds"],
        "static_w_se": None if static_w is not None else err["seconds"],
        "j_per_prompt_token": coef["prompt_tokens"],
        "j_per_prompt_token_se": err["prompt_tokens"],
        "j_per_output_token": coef["output_tokens"],
        "j_per_output_token_se": err["output_tokens"],
        "r2": 1.0 - ssr / sst if sst > 0 else None,
        "rms_residual_j": math.sqrt(ssr / n),
        "rows": int(n),
        "energy": "active (gross - idle power x time)" if static_w is not None else "gross",
        "se_note": "standard errors of independent rows; consecutive intervals share meter errors, so these "
        "understate the spread",
    }


def cross_check(
    fitted: dict[str, Any], phase: dict[str, Any], time_s: float, tokens: float, kind: str
) -> dict[str, Any]:
    """The phase's energy as the fit predicts it against the attributed figure (``kind``: prefill or
    decode), and whether they agree within the attribution's bound plus twice the fit's standard error."""
    if not fitted.get("available") or not phase.get("available"):
        why = fitted.get("reason") if not fitted.get("available") else phase.get("reason")
        return {"available": False, "reason": why}
    coef = "j_per_prompt_token" if kind == "prefill" else "j_per_output_token"
    active = fitted["static"] != "fitted"
    attributed = phase.get("active_j") if active else phase.get("value")
    bound = phase.get("active_uncertainty_j") if active else phase.get("uncertainty_j")
    if attributed is None:
        return {"available": False, "reason": phase.get("active_reason") or "no active figure"}
    predicted = fitted[coef] * tokens + (0.0 if active else fitted["static_w"] * time_s)
    spread = 2.0 * (fitted[f"{coef}_se"] * tokens + (fitted["static_w_se"] or 0.0) * time_s)
    margin = (bound or 0.0) + spread
    return {
        "available": True,
        "energy": "active" if active else "gross",
        "attributed_j": attributed,
        "fit_j": predicted,
        "difference_j": attributed - predicted,
        "margin_j": margin,
        "agree": abs(attributed - predicted) <= margin,
    }
