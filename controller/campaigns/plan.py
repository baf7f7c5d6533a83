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

from controller.campaigns.spec import SYNTHETIC_SAMPLES, Campaign, Cell, Configuration
from controller.errors import UserError

# Python package each engine needs when the harness runs locally (the local runner).
ENGINE_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "torch": "torch",
    "torchscript": "torch",
    "torch-compile": "torch",
    "openvino": "openvino",
    "tensorflow": "tensorflow",
    "mxnet": "mxnet",
    "tensorrt": "tensorrt",
}
SOURCE_PACKAGES = {"torch": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet"}
# Guesses when no earlier record of a cell exists (seconds).
GUESS_START_S = {"local": 6.0, "docker": 8.0}
GUESS_SAMPLES_PER_S = {"tiny": 200.0, "full": 20.0}
GUESS_CONVERSION_S = 30.0
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
    host: Any = None  # the _HostChecks made (datasets' sizes, prompt count)

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
    from controller.images import image_status, load_manifests

    manifests = load_manifests()
    runner, note, client = choose_runner(runner_kind or campaign.runner)
    problems = []
    if runner == "docker" and client is None:
        problems.append(note.removeprefix("docker: "))
    host = _HostChecks()
    stale: list[str] = []
    combos = []
    for conf in campaign.configurations:
        for model in conf.models or campaign.models:
            engine, images = conf.engine, [conf.image]
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
            needs_gpu = manifest.gpu if manifest is not None else _names_gpu(conf.image)
            if needs_gpu and host.nvml_reason():
                reasons.append(f"image {conf.image} needs an NVIDIA GPU and NVML sees none here ({host.nvml_reason()})")
            if campaign.mode == "serving":
                conversion = _serving_reasons(campaign, model, engine, runner, manifest, host, images, reasons)
            else:
                conversion = _batch_reasons(campaign, conf, model, engine, manifests, images, reasons)
                reasons += host.dataset_reasons(campaign, model, runner)
            if not reasons and runner == "docker" and client is not None:
                for image in images:
                    status = image_status(client, manifests[image])
                    if not status["built"]:
                        reasons.append(f"image {image} is not built: python -m controller images build {image}")
                    elif status["stale"]:
                        stale.append(f"image {image} is stale (sources changed since its build)")
            elif not reasons and runner == "local" and manifest is not None and engine is not None:
                if campaign.mode == "serving":
                    reasons += _local_serving_reasons(engine, conversion is not None)
                else:
                    reasons += _local_reasons(engine, manifest.provider, conf.source, conversion)
            combos.append(Combo(conf, model, engine, conversion, images, reasons))
    if stale:
        note += " (" + "; ".join(sorted(set(stale))) + ")"
    return Assessment(campaign, runner, note, combos, client, problems, host)


def _names_gpu(image: str) -> bool:
    """An image without a manifest whose name says it needs an NVIDIA GPU (torch-cuda, onnx-trt)."""
    return any(part in ("cuda", "trt", "tensorrt") for part in image.split("-")[1:])


def _batch_reasons(
    campaign: Campaign,
    conf: Configuration,
    model: str,
    engine: str | None,
    manifests: dict[str, Any],
    images: list[str],
    reasons: list[str],
) -> str | None:
    """Model registry, size and conversion checks of a batch run; returns the conversion."""
    from controller.artifacts import conversion_for
    from suite.models import get_model

    conversion = None
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
                    f"conversion {conv[0]} runs in image {conv[1]}, which has no manifest (images/{conv[1]}/) yet"
                )
    return conversion


def _serving_reasons(
    campaign: Campaign,
    model: str,
    engine: str | None,
    runner: str,
    manifest: Any,
    host: _HostChecks,
    images: list[str],
    reasons: list[str],
) -> str | None:
    """Why a serving run of ``model`` on ``engine`` cannot run here; returns the export (lm2onnx ...)."""
    from controller.serving import EXPORT_FORMATS, EXPORT_IMAGE
    from suite.slm_models import resolve_model

    conversion = None
    if engine is not None and engine not in EXPORT_FORMATS:
        reasons.append(f"engine {engine} cannot serve language models (serving engines: {', '.join(EXPORT_FORMATS)})")
    elif engine is not None and EXPORT_FORMATS[engine] is not None:
        conversion = f"lm2{EXPORT_FORMATS[engine]}"
        images.append(EXPORT_IMAGE)
    try:
        resolved = resolve_model(model)
    except ValueError as exc:
        reasons.append(str(exc))
        resolved = None
    if resolved is not None and resolved.source == "hub":
        why = host.hub_reason(resolved.location, runner)
        if why:
            reasons.append(why)
    reasons += host.prompt_reasons(campaign)
    return conversion


