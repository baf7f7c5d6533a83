"""A campaign, validated, and its matrix expanded into cells in run order (the file: ``file.py``)."""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from controller.errors import UserError
from controller.inputs import SECONDS, BadValue
from controller.requests import BatchSettings, MeterSettings, RunRequest, ServeSettings, Where, from_fields
from controller.serving.settings import ServingSettings

MODES = ("batch", "serving")
SYNTHETIC_SAMPLES = 64  # per run, when a campaign on synthetic inputs gives neither samples nor duration_s
ORDERS = ("interleaved", "grouped")
RUNNERS = ("auto", "docker", "local")
IDLE_POLICIES = ("stored", "measure-if-missing", "measure", "require")
COOLDOWN_MODES = ("none", "fixed", "gpu-temperature")
# Cell fields a cluster campaign may group its blocks by (a block runs on one node).
BLOCK_KEYS = (
    "configuration", "image", "engine", "source", "model", "model_size", "batch_size", "dataset", "repetition"
)
DEFAULT_BLOCK_BY = ("model", "batch_size")
# A run of a campaign waits this long for a quiet host (no other joulebench run, CPUs idle) at most.
DEFAULT_QUIET_WAIT_S = 60.0
# ... unless this environment variable says otherwise (and neither --quiet-wait nor the file does):
# the test suite sets it to 0, since its parallel workers are each other's foreign load.
QUIET_WAIT_ENV = "JOULEBENCH_QUIET_WAIT_S"


def default_quiet_wait_s() -> float:
    """The wait of a campaign whose file gives no ``quiet_wait_s``: ``$JOULEBENCH_QUIET_WAIT_S``, else 60 s."""
    raw = os.environ.get(QUIET_WAIT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_QUIET_WAIT_S
    try:
        return SECONDS["quiet_wait_s"](raw)
    except BadValue as exc:
        raise UserError(f"environment variable {QUIET_WAIT_ENV}: {exc} (unset it for the default, 60)") from None


@dataclass(frozen=True)
class Configuration:
    """One <image, engine(, source)> the matrix crosses with models and batch sizes."""

    name: str
    image: str
    engine: str | None = None
    source: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] | None = None  # restricts the campaign's models for this configuration
    batch_sizes: tuple[int, ...] | None = None
    note: str = ""
    # Set by a search (``advise``) that measures some configurations more often than others; the
    # campaign's own repetitions otherwise.
    repetitions: int | None = None
    concurrency: int | None = None  # serving: requests in flight for this configuration ([serving]'s otherwise)


@dataclass(frozen=True)
class IdlePolicy:
    policy: str = "stored"
    duration_s: float = 600.0
    max_age_days: float = 7.0


@dataclass(frozen=True)
class Cooldown:
    mode: str = "none"
    seconds: float = 0.0  # fixed pause; in gpu-temperature mode, the pause when NVML is unavailable
    max_s: float = 300.0  # gpu-temperature mode: the cap
    tolerance_c: float = 2.0  # gpu-temperature mode: "near idle" means within this many degrees
    poll_s: float = 1.0


@dataclass(frozen=True)
class DatasetChoice:
    """The dataset a model's runs read: a name, its path when it needs one, a seeded subset size."""

    dataset: str = "synthetic"
    dataset_path: str | None = None  # resolved (absolute) when the file gave one
    limit: int | None = None


# Cell fields added after campaigns were first recorded: left out of a cell's identity while they
# hold their default, so folders recorded before them still resume.
_LATER_FIELDS: dict[str, Any] = {
    "dataset_path": None,
    "limit": None,
    "mode": "batch",
    "serving": None,
    "input_shapes": (),
}


