"""What a campaign needs and what this host can run of it, without running anything.

:func:`assess` answers for each <configuration, model> whether it can run here and, when not, why
(no image manifest, image not built, engine not in the image, model not in the registry, GPU image
without NVML, framework not installed for the local runner, ...). :func:`estimate` guesses the
duration from earlier records of the same cells where there are some.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.campaigns.spec import Campaign, Cell, Configuration
from controller.errors import UserError

# Python package each engine needs when the harness runs locally (the local runner).
ENGINE_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "torch": "torch",
    "torchscript": "torch",
    "openvino": "openvino",
    "tensorflow": "tensorflow",
    "mxnet": "mxnet",
}
SOURCE_PACKAGES = {"torch": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet"}
# Guesses when no earlier record of a cell exists (seconds).
GUESS_START_S = {"local": 6.0, "docker": 8.0}
GUESS_SAMPLES_PER_S = {"tiny": 200.0, "full": 20.0}
GUESS_CONVERSION_S = 30.0
DATASETS = ("synthetic",)
STATES = ("ok", "failed", "interrupted", "todo")


@dataclass
class Combo:
    """One <configuration, model> and whether it can run here."""

    configuration: Configuration
    model: str
    engine: str | None
    conversion: str | None
    images: list[str]
    reasons: list[str]

    @property
    def runnable(self) -> bool:
        return not self.reasons

    @property
    def reason(self) -> str | None:
        return "; ".join(self.reasons) or None


@dataclass
class Assessment:
    campaign: Campaign
    runner: str  # the runner that will be used: docker or local
    runner_note: str
    combos: list[Combo]
    docker_client: Any | None = None
    problems: list[str] = field(default_factory=list)  # campaign-wide reasons nothing can run

    def combo(self, cell: Cell) -> Combo:
        for c in self.combos:
            if c.configuration.name == cell.configuration and c.model == cell.model:
                return c
        raise KeyError(cell.id)

    def runnable(self, cell: Cell) -> tuple[bool, str | None]:
        if self.problems:
            return False, "; ".join(self.problems)
        c = self.combo(cell)
        return c.runnable, c.reason

    @property
    def images(self) -> list[str]:
        return sorted({i for c in self.combos for i in c.images})


def _package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _nvml_reason() -> str | None:
    """None when NVML lists a GPU here, else why not."""
    from controller.meters.nvml import NvmlMeter

    meter = NvmlMeter()
    avail = meter.open()
    try:
        if not avail.available:
            return avail.reason or "NVML unavailable"
        return None if meter.gpus else "NVML lists no GPU"
    finally:
        meter.close()


def choose_runner(kind: str) -> tuple[str, str, Any | None]:
    """(docker|local, note, docker client) for the campaign's runner setting; nothing started."""
    if kind == "local":
        return "local", "local subprocess (as the campaign file asks)", None
    from controller.runners.docker_runner import connect

    try:
        client = connect()
    except UserError as exc:
        if kind == "docker":
            return "docker", f"docker: {exc}", None
        return "local", "local subprocess (auto: no Docker engine answers)", None
    return "docker", "docker", client


