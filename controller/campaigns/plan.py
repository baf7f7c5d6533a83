"""The text and JSON `campaign plan` prints: the matrix, what runs and what cannot, the estimate."""

from __future__ import annotations

import json
from pathlib import Path

from controller.campaigns.detectable import render as detectable
from controller.campaigns.estimate import estimate
from controller.campaigns.history import STATES, cell_state, recorded
from controller.campaigns.readiness import Assessment
from controller.campaigns.spec import SYNTHETIC_SAMPLES, Campaign


def render_plan(assessment: Assessment, results: Path, seed: int, here: str = "on this host") -> str:
    """The text `campaign plan` prints (``here``: where runnable means, e.g. "on any node")."""
    c = assessment.campaign
    cells = c.matrix()
    history = recorded(results, c.name)
    states = {cell.id: cell_state(history.get(cell.id, [])) for cell in cells}
    batches = "" if c.mode == "serving" else f"{_count(len(c.batch_sizes), 'batch size')} × "
    lines = [
        f"campaign {c.name} ({c.path}): {_count(len(cells), 'serving run' if c.mode == 'serving' else 'run')} = "
        f"{_count(len(c.configurations), 'configuration')} × {_count(len(c.models), 'model')} × {batches}"
        f"{_count(c.repetitions, 'repetition')}"
        + (" (some configurations set their own models, batch sizes or repetitions)" if len(cells) != _full(c) else ""),
    ]
    if c.description:
        lines.append(f"  {c.description.strip()}")
    if c.overrides:
        lines.append(f"  overridden: {', '.join(c.overrides)}")
    order = f"interleaved, shuffled with seed {seed}" if c.order == "interleaved" else "grouped"
    cool = {
        "none": "none",
        "fixed": f"{c.cooldown.seconds:g} s between runs",
        "gpu-temperature": f"until GPU temperature is within {c.cooldown.tolerance_c:g} °C of idle, "
        f"at most {c.cooldown.max_s:g} s",
    }[c.cooldown.mode]
    lines += [
        "  " + _what_runs(c, assessment),
        f"  runner {assessment.runner_note}; order {order}; cool-down {cool}",
        f"  idle baseline policy {c.idle.policy}: {_baseline_note(c)}",
        f"results {results / c.name}: " + ", ".join(f"{sum(1 for s in states.values() if s == k)} {k}" for k in STATES),
        "",
        "matrix",
    ]
    lines += _matrix_table(assessment)
    lines += ["", "images needed: " + ", ".join(assessment.images)]
    lines += _blocked(assessment, here)
    todo = [cell for cell in c.ordered(seed) if states[cell.id] != "ok" and assessment.runnable(cell)[0]]
    est = estimate(todo, assessment, history)
    lines.append(f"estimated duration of the {len(todo)} runnable runs left: {est.describe()}")
    left = [cell for cell in c.ordered(seed) if states[cell.id] != "ok"]
    if len(left) > len(todo):
        whole = estimate(left, assessment, history)
        lines.append(
            f"estimated duration of all {len(left)} runs left, on a host that can run them: {whole.describe()}"
        )
    lines += detectable(c, results, history)
    return "\n".join(lines)


def _matrix_table(assessment: Assessment) -> list[str]:
    c = assessment.campaign
    header: tuple[str, ...] = ("CONFIGURATION", "IMAGE", "ENGINE", "SOURCE", "MODEL", "BATCH", "RUNS", "RUNNABLE")
    if c.mode == "serving":
        header = ("CONFIGURATION", "IMAGE", "ENGINE", "EXPORT", "MODEL", "CATEGORY", "RUNS", "RUNNABLE")
    rows = []
    for combo in assessment.combos:
        conf = combo.configuration
        runnable = "yes" if combo.runnable and not assessment.problems else "NO"
        if c.mode == "serving":
            label, category = c.serving_model(combo.model)
            export = combo.conversion or "-"
            runs = str(c.repetitions_of(conf))
            rows.append((conf.name, conf.image, combo.engine or "-", export, label, category, runs, runnable))
            continue
        sizes = conf.batch_sizes or c.batch_sizes
        source = conf.source or ("(" + combo.conversion + ")" if combo.conversion else "-")
        batches, runs = ",".join(map(str, sizes)), str(len(sizes) * c.repetitions_of(conf))
        rows.append((conf.name, conf.image, combo.engine or "-", source, combo.model, batches, runs, runnable))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]


