"""A campaign file (TOML), validated, and its matrix expanded into cells in run order.

::

    [campaign]
    name = "ci-smoke"            # results/<name>/
    repetitions = 2
    model_size = "tiny"
    samples = 8                  # or duration_s = 30
    warmup = 1
    runner = "local"             # auto | docker | local
    order = "interleaved"        # interleaved (rounds of shuffled cells; default) | grouped
    seed = 7                     # shuffle seed; drawn and recorded when absent

    [idle]                       # idle-baseline policy
    policy = "stored"            # stored | measure-if-missing | measure | require

    [cooldown]
    mode = "fixed"               # none | fixed | gpu-temperature
    seconds = 5

    [matrix]
    models = ["resnet50", "mobilenetv2"]
    batch_sizes = [1, 64]

    [[matrix.configurations]]
    name = "torch2onnx"          # the label tables use; unique in the campaign
    image = "onnx-cpu"
    engine = "onnxruntime"
    source = "torch"             # converted runs: whose model definition is converted
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from controller.errors import UserError

ORDERS = ("interleaved", "grouped")
RUNNERS = ("auto", "docker", "local")
IDLE_POLICIES = ("stored", "measure-if-missing", "measure", "require")
COOLDOWN_MODES = ("none", "fixed", "gpu-temperature")

_KNOWN = {
    "campaign": {
        "name",
        "description",
        "repetitions",
        "model_size",
        "weights",
        "dataset",
        "samples",
        "duration_s",
        "warmup",
        "seed",
        "runner",
        "order",
        "timeout_s",
        "memory",
        "interval_s",
        "keep_trace",
        "options",
    },
    "idle": {"policy", "duration_s", "max_age_days"},
    "cooldown": {"mode", "seconds", "max_s", "tolerance_c", "poll_s"},
    "matrix": {"models", "batch_sizes", "configurations"},
    "configuration": {"name", "image", "engine", "source", "options", "models", "batch_sizes", "note"},
}


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

    def identity(self) -> dict[str, Any]:
        """What must match for a recorded run to count as this cell on resume."""
        return asdict(self)

    def to_record(self, seed: int, position: int, order: str) -> dict[str, Any]:
        """The ``cell`` block of the run record (RunRequest.cell)."""
        return self.identity() | {"order": {"mode": order, "seed": seed, "position": position}}

    @property
    def label(self) -> str:
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

    def matrix(self) -> list[Cell]:
        """Every cell, in grouped order (configuration, model, batch size, repetition)."""
        cells = []
        for conf in self.configurations:
            for model in conf.models or self.models:
                for batch in conf.batch_sizes or self.batch_sizes:
                    for rep in range(1, self.repetitions + 1):
                        cells.append(
                            Cell(
                                id=cell_id(model, self.model_size, conf.name, batch, rep),
                                campaign=self.name,
                                configuration=conf.name,
                                image=conf.image,
                                engine=conf.engine,
                                source=conf.source,
                                model=model,
                                model_size=self.model_size,
                                batch_size=batch,
                                repetition=rep,
                                options=self.options | conf.options,
                                weights=self.weights,
                                dataset=self.dataset,
                                samples=self.samples,
                                duration_s=self.duration_s,
                                warmup=self.warmup,
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
        for rep in range(1, self.repetitions + 1):
            round_ = [c for c in cells if c.repetition == rep]
            rng.shuffle(round_)
            out += round_
        return out


def cell_id(model: str, model_size: str, configuration: str, batch: int, rep: int) -> str:
    """Readable and deterministic: the same coordinates always give the same id."""
    return f"{model}.{model_size}.{configuration}.b{batch}.r{rep}"


def _check_keys(table: dict[str, Any], known: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        valid = ", ".join(sorted(known))
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)} in {where}; valid keys: {valid}")


def _choice(value: Any, valid: tuple[str, ...], key: str, path: Path) -> str:
    if value not in valid:
        raise UserError(f"{path}: {key} = {value!r}; valid values: {', '.join(valid)}")
    return str(value)


def _positive(value: Any, key: str, path: Path, kind: type = int, allow_zero: bool = False) -> Any:
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    if not ok_type or value < 0 or (value == 0 and not allow_zero):
        what = "an integer" if kind is int else "a number"
        bound = "0 or more" if allow_zero else "positive"
        raise UserError(f"{path}: {key} must be {what}, {bound}; got {value!r}")
    return kind(value)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def load_campaign_file(path: Path | str) -> Campaign:
    """Read and validate a campaign file; UserError names the key, the value and what is valid."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read campaign file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    _check_keys(data, {"campaign", "idle", "cooldown", "matrix"}, "the file's top level", path)
    camp = data.get("campaign", {})
    _check_keys(camp, _KNOWN["campaign"], "[campaign]", path)
    idle = data.get("idle", {})
    _check_keys(idle, _KNOWN["idle"], "[idle]", path)
    cool = data.get("cooldown", {})
    _check_keys(cool, _KNOWN["cooldown"], "[cooldown]", path)
    matrix = data.get("matrix")
    if not matrix:
        raise UserError(f"{path}: no [matrix] table; a campaign needs models, batch_sizes and configurations")
    _check_keys(matrix, _KNOWN["matrix"], "[matrix]", path)

    name = camp.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"{path}: campaign name {name!r} must be letters, digits, '.', '_', '+' or '-'")
    samples = camp.get("samples")
    duration = camp.get("duration_s")
    if samples is not None and duration is not None:
        raise UserError(f"{path}: give samples or duration_s in [campaign], not both")
    if samples is None and duration is None:
        samples = 64
    if samples is not None:
        samples = _positive(samples, "samples", path)
    if duration is not None:
        duration = _positive(duration, "duration_s", path, float)
    seed = camp.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise UserError(f"{path}: seed must be an integer, got {seed!r}")

    models = matrix.get("models")
    if not models or not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise UserError(f'{path}: [matrix] models must be a non-empty list of model ids, e.g. ["resnet50"]')
    batches = matrix.get("batch_sizes", [1])
    if not isinstance(batches, list) or not batches:
        raise UserError(f"{path}: [matrix] batch_sizes must be a non-empty list of integers")
    batches = [_positive(b, "batch_sizes", path) for b in batches]
    confs_raw = matrix.get("configurations")
    if not confs_raw or not isinstance(confs_raw, list):
        raise UserError(
            f'{path}: [matrix] needs at least one [[matrix.configurations]] with an image (e.g. image = "onnx-cpu")'
        )
    configurations = []
    for i, raw in enumerate(confs_raw):
        where = f"[[matrix.configurations]] #{i + 1}"
        _check_keys(raw, _KNOWN["configuration"], where, path)
        if "image" not in raw:
            raise UserError(f"{path}: {where} has no image")
        engine, source = raw.get("engine"), raw.get("source")
        default_name = raw["image"] + (f"-{engine}" if engine else "") + (f"-{source}" if source else "")
        cname = raw.get("name", default_name)
        if not isinstance(cname, str) or not _NAME.match(cname):
            raise UserError(f"{path}: {where} name {cname!r} must be letters, digits, '.', '_', '+' or '-'")
        conf_models = raw.get("models")
        conf_batches = raw.get("batch_sizes")
        configurations.append(
            Configuration(
                name=cname,
                image=raw["image"],
                engine=engine,
                source=source,
                options=dict(raw.get("options", {})),
                models=tuple(conf_models) if conf_models else None,
                batch_sizes=tuple(_positive(b, "batch_sizes", path) for b in conf_batches) if conf_batches else None,
                note=raw.get("note", ""),
            )
        )
    names = [c.name for c in configurations]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{path}: configuration name(s) {', '.join(dupes)} used twice; give each a unique name")

    return Campaign(
        name=name,
        path=path,
        text=text,
        description=camp.get("description", ""),
        repetitions=_positive(camp.get("repetitions", 1), "repetitions", path),
        model_size=camp.get("model_size", "full"),
        weights=camp.get("weights", "random"),
        dataset=camp.get("dataset", "synthetic"),
        samples=samples,
        duration_s=duration,
        warmup=_positive(camp.get("warmup", 5), "warmup", path, allow_zero=True),
        seed=seed,
        runner=_choice(camp.get("runner", "auto"), RUNNERS, "runner", path),
        order=_choice(camp.get("order", "interleaved"), ORDERS, "order", path),
        timeout_s=_positive(camp.get("timeout_s", 1800.0), "timeout_s", path, float),
        memory=camp.get("memory"),
        interval_s=_positive(camp.get("interval_s", 0.01), "interval_s", path, float),
        keep_trace=bool(camp.get("keep_trace", False)),
        options=dict(camp.get("options", {})),
        idle=IdlePolicy(
            policy=_choice(idle.get("policy", "stored"), IDLE_POLICIES, "[idle] policy", path),
            duration_s=_positive(idle.get("duration_s", 600.0), "[idle] duration_s", path, float),
            max_age_days=_positive(idle.get("max_age_days", 7.0), "[idle] max_age_days", path, float),
        ),
        cooldown=Cooldown(
            mode=_choice(cool.get("mode", "none"), COOLDOWN_MODES, "[cooldown] mode", path),
            seconds=_positive(cool.get("seconds", 0.0), "[cooldown] seconds", path, float, allow_zero=True),
            max_s=_positive(cool.get("max_s", 300.0), "[cooldown] max_s", path, float),
            tolerance_c=_positive(cool.get("tolerance_c", 2.0), "[cooldown] tolerance_c", path, float),
            poll_s=_positive(cool.get("poll_s", 1.0), "[cooldown] poll_s", path, float),
        ),
        models=tuple(models),
        batch_sizes=tuple(batches),
        configurations=tuple(configurations),
    )