def assess(campaign: Campaign, runner_kind: str | None = None) -> Assessment:
    """Check every <configuration, model> of the campaign against this host."""
    from controller.artifacts import conversion_for
    from controller.images import image_status, load_manifests
    from suite.models import get_model

    manifests = load_manifests()
    runner, note, client = choose_runner(runner_kind or campaign.runner)
    problems = []
    if campaign.dataset not in DATASETS:
        problems.append(
            f"dataset {campaign.dataset!r} is not available yet (valid: {', '.join(DATASETS)}); "
            "runs use seeded synthetic inputs until the datasets issue lands"
        )
    if runner == "docker" and client is None:
        problems.append(note.removeprefix("docker: "))
    nvml_reason: str | None = None
    nvml_checked = False
    stale: list[str] = []
    combos = []
    for conf in campaign.configurations:
        for model in conf.models or campaign.models:
            engine, conversion, images = conf.engine, None, [conf.image]
            reasons: list[str] = []  # every reason, so the plan says all that is missing at once
            manifest = manifests.get(conf.image)
            if manifest is None:
                reasons.append(
                    f"image {conf.image} has no manifest (images/{conf.image}/manifest.toml): not in this "
                    "joulebench yet"
                )
            elif manifest.unsupported:
                reasons.append(f"image {conf.image} cannot run on current hardware: {manifest.unsupported}")
            if manifest is not None:
                engine = conf.engine or manifest.engines[0]
                if engine not in manifest.engines:
                    reasons.append(
                        f"engine {engine} is not in image {conf.image} (it serves: {', '.join(manifest.engines)})"
                    )
            info = None
            try:
                info = get_model(model)
            except KeyError:
                reasons.append(
                    f"model {model!r} is not in the model registry (suite/models.py) yet; "
                    f"registered: {', '.join(sorted(_registered()))}"
                )
            if info is not None and campaign.model_size not in info.sizes:
                reasons.append(f"model {model} has no size {campaign.model_size!r} (sizes: {', '.join(info.sizes)})")
            if info is not None and engine is not None:
                try:
                    conv = conversion_for(engine, model, conf.source)
                except UserError as exc:
                    reasons.append(str(exc))
                    conv = None
                if conv is not None:
                    conversion = conv[0]
                    images.append(conv[1])
                    if conv[1] not in manifests:
                        reasons.append(
                            f"conversion {conv[0]} runs in image {conv[1]}, which has no manifest "
                            f"(images/{conv[1]}/) yet"
                        )
            if manifest is not None and manifest.gpu:
                if not nvml_checked:
                    nvml_reason, nvml_checked = _nvml_reason(), True
                if nvml_reason:
                    reasons.append(f"image {conf.image} needs an NVIDIA GPU and NVML sees none here ({nvml_reason})")
            if not reasons and runner == "docker" and client is not None:
                for image in images:
                    status = image_status(client, manifests[image])
                    if not status["built"]:
                        reasons.append(f"image {image} is not built: python -m controller images build {image}")
                    elif status["stale"]:
                        stale.append(f"image {image} is stale (sources changed since its build)")
            elif not reasons and runner == "local" and manifest is not None and engine is not None:
                reasons += _local_reasons(engine, manifest.provider, conf.source, conversion)
            combos.append(Combo(conf, model, engine, conversion, images, reasons))
    if stale:
        note += " (" + "; ".join(sorted(set(stale))) + ")"
    return Assessment(campaign, runner, note, combos, client, problems)


# Execution providers that need another onnxruntime distribution than the plain CPU one.
PROVIDER_DISTRIBUTIONS = {
    "openvino": "onnxruntime-openvino",
    "cuda": "onnxruntime-gpu",
    "tensorrt": "onnxruntime-gpu",
}