def _blocked(assessment: Assessment, here: str) -> list[str]:
    """What cannot run here, grouped by reason."""
    c = assessment.campaign
    blocked = [combo for combo in assessment.combos if not combo.runnable]
    if not (assessment.problems or blocked):
        return [f"every run is runnable {here}"]
    lines = [f"not runnable {here}:"] + [f"  every run: {p}" for p in assessment.problems]
    by_reason: dict[str, list[str]] = {}
    for combo in blocked:
        shown = c.serving_model(combo.model)[0] if c.mode == "serving" else combo.model
        for reason in combo.reasons:
            by_reason.setdefault(reason, []).append(f"{shown} on {combo.configuration.name}")
    for reason, where in by_reason.items():
        lines += [f"  {reason}", f"      -> {', '.join(where)}"]
    return lines


def _count(n: int, noun: str, plural: str = "") -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def _full(c: Campaign) -> int:
    return len(c.configurations) * len(c.models) * len(c.batch_sizes) * c.repetitions


def _what_runs(c: Campaign, assessment: Assessment) -> str:
    """One line: what each run does (datasets and amounts, or the serving settings)."""
    if c.mode == "serving":
        s = c.serving
        assert s is not None
        count = (assessment.host.prompt_count(c) if assessment.host else None) or s.limit
        prompts = "HumanEval-derived" if s.prompts == "humaneval" else s.prompts
        return (
            f"prompts {prompts} ({count if count else '?'} per run, seed {s.seed}), max new tokens "
            f"{s.max_new_tokens}, concurrency {s.concurrency}; idle {s.warmup_s:g} s then "
            f"{s.warmup_requests} warm-up requests before the window, idle {s.cooldown_s:g} s after it"
        )
    if c.samples is not None:
        amount = f"{c.samples} samples"
    elif c.duration_s is not None:
        amount = f"{c.duration_s:g} s"
    choices = {m: c.dataset_for(m) for m in c.models}
    if c.samples is None and c.duration_s is None:
        synthetic = {ch.dataset == "synthetic" for ch in choices.values()}
        amount = {
            frozenset({True}): f"{SYNTHETIC_SAMPLES} samples",
            frozenset({False}): "each dataset once through",
        }.get(frozenset(synthetic), f"{SYNTHETIC_SAMPLES} samples of synthetic inputs or each dataset once through")
    shown = []
    for choice in dict.fromkeys(choices.values()):
        who = [m for m, ch in choices.items() if ch == choice]
        text = choice.dataset
        if choice.dataset_path:
            text += f" at {choice.dataset_path}"
        if choice.limit:
            text += f" (limit {choice.limit})"
        shown.append(text + (f" for {', '.join(who)}" if len(choices) > 1 and len(who) < len(choices) else ""))
    from controller.resolve import is_own_model

    own = [is_own_model(m) for m in c.models]
    versions = f"model size {c.model_size}, weights {c.weights}" + (" (registered models)" if any(own) else "")
    return (
        ("" if all(own) else versions + ", ")
        + f"dataset {'; '.join(shown)}, {amount} per run, warm-up {_count(c.warmup, 'batch', 'batches')}"
    )


def _baseline_note(c: Campaign) -> str:
    from controller.meters import load_baseline

    status = load_baseline(max_age_s=c.idle.max_age_days * 86400)
    if status.usable:
        return f"stored baseline ok ({status.path})"
    what = {
        "stored": "runs report energies gross only",
        "measure-if-missing": f"will measure {c.idle.duration_s:g} s of idle before the first run",
        "measure": f"will measure {c.idle.duration_s:g} s of idle before the first run",
        "require": "the campaign will refuse to start",
    }[c.idle.policy]
    return f"{status.status} ({(status.reason or '').split(';')[0]}); {what}"


def to_json(assessment: Assessment) -> str:
    return json.dumps(
        [
            {
                "configuration": c.configuration.name,
                "model": c.model,
                "runnable": c.runnable and not assessment.problems,
                "reason": c.reason or ("; ".join(assessment.problems) or None),
                "images": c.images,
            }
            for c in assessment.combos
        ],
        indent=2,
    )