@dataclass(frozen=True)
class Cell:
    """One run of the campaign: matrix coordinates and a repetition, with a deterministic id."""

    id: str
    campaign: str
    configuration: str
    image: str
    engine: str | None
    source: str | None
    model: str
    model_size: str
    batch_size: int
    repetition: int
    options: dict[str, Any]
    weights: str
    dataset: str
    samples: int | None
    duration_s: float | None
    warmup: int
    dataset_path: str | None = None
    limit: int | None = None
    mode: str = "batch"
    serving: dict[str, Any] | None = None  # ServingSettings as a dict, for serving cells
    input_shapes: tuple[str, ...] = ()  # NAME=DIMS of a user's own model ([input_shapes] in the file)

    def identity(self) -> dict[str, Any]:
        """What must match for a recorded run to count as this cell on resume."""
        out = asdict(self)
        for key, default in _LATER_FIELDS.items():
            if out[key] == default:
                del out[key]
        if "input_shapes" in out:
            out["input_shapes"] = list(out["input_shapes"])  # as JSON gives it back
        return out

    def to_record(self, seed: int, position: int, order: str) -> dict[str, Any]:
        """The ``cell`` block of the run record (RunRequest.cell)."""
        return self.identity() | {"order": {"mode": order, "seed": seed, "position": position}}

    def request(self, where: Where, meters: MeterSettings, record: dict[str, Any] | None) -> RunRequest:
        """The run request of this cell (``record``: its ``cell`` block, for resume)."""
        what: BatchSettings | ServeSettings
        if self.mode == "serving":
            settings = ServingSettings(**(self.serving or {}))
            what = ServeSettings(self.image, self.model, self.engine, dict(self.options), settings)
        else:
            what = from_fields(BatchSettings, self, options=dict(self.options), input_shapes=list(self.input_shapes))
        return RunRequest(what, where, meters, record)

    @property
    def label(self) -> str:
        if self.mode == "serving":
            return f"{self.id.split('.')[0]} {self.configuration} r{self.repetition}"
        return f"{self.model} {self.configuration} b{self.batch_size} r{self.repetition}"


