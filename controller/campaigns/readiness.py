"""Readiness: what this host can run of a campaign, and why not the rest, without running anything.

:func:`assess` answers for each <configuration, model> whether it can run here and, when not, why.
A cell is checked by the same validators as a single run (the workload's ``plan``); on top of
those, what a campaign needs of this host: images built, GPUs, the model hub, datasets the file
names, packages for the local runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.campaigns.spec import Campaign, Cell, Configuration
from controller.errors import UserError
from controller.local_needs import local_reasons, local_serving_reasons, package
from controller.pipeline import workload_for
from controller.requests import MeterSettings, Where
from controller.resolve import engine_of


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
    from controller.images import load_manifests

    runner, note, client = choose_runner(runner_kind or campaign.runner)
    problems = []
    if runner == "docker" and client is None:
        problems.append(note.removeprefix("docker: "))
    checks = _Checks(campaign, runner, client, load_manifests(), _HostChecks())
    first: dict[tuple[str, str], Cell] = {}
    for cell in campaign.matrix():
        first.setdefault((cell.configuration, cell.model), cell)
    combos = []
    for conf in campaign.configurations:
        for model in conf.models or campaign.models:
            combos.append(checks.combo(conf, model, first[(conf.name, model)]))
    if checks.stale:
        note += " (" + "; ".join(sorted(set(checks.stale))) + ")"
    return Assessment(campaign, runner, note, combos, client, problems, checks.host)


def _names_gpu(image: str) -> bool:
    """An image without a manifest whose name says it needs an NVIDIA GPU (torch-cuda, onnx-trt)."""
    return any(part in ("cuda", "trt", "tensorrt") for part in image.split("-")[1:])


@dataclass
class _Checks:
    campaign: Campaign
    runner: str
    client: Any
    manifests: dict[str, Any]
    host: _HostChecks
    stale: list[str] = field(default_factory=list)

    def combo(self, conf: Configuration, model: str, cell: Cell) -> Combo:
        """Every reason the combination cannot run here, so the plan says all that is missing at once."""
        reasons: list[str] = []
        images = [conf.image]
        engine, conversion = conf.engine, None
        manifest = self.manifests.get(conf.image)
        if manifest is None:
            reasons.append(
                f"image {conf.image} has no manifest (images/{conf.image}/manifest.toml): not in this joulebench yet"
            )
        else:
            engine = engine_of(manifest, conf.engine)
            try:
                # The same resolution and checks as the run itself (controller/resolve.py, the workload's plan).
                request = cell.request(Where(timeout_s=self.campaign.timeout_s), MeterSettings(), None)
                plan = workload_for(request).plan(check_data=False)
                images, conversion = plan.images, plan.identity.conversion
            except UserError as exc:
                reasons.append(str(exc))
        needs_gpu = manifest.gpu if manifest is not None else _names_gpu(conf.image)
        if needs_gpu and self.host.nvml_reason():
            why = self.host.nvml_reason()
            reasons.append(f"image {conf.image} needs an NVIDIA GPU and NVML sees none here ({why})")
        if self.campaign.mode == "serving":
            reasons += self.host.hub_reasons(model, self.runner)
        else:
            reasons += self.host.dataset_reasons(self.campaign, model, self.runner)
        if not reasons and manifest is not None and engine is not None:
            reasons += self._runner_reasons(images, engine, manifest.provider, conversion)
        return Combo(conf, model, engine, conversion, images, reasons)

    def _runner_reasons(self, images: list[str], engine: str, provider: str, conversion: str | None) -> list[str]:
        """What the chosen runner lacks: images built (docker), packages installed (local)."""
        from controller.images import image_status

        if self.runner == "docker" and self.client is not None:
            reasons = []
            for image in images:
                status = image_status(self.client, self.manifests[image])
                if not status["built"]:
                    reasons.append(f"image {image} is not built: python -m controller images build {image}")
                elif status["stale"]:
                    self.stale.append(f"image {image} is stale (sources changed since its build)")
            return reasons
        if self.runner == "local":
            if self.campaign.mode == "serving":
                return local_serving_reasons(engine, conversion is not None)
            return local_reasons(engine, provider, conversion)
        return []


class _HostChecks:
    """What the plan asks of this host, each asked once: NVML, the model hub, datasets, prompts."""

    def __init__(self) -> None:
        self._nvml: tuple[str | None] | None = None
        self._hub: tuple[str | None] | None = None
        self._datasets: dict[tuple[str, str | None, int | None], tuple[str | None, int | None]] = {}
        self._prompts: int | None = None

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
            from suite.hub import hub_unreachable

            self._hub = (hub_unreachable(),)
        if self._hub[0] is None:
            return None
        return (
            f"{hf_id} comes from the Hugging Face hub, which cannot be reached from here ({self._hub[0]}); "
            "download it where the hub is reachable and name its save_pretrained folder in the campaign instead"
        )

    def hub_reasons(self, model: str, runner: str) -> list[str]:
        """Why a serving model from the hub cannot be had here (its other problems: the workload's plan)."""
        from suite.slm_models import resolve_model

        try:
            resolved = resolve_model(model)
        except ValueError:
            return []
        why = self.hub_reason(resolved.location, runner) if resolved.source == "hub" else None
        return [why] if why else []

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
            if runner == "local" and choice.dataset == "digits" and not package("sklearn"):
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

    def prompt_count(self, campaign: Campaign) -> int | None:
        """How many prompts each serving run replays (None when they cannot be read)."""
        if self._prompts is None:
            from suite.prompts import PromptError, load_prompts

            s = campaign.serving
            assert s is not None
            try:
                prompts, _ = load_prompts(None if s.prompts == "humaneval" else Path(s.prompts), s.seed, s.limit)
                self._prompts = len(prompts)
            except (PromptError, OSError):
                self._prompts = 0
        return self._prompts or None


def _in_hf_cache(hf_id: str) -> bool:
    """Any snapshot of ``hf_id`` in this host's Hugging Face cache (the one suite/hub.py reads)."""
    from suite.hub import hub_cache

    snapshots = hub_cache() / f"models--{hf_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())
