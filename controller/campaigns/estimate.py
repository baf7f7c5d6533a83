"""How long a campaign's runs should take: earlier records of the same cells, else a guess."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

from controller.campaigns.readiness import Assessment, _names_gpu
from controller.campaigns.spec import Cell
from controller.progress import fmt_duration

# Guesses when no earlier record of a cell exists (seconds).
GUESS_START_S = {"local": 6.0, "docker": 8.0}
GUESS_SAMPLES_PER_S = {"tiny": 200.0, "full": 20.0}
GUESS_CONVERSION_S = 30.0


@dataclass
class Estimate:
    seconds: float
    from_history: int
    guessed: int
    guess_each_s: dict[str, float]
    cooldown_s: float
    conversions: int

    def describe(self) -> str:
        parts = []
        if self.from_history:
            parts.append(f"{self.from_history} from earlier records of the same cells")
        if self.guessed:
            guesses = ", ".join(f"{k} ~{fmt_duration(v)}" for k, v in sorted(self.guess_each_s.items()))
            parts.append(f"{self.guessed} guessed ({guesses} per run)")
        if self.conversions:
            parts.append(f"up to {self.conversions} conversions at ~{GUESS_CONVERSION_S:.0f} s")
        if self.cooldown_s:
            parts.append(f"cool-downs {fmt_duration(self.cooldown_s)}")
        return f"~{fmt_duration(self.seconds)} ({'; '.join(parts) or 'nothing to run'})"


def _settings(cell: dict[str, Any]) -> str:
    """A cell's settings without its id, repetition and order: cells equal in this take as long."""
    drop = {"id", "repetition", "order", "campaign"}
    return json.dumps({k: v for k, v in cell.items() if k not in drop}, sort_keys=True, default=str)


def estimate(cells: list[Cell], assessment: Assessment, history: dict[str, list[dict[str, Any]]]) -> Estimate:
    """Seconds for ``cells``: earlier records of cells with the same settings where there are some,
    else a guess per model size (batch) or per size category and provider (serving)."""
    campaign = assessment.campaign
    by_settings: dict[str, list[float]] = {}
    for recs in history.values():
        for r in recs:
            if r.get("status") == "ok" and r.get("elapsed_s") and r.get("cell"):
                by_settings.setdefault(_settings(r["cell"]), []).append(float(r["elapsed_s"]))
    total, hist, guessed = 0.0, 0, 0
    guesses: dict[str, float] = {}
    conversions = set()
    for cell in cells:
        times = by_settings.get(_settings(cell.identity()))
        if times:
            total += statistics.median(times)
            hist += 1
            continue
        start = GUESS_START_S.get(assessment.runner, 8.0)
        if cell.mode == "serving":
            key, each = _serving_guess(cell, assessment)
        else:
            rate = GUESS_SAMPLES_PER_S.get(cell.model_size, 20.0)
            samples = cell.samples
            if samples is None and cell.duration_s is None:
                samples = assessment.host.dataset_size(cell.dataset, cell.dataset_path, cell.limit) or 64
            measure = cell.duration_s if cell.duration_s is not None else (samples or 64) / rate
            key, each = f"{cell.model_size} b{cell.batch_size}", start + cell.warmup * cell.batch_size / rate + measure
        guesses[key] = each
        total += each
        guessed += 1
        combo = assessment.combo(cell)
        if combo.conversion:
            conversions.add((combo.conversion, cell.model))
    cooldown = campaign.cooldown
    pause = {"none": 0.0, "fixed": cooldown.seconds, "gpu-temperature": cooldown.max_s}[cooldown.mode]
    cool_total = pause * max(0, len(cells) - 1)
    total += cool_total + GUESS_CONVERSION_S * len(conversions)
    return Estimate(total, hist, guessed, guesses, cool_total, len(conversions))


# Serving guesses per request (s), from the second paper's execution times over 164 prompts on an
# RTX 4090 / Ryzen 9 7950X (Tables 4-5), by size category; models without one (local folders): small.
GUESS_REQUEST_S = {
    ("cpu", "category-1"): 4.0,
    ("cpu", "category-2"): 13.0,
    ("cpu", "category-3"): 24.0,
    ("cuda", "category-1"): 1.2,
    ("cuda", "category-2"): 2.5,
    ("cuda", "category-3"): 3.5,
}
GUESS_REQUEST_UNCATEGORISED_S = 0.1
GUESS_SERVER_LOAD_S = {"category-1": 15.0, "category-2": 40.0, "category-3": 80.0}
HUMANEVAL_PROMPTS = 164


def _serving_guess(cell: Cell, assessment: Assessment) -> tuple[str, float]:
    s = cell.serving or {}
    provider = "cuda" if _names_gpu(cell.image) else "cpu"
    combo = assessment.combo(cell)
    if combo.engine is not None:
        from controller.images import load_manifests

        manifest = load_manifests().get(cell.image)
        if manifest is not None:
            provider = "cuda" if manifest.gpu else "cpu"
    per = GUESS_REQUEST_S.get((provider, cell.model_size), GUESS_REQUEST_UNCATEGORISED_S)
    prompts = s.get("limit") or assessment.host.prompt_count(assessment.campaign) or HUMANEVAL_PROMPTS
    load = GUESS_SERVER_LOAD_S.get(cell.model_size, 8.0)
    start = GUESS_START_S.get(assessment.runner, 8.0)
    each = start + load + s.get("warmup_s", 0) + s.get("cooldown_s", 0) + per * (prompts + s.get("warmup_requests", 0))
    return f"{cell.model_size} {provider}", each