@dataclass
class Campaign:
    name: str
    path: Path
    text: str  # the file as read, copied beside the results
    description: str
    repetitions: int
    model_size: str
    weights: str
    dataset: str
    samples: int | None
    duration_s: float | None
    warmup: int
    seed: int | None
    runner: str
    order: str
    timeout_s: float
    memory: str | None
    interval_s: float
    keep_trace: bool
    options: dict[str, Any]
    idle: IdlePolicy
    cooldown: Cooldown
    models: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    configurations: tuple[Configuration, ...]
    mode: str = "batch"
    dataset_path: str | None = None
    limit: int | None = None
    datasets: dict[str, DatasetChoice] = field(default_factory=dict)  # per-model overrides
    input_shapes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per-model NAME=DIMS
    serving: ServingSettings | None = None
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE, as given
    block_by: tuple[str, ...] = DEFAULT_BLOCK_BY  # cluster: cells alike in these run on one node
    retries: int = 1  # cluster: times a run lost with its node is run again on a live node, per session
    uncertainty_limit: float = 2.0  # %: an energy figure whose bound exceeds this share of it is flagged
    # Seconds each run waits for a quiet host before its window (controller/quiet.py); then it runs, flagged.
    quiet_wait_s: float = DEFAULT_QUIET_WAIT_S

    def samples_for(self, dataset: str) -> int | None:
        """Samples per run: the file's; else None (a duration, or a labelled dataset once through);
        else 64 synthetic samples."""
        if self.samples is not None or self.duration_s is not None:
            return self.samples
        return SYNTHETIC_SAMPLES if dataset == "synthetic" else None

    def dataset_for(self, model: str) -> DatasetChoice:
        """The model's own [datasets.<model>] choice, else the campaign's."""
        return self.datasets.get(model) or DatasetChoice(self.dataset, self.dataset_path, self.limit)

    def serving_model(self, model: str) -> tuple[str, str]:
        """(label, size category) of a serving model, as records and cell ids name it."""
        from suite.slm_models import resolve_model

        try:
            resolved = resolve_model(model)
        except ValueError:
            return Path(model).name or model, "uncategorised"
        category = f"category-{resolved.size_category}" if resolved.size_category else "uncategorised"
        return resolved.label, category

    def repetitions_of(self, conf: Configuration) -> int:
        return conf.repetitions or self.repetitions

    @property
    def rounds(self) -> int:
        """Repetitions of the configuration measured most often: the rounds of the interleaved order."""
        return max([self.repetitions, *(self.repetitions_of(c) for c in self.configurations)])

    def matrix(self) -> list[Cell]:
        """Every cell, in grouped order (configuration, model, batch size, repetition)."""
        from controller.resolve import is_own_model

        cells = []
        for conf in self.configurations:
            reps = self.repetitions_of(conf)
            for model in conf.models or self.models:
                if self.mode == "serving":
                    assert self.serving is not None
                    label, category = self.serving_model(model)
                    settings = self.serving
                    if conf.concurrency is not None:
                        settings = replace(settings, concurrency=conf.concurrency)
                    for rep in range(1, reps + 1):
                        cells.append(
                            Cell(
                                id=cell_id(label, category, conf.name, 1, rep),
                                campaign=self.name,
                                configuration=conf.name,
                                image=conf.image,
                                engine=conf.engine,
                                source=None,
                                model=model,
                                model_size=category,
                                batch_size=1,  # one prompt per request
                                repetition=rep,
                                options=self.options | conf.options,
                                weights="-",
                                dataset="-",
                                samples=None,
                                duration_s=None,
                                warmup=self.serving.warmup_requests,
                                mode="serving",
                                serving=cell_serving(settings),
                            )
                        )
                    continue
                data = self.dataset_for(model)
                # The campaign's model_size and weights choose among registered models' versions; a
                # user's own model is run as it is.
                own = is_own_model(model)
                size, weights = ("full", "random") if own else (self.model_size, self.weights)
                for batch in conf.batch_sizes or self.batch_sizes:
                    for rep in range(1, reps + 1):
                        cells.append(
                            Cell(
                                id=cell_id(model, size, conf.name, batch, rep),
                                campaign=self.name,
                                configuration=conf.name,
                                image=conf.image,
                                engine=conf.engine,
                                source=conf.source,
                                model=model,
                                model_size=size,
                                batch_size=batch,
                                repetition=rep,
                                options=self.options | conf.options,
                                weights=weights,
                                dataset=data.dataset,
                                samples=self.samples_for(data.dataset),
                                duration_s=self.duration_s,
                                warmup=self.warmup,
                                dataset_path=data.dataset_path,
                                limit=data.limit,
                                input_shapes=self.input_shapes.get(model, ()),
                            )
                        )
        return cells

    def ordered(self, seed: int) -> list[Cell]:
        """Cells in run order. Interleaved: one round per repetition, each round every
        configuration × model × batch once, shuffled with ``seed`` (so drift and heat spread over
        all configurations, and a campaign cut short still has whole rounds). Grouped: as written."""
        cells = self.matrix()
        if self.order == "grouped":
            return cells
        rng = random.Random(seed)
        out: list[Cell] = []
        for rep in range(1, self.rounds + 1):
            round_ = [c for c in cells if c.repetition == rep]
            rng.shuffle(round_)
            out += round_
        return out


def cell_id(model: str, model_size: str, configuration: str, batch: int, rep: int) -> str:
    """Readable and deterministic: the same coordinates always give the same id."""
    return f"{model}.{model_size}.{configuration}.b{batch}.r{rep}"


# Serving settings a campaign cell names only when set: the load sweep, SLO, synthetic prompts and
# ignore_eos came after the first serving campaigns, whose records must still resume.
LATER_SERVING_FIELDS = ("load", "slo", "synthetic", "ignore_eos", "extra_inputs")


def cell_serving(settings: ServingSettings) -> dict[str, Any]:
    """A cell's serving settings as its records keep them (JSON values; later fields when set)."""
    default = ServingSettings()
    out = asdict(settings)
    for name in LATER_SERVING_FIELDS:
        if getattr(settings, name) == getattr(default, name):
            out.pop(name)
    return out