class _HostChecks:
    """What the plan asks of this host, each asked once: NVML, the model hub, datasets, prompts."""

    def __init__(self) -> None:
        self._nvml: tuple[str | None] | None = None
        self._hub: tuple[str | None] | None = None
        self._datasets: dict[tuple[str, str | None, int | None], tuple[str | None, int | None]] = {}
        self._prompts: list[str] | None = None
        self.prompt_count: int | None = None

    def nvml_reason(self) -> str | None:
        if self._nvml is None:
            self._nvml = (_nvml_reason(),)
        return self._nvml[0]

    def hub_reason(self, hf_id: str, runner: str) -> str | None:
        """None when the hub id can be had: in this host's Hugging Face cache (local runner) or the
        hub answers; else why not."""
        if runner == "local" and _in_hf_cache(hf_id):
            return None
        if self._hub is None:
            self._hub = (_hub_unreachable(),)
        if self._hub[0] is None:
            return None
        return (
            f"{hf_id} comes from the Hugging Face hub, which {self._hub[0]}; download it where the hub is "
            "reachable and name its save_pretrained folder in the campaign instead"
        )

    def dataset_reasons(self, campaign: Campaign, model: str, runner: str) -> list[str]:
        """Why the model's dataset cannot be read for it (path missing, layout, task, shape)."""
        from suite.datasets import get_dataset
        from suite.models import get_model

        choice = campaign.dataset_for(model)
        where = f"[datasets.{model}]" if model in campaign.datasets else "[campaign]"
        reasons: list[str] = []
        problem = self.dataset_problem(choice.dataset, choice.dataset_path, choice.limit)
        if problem:
            reasons.append(f"dataset {choice.dataset} for {model} ({where}): {problem}")
        else:
            info = get_dataset(choice.dataset)
            try:
                minfo = get_model(model)
            except KeyError:
                minfo = None  # the model check says so
            if minfo is not None and info.task is not None and info.task != minfo.task:
                reasons.append(
                    f"dataset {choice.dataset} serves {info.task} models; {model} is a {minfo.task} model "
                    f"(give it its own [datasets.{model}])"
                )
            if minfo is not None and choice.dataset == "digits" and campaign.model_size in minfo.sizes:
                from suite.datasets.digits import SHAPE

                shape = minfo.sizes[campaign.model_size].input_shape
                if tuple(shape) != SHAPE:
                    reasons.append(
                        f"dataset digits gives 1x8x8 images; {model} ({campaign.model_size}) takes "
                        f"{'x'.join(map(str, shape))} (use digits-cnn, or another dataset)"
                    )
            if runner == "local" and choice.dataset == "digits" and not _package("sklearn"):
                reasons.append("dataset digits needs scikit-learn for the local runner (pip install -e '.[datasets]')")
        return reasons

    def dataset_problem(self, dataset: str, path: str | None, limit: int | None) -> str | None:
        """Why the dataset cannot be read as the campaign names it (checked once), and its size."""
        key = (dataset, path, limit)
        if key not in self._datasets:
            from suite.datasets import DatasetError, check

            try:
                self._datasets[key] = (None, check(dataset, path, limit))
            except DatasetError as exc:
                text = str(exc).replace("--dataset-path", "dataset_path").replace("--limit", "limit")
                self._datasets[key] = (text, None)
        return self._datasets[key][0]

    def dataset_size(self, dataset: str, path: str | None, limit: int | None) -> int | None:
        self.dataset_problem(dataset, path, limit)
        return self._datasets[(dataset, path, limit)][1]

    def prompt_reasons(self, campaign: Campaign) -> list[str]:
        if self._prompts is None:
            from suite.prompts import PromptError, load_prompts

            s = campaign.serving
            assert s is not None
            try:
                prompts, _ = load_prompts(None if s.prompts == "humaneval" else Path(s.prompts), s.seed, s.limit)
                self._prompts, self.prompt_count = [], len(prompts)
            except (PromptError, OSError) as exc:
                self._prompts = [f"prompts: {exc}"]
        return self._prompts