def _distribution(name: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _local_reasons(engine: str, provider: str, source: str | None, conversion: str | None) -> list[str]:
    """Why the local runner cannot serve this here (packages looked up, never imported)."""
    reasons = []
    pkg = ENGINE_PACKAGES.get(engine, engine)
    if not _package(pkg):
        reasons.append(
            f"engine {engine} needs the Python package {pkg} for the local runner and it is not installed "
            "here (pip install -e '.[local]', or use the docker runner)"
        )
    dist = PROVIDER_DISTRIBUTIONS.get(provider) if engine == "onnxruntime" else None
    if dist and not _distribution(dist):
        reasons.append(
            f"the {provider} execution provider needs {dist} for the local runner, not installed here "
            "(it cannot share an environment with the plain onnxruntime): use the docker runner"
        )
    if conversion:
        src = source or conversion.split("2")[0].replace("tf", "tensorflow").replace("mx", "mxnet")
        if not _package(SOURCE_PACKAGES.get(src, src)):
            reasons.append(f"conversion {conversion} needs {src} installed for the local runner")
    return reasons


def _registered() -> list[str]:
    from suite.models import MODELS

    return list(MODELS)


# --- earlier records and the duration estimate ------------------------------------------------


def recorded(
    results: Path, campaign: str, warn: Callable[[str], None] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Records of a campaign folder that carry a cell, by cell id, oldest first."""
    from controller.store import RecordError, load_record

    out: dict[str, list[dict[str, Any]]] = {}
    folder = results / campaign
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            rec = load_record(path)
        except RecordError as exc:
            if warn:
                warn(f"skipping {exc}")
            continue
        cell = rec.get("cell") or {}
        if cell.get("id"):
            out.setdefault(cell["id"], []).append(rec | {"_path": str(path)})
    return out


def interrupted(rec: dict[str, Any]) -> bool:
    """A run the user (or a signal) cut short is not a failure of the configuration."""
    return (rec.get("failure") or {}).get("reason") == "interrupted by the user"


def cell_state(records: list[dict[str, Any]]) -> str:
    """ok, failed, interrupted or todo, from a cell's records."""
    if any(r.get("status") == "ok" for r in records):
        return "ok"
    if any(r.get("status") == "failed" and not interrupted(r) for r in records):
        return "failed"
    return "interrupted" if records else "todo"


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


def estimate(cells: list[Cell], assessment: Assessment, history: dict[str, list[dict[str, Any]]]) -> Estimate:
    """Seconds for ``cells``: earlier records of the same configuration × model × batch where
    there are some (same sample count or duration), else a guess per model size."""
    campaign = assessment.campaign
    by_coords: dict[tuple[str, str, int], list[float]] = {}
    for recs in history.values():
        for r in recs:
            cell = r.get("cell") or {}
            same = cell.get("samples") == campaign.samples and cell.get("duration_s") == campaign.duration_s
            if r.get("status") == "ok" and same and r.get("elapsed_s"):
                key = (cell.get("configuration"), cell.get("model"), cell.get("batch_size"))
                by_coords.setdefault(key, []).append(float(r["elapsed_s"]))  # type: ignore[arg-type]
    total, hist, guessed = 0.0, 0, 0
    guesses: dict[str, float] = {}
    conversions = set()
    for cell in cells:
        times = by_coords.get((cell.configuration, cell.model, cell.batch_size))
        if times:
            total += statistics.median(times)
            hist += 1
            continue
        start = GUESS_START_S.get(assessment.runner, 8.0)
        rate = GUESS_SAMPLES_PER_S.get(cell.model_size, 20.0)
        measure = cell.duration_s if cell.duration_s is not None else (cell.samples or 64) / rate
        warm = cell.warmup * cell.batch_size / rate
        each = start + warm + measure
        guesses[f"{cell.model_size} b{cell.batch_size}"] = each
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


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


# --- printing the plan ------------------------------------------------------------------------


def render_plan(assessment: Assessment, results: Path, seed: int) -> str:
    """The text `campaign plan` prints."""
    c = assessment.campaign
    cells = c.matrix()
    history = recorded(results, c.name)
    states = {cell.id: cell_state(history.get(cell.id, [])) for cell in cells}
    n_conf = len(c.configurations)
    amount = f"{c.samples} samples" if c.samples is not None else f"{c.duration_s:g} s"
    lines = [
        f"campaign {c.name} ({c.path}): {len(cells)} runs = {n_conf} configurations × "
        f"{len(c.models)} models × {len(c.batch_sizes)} batch sizes × {c.repetitions} repetitions"
        + (" (some configurations restrict models or batch sizes)" if len(cells) != _full(c) else ""),
    ]
    if c.description:
        lines.append(f"  {c.description.strip()}")
    order = f"interleaved, shuffled with seed {seed}" if c.order == "interleaved" else "grouped"
    cool = {
        "none": "none",
        "fixed": f"{c.cooldown.seconds:g} s between runs",
        "gpu-temperature": f"until GPU temperature is within {c.cooldown.tolerance_c:g} °C of idle, "
        f"at most {c.cooldown.max_s:g} s",
    }[c.cooldown.mode]
    lines += [
        f"  model size {c.model_size}, weights {c.weights}, dataset {c.dataset}, {amount} per run, "
        f"warm-up {c.warmup} batches",
        f"  runner {assessment.runner_note}; order {order}; cool-down {cool}",
        f"  idle baseline policy {c.idle.policy}: {_baseline_note(c)}",
        f"results {results / c.name}: " + ", ".join(f"{sum(1 for s in states.values() if s == k)} {k}" for k in STATES),
        "",
        "matrix",
    ]
    header = ("CONFIGURATION", "IMAGE", "ENGINE", "SOURCE", "MODEL", "BATCH", "RUNS", "RUNNABLE")
    rows = []
    for combo in assessment.combos:
        conf = combo.configuration
        batches = conf.batch_sizes or c.batch_sizes
        rows.append(
            (
                conf.name,
                conf.image,
                combo.engine or "-",
                conf.source or ("(" + combo.conversion + ")" if combo.conversion else "-"),
                combo.model,
                ",".join(map(str, batches)),
                str(len(batches) * c.repetitions),
                "yes" if combo.runnable and not assessment.problems else "NO",
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    lines += ["", "images needed: " + ", ".join(assessment.images)]
    blocked = [combo for combo in assessment.combos if not combo.runnable]
    if assessment.problems or blocked:
        lines.append("not runnable on this host:")
        for p in assessment.problems:
            lines.append(f"  every run: {p}")
        by_reason: dict[str, list[str]] = {}
        for combo in blocked:
            for reason in combo.reasons:
                by_reason.setdefault(reason, []).append(f"{combo.model} on {combo.configuration.name}")
        for reason, where in by_reason.items():
            lines.append(f"  {reason}")
            lines.append(f"      -> {', '.join(where)}")
    else:
        lines.append("every run is runnable on this host")
    todo = [cell for cell in c.ordered(seed) if states[cell.id] != "ok" and assessment.runnable(cell)[0]]
    est = estimate(todo, assessment, history)
    lines.append(f"estimated duration of the {len(todo)} runnable runs left: {est.describe()}")
    return "\n".join(lines)


def _full(c: Campaign) -> int:
    return len(c.configurations) * len(c.models) * len(c.batch_sizes) * c.repetitions


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
