"""What ``advise`` is asked: the model, the goal, the space's bounds, the budget, and the settings of
its runs, checked before any work (one line and exit 2 for each thing a user can get wrong)."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.advise.slo import Goal, parse_slo
from controller.errors import UserError

MODES = ("auto", "batch", "serving")
_DURATION = re.compile(r"^\s*([0-9.]+)\s*(s|m|h|min)?\s*$")
DEFAULT_BUDGET_S = 30 * 60.0


@dataclass
class AdviseRequest:
    model: str
    mode: str  # batch or serving (resolved from auto)
    goals: list[Goal] = field(default_factory=list)
    slo_text: str | None = None
    budget_s: float = DEFAULT_BUDGET_S
    images: tuple[str, ...] | None = None  # the space's images (None: every image that can run the model)
    engines: tuple[str, ...] | None = None
    threads: tuple[int, ...] = ()  # () : 1 and every logical core
    batch_sizes: tuple[int, ...] = (1, 8)
    concurrency: tuple[int, ...] = (1, 4)
    precisions: tuple[str, ...] | None = None  # None: every precision an engine offers here
    vary: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fix: dict[str, str] = field(default_factory=dict)
    screen: int = 2  # runs of every candidate before any is dropped
    max_repetitions: int = 10
    alpha: float = 0.05
    min_agreement: float = 0.99
    max_accuracy_drop: float = 0.01
    campaign: str = ""
    results: Path = Path("results")
    runner: str = "auto"
    cluster: str | None = None
    cache: Path | None = None
    timeout_s: float = 1800.0
    memory: str | None = None
    interval_s: float = 0.01
    retry_failed: bool = False
    quiet_wait_s: float = 60.0  # per run, for a quiet host (the campaigns' default); 0: check and flag only
    # batch runs
    input_shapes: tuple[str, ...] = ()
    model_size: str = "full"
    weights: str = "random"
    dataset: str = "synthetic"
    dataset_path: str | None = None
    limit: int | None = None
    samples: int | None = None
    duration_s: float | None = None
    warmup: int = 5
    # serving runs ([serving] of the campaign)
    serving: dict[str, Any] = field(default_factory=dict)

    @property
    def thread_levels(self) -> tuple[int, ...]:
        cores = os.cpu_count() or 1
        return self.threads or tuple(sorted({1, cores}))


def parse_duration(text: str, flag: str = "--budget") -> float:
    """``30m``, ``1h``, ``90s`` or ``90`` (seconds) as seconds."""
    m = _DURATION.match(text or "")
    try:
        value = float(m.group(1)) if m else math.nan
    except ValueError:
        value = math.nan
    if m is None or not math.isfinite(value) or value <= 0:
        raise UserError(f"{flag} {text!r} is not a duration; write e.g. 30m, 1h or 600s")
    return value * {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def parse_ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise UserError(f"{flag} {text!r}: give whole numbers of 1 or more, comma-separated, e.g. {flag} 1,4")
    return tuple(dict.fromkeys(values))


def parse_names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip())) or None


def parse_vary(pairs: list[str], flag: str) -> dict[str, tuple[str, ...]]:
    """``KEY=V1,V2`` arguments (``--vary``) as {key: levels}."""
    out: dict[str, tuple[str, ...]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        levels = tuple(dict.fromkeys(v.strip() for v in values.split(",") if v.strip()))
        if not sep or not key.strip() or not levels:
            raise UserError(f"{flag} takes KEY=V1,V2 (e.g. {flag} graph_optimization_level=basic,all), got {pair!r}")
        if key.strip() in out:
            raise UserError(f"{flag} {key.strip()} is given twice")
        out[key.strip()] = levels
    return out


def share(text: str, flag: str) -> float:
    """``99%`` or ``0.99`` as a fraction in [0, 1]."""
    raw = text.strip()
    try:
        value = float(raw.rstrip("%")) / (100.0 if raw.endswith("%") else 1.0)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{flag} {text!r}: give a share, e.g. 99% or 0.99")
    return value


def detect_mode(model: str, mode: str) -> str:
    """Serving for a causal language model (a paper model, a hub id or a folder whose architecture
    generates text), batch otherwise; ``mode`` when given."""
    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    from suite.slm_models import BY_HF_ID, CODE_SLMS

    if model in CODE_SLMS or model in BY_HF_ID:
        return "serving"
    config = Path(model).expanduser() / "config.json"
    if config.is_file():
        try:
            architectures = json.loads(config.read_text()).get("architectures") or []
        except (OSError, ValueError):
            architectures = []
        if any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
            return "serving"
    return "batch"


def goals_for(slo: str | None, mode: str) -> list[Goal]:
    return parse_slo(slo, mode)