def _in_hf_cache(hf_id: str) -> bool:
    import os

    home = Path(os.environ.get("HF_HOME", Path("~/.cache/huggingface").expanduser()))
    hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    snapshots = hub / f"models--{hf_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """None when the Hugging Face hub answers a TCP connection; else why it is not usable."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return "this environment has switched off (HF_HUB_OFFLINE=1)"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"does not answer from this host ({host}:{port}: {exc.strerror or exc})"


# What the server needs in the local runner's environment, besides the engine's package.
SERVING_PACKAGES = ("fastapi", "uvicorn", "transformers", "tokenizers")


def _local_serving_reasons(engine: str, exported: bool) -> list[str]:
    needed = [*SERVING_PACKAGES, ENGINE_PACKAGES.get(engine, engine)]
    if exported:
        needed.append("torch")  # exports are made from the transformers model
    missing = [p for p in dict.fromkeys(needed) if not _package(p)]
    if not missing:
        return []
    return [
        f"serving on {engine} with the local runner needs {', '.join(missing)}, not installed here "
        "(pip install -e '.[local]', or use the docker runner)"
    ]


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
    prompts = s.get("limit") or assessment.host.prompt_count or HUMANEVAL_PROMPTS
    load = GUESS_SERVER_LOAD_S.get(cell.model_size, 8.0)
    start = GUESS_START_S.get(assessment.runner, 8.0)
    each = start + load + s.get("warmup_s", 0) + s.get("cooldown_s", 0) + per * (prompts + s.get("warmup_requests", 0))
    return f"{cell.model_size} {provider}", each


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
    batches = "" if c.mode == "serving" else f"{len(c.batch_sizes)} batch sizes × "
    lines = [
        f"campaign {c.name} ({c.path}): {len(cells)} {'serving ' if c.mode == 'serving' else ''}runs = "
        f"{n_conf} configurations × {len(c.models)} models × {batches}{c.repetitions} repetitions"
        + (" (some configurations restrict models or batch sizes)" if len(cells) != _full(c) else ""),
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
    header: tuple[str, ...] = ("CONFIGURATION", "IMAGE", "ENGINE", "SOURCE", "MODEL", "BATCH", "RUNS", "RUNNABLE")
    if c.mode == "serving":
        header = ("CONFIGURATION", "IMAGE", "ENGINE", "EXPORT", "MODEL", "CATEGORY", "RUNS", "RUNNABLE")
    rows = []
    for combo in assessment.combos:
        conf = combo.configuration
        runnable = "yes" if combo.runnable and not assessment.problems else "NO"
        if c.mode == "serving":
            label, category = c.serving_model(combo.model)
            rows.append(
                (
                    conf.name,
                    conf.image,
                    combo.engine or "-",
                    combo.conversion or "-",
                    label,
                    category,
                    str(c.repetitions),
                    runnable,
                )
            )
            continue
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
                runnable,
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
            shown = c.serving_model(combo.model)[0] if c.mode == "serving" else combo.model
            for reason in combo.reasons:
                by_reason.setdefault(reason, []).append(f"{shown} on {combo.configuration.name}")
        for reason, where in by_reason.items():
            lines.append(f"  {reason}")
            lines.append(f"      -> {', '.join(where)}")
    else:
        lines.append("every run is runnable on this host")
    todo = [cell for cell in c.ordered(seed) if states[cell.id] != "ok" and assessment.runnable(cell)[0]]
    est = estimate(todo, assessment, history)
    lines.append(f"estimated duration of the {len(todo)} runnable runs left: {est.describe()}")
    left = [cell for cell in c.ordered(seed) if states[cell.id] != "ok"]
    if len(left) > len(todo):
        whole = estimate(left, assessment, history)
        lines.append(
            f"estimated duration of all {len(left)} runs left, on a host that can run them: {whole.describe()}"
        )
    return "\n".join(lines)


def _full(c: Campaign) -> int:
    return len(c.configurations) * len(c.models) * len(c.batch_sizes) * c.repetitions


def _what_runs(c: Campaign, assessment: Assessment) -> str:
    """One line: what each run does (datasets and amounts, or the serving settings)."""
    if c.mode == "serving":
        s = c.serving
        assert s is not None
        count = (assessment.host.prompt_count if assessment.host else None) or s.limit
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
    return (
        f"model size {c.model_size}, weights {c.weights}, dataset {'; '.join(shown)}, {amount} per run, "
        f"warm-up {c.warmup} batches"
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
