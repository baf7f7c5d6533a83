"""A campaign file (TOML): read, overridden (``--set``), validated into a :class:`Campaign`.

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
    block_by = ["model", "batch_size"]  # --cluster: cells alike in these run on one node (default)
    retries = 1                  # --cluster: a run lost with its node is run again this many times
    quiet_wait_s = 60            # each run waits this long at most for a quiet host (no other
                                 # joulebench run, CPUs idle), then runs flagged foreign_load
                                 # (absent: $JOULEBENCH_QUIET_WAIT_S, else 60)

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
    # optional: options = {...}, models = [...], batch_sizes = [...], repetitions = 5 (instead of
    # the campaign's), concurrency = 4 (serving: requests in flight instead of [serving]'s)

Datasets (batch mode): ``dataset = "synthetic" | "digits" | "imagenet-val" | "imdb"`` in
[campaign], with ``dataset_path`` (imagenet-val, imdb) and ``limit`` (a seeded subset); a model
that needs another dataset says so in its own table::

    [datasets.bert-imdb]
    dataset = "imdb"
    dataset_path = "/data/aclImdb"
    limit = 25000

Without ``samples`` or ``duration_s``, a labelled dataset is measured once through (its ``limit``).

A user's own models (ONNX, TorchScript, Keras or OpenVINO IR files, transformers folders,
``hf:ORG/NAME``) go in ``matrix.models`` beside registered names; a dynamic axis gets its size
per model::

    [input_shapes]
    "./my-model.onnx" = ["pixel_values=3x224x224"]

Serving mode (the second paper): ``mode = "serving"`` in [campaign]; models are names from
``suite/slm_models.py``, hub ids or model folders; configurations are <image, engine> pairs; what
a serving run does is in [serving]::

    [serving]
    prompts = "humaneval"        # or a prompt file (JSONL or text)
    limit = 164                  # prompts per run
    max_new_tokens = 32
    warmup_s = 300               # the server idles this long before the warm-up requests
    cooldown_s = 300             # and this long after the measured window

Relative paths (dataset_path, weights, prompt files, model folders) are read from the campaign
file's folder, else from the current directory. ``--set KEY=VALUE`` on the command line
overrides a key (``--set campaign.repetitions=2``, ``--set 'matrix.models=["/tmp/m"]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib

from controller.campaigns.schema import check_table
from controller.campaigns.spec import (
    BLOCK_KEYS,
    DEFAULT_BLOCK_BY,
    Campaign,
    Configuration,
    Cooldown,
    DatasetChoice,
    IdlePolicy,
    default_quiet_wait_s,
)
from controller.errors import UserError
from controller.inputs import MAX_CELLS, BadValue, path_text
from controller.serving.settings import ServingSettings

TOP = {"campaign", "idle", "cooldown", "matrix", "datasets", "serving", "input_shapes"}
# [campaign] keys that describe batch runs only: a serving campaign refuses them (what replaces each).
BATCH_ONLY = {
    "model_size": "the model's size category comes from suite/slm_models.py",
    "weights": "a serving model is a registry name, a hub id or a model folder",
    "dataset": "the prompt set is [serving] prompts",
    "dataset_path": "the prompt set is [serving] prompts",
    "limit": "the number of prompts is [serving] limit",
    "samples": "the number of prompts is [serving] limit",
    "duration_s": "the number of prompts is [serving] limit",
    "warmup": "warm-up is [serving] warmup_requests and warmup_s",
}


def local_path(text: str, base: Path) -> Path:
    """A path from a campaign file: absolute as is; relative from the file's folder, else from the
    current directory; when neither exists, the file-relative one (for the error message)."""
    try:
        path_text(text)
    except BadValue as exc:
        raise UserError(f"a path in the campaign file in {base}: {exc}") from None
    p = Path(text).expanduser()
    if p.is_absolute():
        return p
    beside = (base / p).resolve()
    if beside.exists() or not p.exists():
        return beside
    return p.resolve()


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set takes KEY=VALUE (e.g. campaign.repetitions=2), got {item!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return [k.strip() for k in key.split(".")], value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> None:
    """Set ``table.key=VALUE`` items (VALUE in TOML syntax, or a bare string) into the parsed file."""
    for item in overrides:
        keys, value = _parse_override(item)
        table = data
        for k in keys[:-1]:
            nxt = table.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise UserError(f"--set {item}: {k} is not a table in the campaign file")
            table = nxt
        table[keys[-1]] = value


def load_campaign_file(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Campaign:
    """Read and validate a campaign file (with ``--set`` overrides); UserError names the key, the
    value and what is valid. Every key's kind is checked first (``schema``), then what the values
    mean together: names that must match (models, images, engines), counts that must fit."""
    path = Path(path)
    data, text = _read(path, overrides)
    unknown = sorted(set(data) - TOP)
    if unknown:
        valid = ", ".join(sorted(TOP))
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)} at the file's top level; valid keys: {valid}")
    camp = check_table(data.get("campaign", {}), "campaign", "[campaign]", path)
    mode = camp.get("mode", "batch")
    serving_raw = _serving_table(data, camp, mode, path)
    matrix = data.get("matrix")
    if not matrix:
        raise UserError(f"{path}: no [matrix] table; a campaign needs models, batch_sizes and configurations")
    check_table(matrix, "matrix", "[matrix]", path)
    models, batches = _models_and_batches(matrix, mode, path)
    configurations = _configurations(matrix.get("configurations"), camp, models, mode, path)
    repetitions = camp.get("repetitions", 1)
    _check_size(camp, mode, path)
    _check_cell_count(configurations, models, batches, repetitions, path)
    samples, duration = _amount(camp, path)
    timeout_s = camp.get("timeout_s", 1800.0)
    _check_runs_fit(camp, duration, timeout_s, path)
    default_dataset = _dataset_choice(camp, "[campaign]", path)
    weights = camp.get("weights", "random")
    if weights not in ("random", "pretrained"):
        weights = str(local_path(weights, path.parent))
    return Campaign(
        name=camp.get("name", path.stem),
        path=path,
        text=text,
        description=camp.get("description", ""),
        repetitions=repetitions,
        model_size=camp.get("model_size", "full"),
        weights=weights,
        dataset=default_dataset.dataset,
        samples=samples,
        duration_s=duration,
        warmup=camp.get("warmup", 5),
        seed=camp.get("seed"),
        runner=camp.get("runner", "auto"),
        order=camp.get("order", "interleaved"),
        timeout_s=float(timeout_s),
        memory=camp.get("memory"),
        interval_s=float(camp.get("interval_s", 0.01)),
        keep_trace=camp.get("keep_trace", False),
        options=dict(camp.get("options", {})),
        idle=_idle(data.get("idle", {}), path),
        cooldown=_cooldown(data.get("cooldown", {}), path),
        models=tuple(models),
        batch_sizes=tuple(batches),
        configurations=configurations,
        mode=mode,
        dataset_path=default_dataset.dataset_path,
        limit=default_dataset.limit,
        datasets=_datasets(data.get("datasets", {}), models, path),
        input_shapes=_input_shapes(data.get("input_shapes", {}), models, path),
        serving=_serving_settings(serving_raw or {}, path) if mode == "serving" else None,
        overrides=tuple(overrides),
        block_by=_block_by(camp.get("block_by", list(DEFAULT_BLOCK_BY)), path),
        retries=camp.get("retries", 1),
        uncertainty_limit=float(camp.get("uncertainty_limit", 2.0)),
        quiet_wait_s=float(camp["quiet_wait_s"]) if "quiet_wait_s" in camp else default_quiet_wait_s(),
    )


def _block_by(value: Any, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(k, str) and k in BLOCK_KEYS for k in value):
        raise UserError(
            f"{path}: [campaign] block_by = {value!r} must be a list of cell fields among {', '.join(BLOCK_KEYS)} "
            '(e.g. ["model", "batch_size"]; [] runs the whole campaign on one node)'
        )
    return tuple(dict.fromkeys(value))


def _read(path: Path, overrides: list[str] | tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """The file's tables with the overrides applied, and its text as recorded beside the results."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read campaign file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    apply_overrides(data, overrides)
    if overrides:
        text += "\n# overridden on the command line (--set):\n" + "".join(f"#   {o}\n" for o in overrides)
    return data, text


def _serving_table(data: dict[str, Any], camp: dict[str, Any], mode: str, path: Path) -> dict[str, Any] | None:
    """The [serving] table of a serving campaign; refuses batch keys there and [serving] elsewhere."""
    serving_raw = data.get("serving")
    if mode != "serving":
        if serving_raw is not None:
            raise UserError(f'{path}: a [serving] table needs mode = "serving" in [campaign]')
        return None
    for key, instead in BATCH_ONLY.items():
        if key in camp:
            raise UserError(f"{path}: [campaign] {key} does not apply to a serving campaign ({instead})")
    for key in ("datasets", "input_shapes"):
        if data.get(key):
            raise UserError(f"{path}: [{key}] does not apply to a serving campaign (the prompts are [serving])")
    return check_table(serving_raw or {}, "serving", "[serving]", path)


def _amount(camp: dict[str, Any], path: Path) -> tuple[int | None, float | None]:
    samples, duration = camp.get("samples"), camp.get("duration_s")
    if samples is not None and duration is not None:
        raise UserError(f"{path}: give samples or duration_s in [campaign], not both")
    return samples, None if duration is None else float(duration)


def _check_runs_fit(camp: dict[str, Any], duration: float | None, timeout_s: float, path: Path) -> None:
    """What every run of the campaign would fail on, refused once here rather than once per run."""
    if duration is not None and duration >= timeout_s:
        raise UserError(
            f"{path}: [campaign] duration_s = {duration:g} does not fit in timeout_s = {timeout_s:g} (each run "
            "would be killed while measuring): raise timeout_s above the duration plus loading and warm-up"
        )
    if camp.get("memory") is not None and camp.get("runner") == "local":
        raise UserError(
            f'{path}: [campaign] memory limits containers; runner = "local" cannot apply it: drop memory or use '
            'runner = "docker"'
        )


def _models_and_batches(matrix: dict[str, Any], mode: str, path: Path) -> tuple[list[str], list[int]]:
    if "models" not in matrix:
        raise UserError(f'{path}: [matrix] models must be a non-empty list of model ids, e.g. ["resnet50"]')
    batches = matrix.get("batch_sizes", [1])
    if mode == "serving" and batches != [1]:
        raise UserError(
            f"{path}: a serving campaign sends one prompt per request; leave batch_sizes out "
            "(requests in flight are [serving] concurrency)"
        )
    models = _model_paths(matrix["models"], path)
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise UserError(f"{path}: [matrix] models name {', '.join(twice)} twice (as written or once resolved)")
    return models, batches


def _check_size(camp: dict[str, Any], mode: str, path: Path) -> None:
    from suite.models import MODELS

    if mode != "batch" or "model_size" not in camp:
        return
    sizes = sorted({size for info in MODELS.values() for size in info.sizes})
    if camp["model_size"] not in sizes:
        raise UserError(f"{path}: [campaign] model_size = {camp['model_size']!r}; valid sizes: {', '.join(sizes)}")


def _check_cell_count(
    configurations: tuple[Configuration, ...], models: list[str], batches: list[int], repetitions: int, path: Path
) -> None:
    """Refuse a matrix too large to run before its cells are built (they are built in memory, all of them)."""
    runs = sum(
        len(c.models or models) * len(c.batch_sizes or batches) * (c.repetitions or repetitions) for c in configurations
    )
    if runs > MAX_CELLS:
        raise UserError(
            f"{path}: the matrix has {runs} runs (configurations x models x batch sizes x repetitions); "
            f"a campaign takes at most {MAX_CELLS}: split it into several campaigns, or lower repetitions"
        )


def _dataset_choice(raw: dict[str, Any], where: str, path: Path, default: str = "synthetic") -> DatasetChoice:
    """A dataset as a table names it, the keys that go with it checked (what the host has: at plan time)."""
    from suite.datasets import DATASETS

    dataset = raw.get("dataset", default)
    if dataset not in DATASETS:
        raise UserError(f"{path}: {where} dataset = {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    info = DATASETS[dataset]
    ds_path, limit = raw.get("dataset_path"), raw.get("limit")
    if ds_path is not None and not info.needs_path:
        raise UserError(f"{path}: {where} dataset_path: dataset {dataset} takes no path ({info.description})")
    if ds_path is None and info.needs_path:
        raise UserError(
            f"{path}: {where} dataset {dataset} needs dataset_path, its folder or file ({info.description})"
        )
    if limit is not None and not info.labelled:
        raise UserError(f"{path}: {where} limit applies to labelled datasets, not {dataset} inputs")
    resolved = str(local_path(ds_path, path.parent)) if ds_path else None
    return DatasetChoice(dataset, resolved, limit)


def _serving_settings(raw: dict[str, Any], path: Path) -> ServingSettings:
    d = ServingSettings()  # defaults in one place
    prompts = raw.get("prompts", d.prompts)
    if prompts != "humaneval":
        prompts = str(local_path(prompts, path.parent))
    moved = ("prompts", "slo", "synthetic", "ignore_eos", "extra_inputs", "load")
    kept = {k: v for k, v in raw.items() if k not in moved}
    return ServingSettings(**_serving_load_settings(raw, path), prompts=prompts, **kept)


def _serving_load_settings(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """[serving] slo, synthetic and ignore_eos as ``serve`` takes them; a load sweep is refused."""
    from controller.serving.metrics import parse_slo
    from controller.serving.options import check_bounds
    from suite.prompts import PromptError, parse_synthetic

    if "load" in raw:
        raise UserError(
            f"{path}: [serving] load: a campaign serves each cell at one closed-loop concurrency ([serving] "
            "concurrency); sweep loads with serve --concurrency 1,4,16 or --request-rate 1,2,inf"
        )
    out: dict[str, Any] = {}
    for key, parse in (("slo", parse_slo), ("synthetic", parse_synthetic)):
        if key in raw:  # a string, as the schema checked
            try:
                out[key] = parse(raw[key])
            except (ValueError, PromptError) as exc:
                raise UserError(f"{path}: [serving] {exc}") from None
    if "synthetic" in out:
        try:
            check_bounds([], out["synthetic"])
        except UserError as exc:
            raise UserError(f"{path}: [serving] {exc}") from None
        moot = (("prompts", "the prompts are synthetic"), ("max_new_tokens", "output=N is each answer's length"))
        for key, why in moot:
            if key in raw:
                raise UserError(f"{path}: [serving] {key} has no effect with synthetic ({why}): leave one out")
    if "ignore_eos" in raw:
        out["ignore_eos"] = raw["ignore_eos"]
    if "extra_inputs" in raw:  # a table, as the schema checked
        from controller.serving.options import check_extra_inputs

        out["extra_inputs"] = check_extra_inputs(raw["extra_inputs"], f"{path}: [serving] extra_inputs")
    return out


def _model_paths(models: list[str], path: Path) -> list[str]:
    """Model files and folders resolved (a relative one from the campaign file's folder); names and hub
    ids as is."""
    out = []
    for m in models:
        p = local_path(m, path.parent)
        looks_like_path = m.startswith((".", "/", "~")) or p.exists()
        if looks_like_path and not p.exists():
            beside = f" (read beside {path.name}, else in the current folder)"
            where = "" if Path(m).expanduser().is_absolute() else beside
            raise UserError(
                f"{path}: [matrix] models names {m}, which does not exist{where}; name your model: "
                f"--set 'matrix.models=[\"PATH\"]'"
            )
        out.append(str(p) if looks_like_path else m)
    return out


def _datasets(datasets_raw: Any, models: list[str], path: Path) -> dict[str, DatasetChoice]:
    if not isinstance(datasets_raw, dict):
        raise UserError(f"{path}: [datasets] must be tables named by model, e.g. [datasets.bert-imdb]")
    datasets: dict[str, DatasetChoice] = {}
    for model, raw in datasets_raw.items():
        where = f"[datasets.{model}]"
        check_table(raw, "datasets", where, path)
        key = _model_in_matrix(model, models, where, path)
        datasets[key] = _dataset_choice(raw, where, path)
    return datasets


def _model_in_matrix(model: str, models: list[str], where: str, path: Path) -> str:
    """A table named by a model (as written in the file): the model as the matrix holds it, or UserError."""
    p = local_path(model, path.parent)
    # As _model_paths names it, but a path that is missing is not in the matrix either: say that, not [matrix]'s error.
    key = str(p) if model.startswith((".", "/", "~")) or p.exists() else model
    if key not in models:
        raise UserError(f"{path}: {where} names {model}, which is not in [matrix] models ({', '.join(models)})")
    return key


def _input_shapes(raw: Any, models: list[str], path: Path) -> dict[str, tuple[str, ...]]:
    """``[input_shapes]``: per model (as named in matrix.models), its inputs' NAME=DIMS."""
    from controller.resolve import is_own_model
    from suite.sources import SourceError, parse_input_shapes

    if not isinstance(raw, dict):
        raise UserError(f'{path}: [input_shapes] must map models to lists, e.g. "./model.onnx" = ["x=3x224x224"]')
    out: dict[str, tuple[str, ...]] = {}
    for model, shapes in raw.items():
        where = f"[input_shapes] {model}"
        if not isinstance(shapes, list) or not shapes or not all(isinstance(v, str) for v in shapes):
            raise UserError(
                f'{path}: {where} must be a list of NAME=DIMS strings (e.g. ["x=3x224x224"]), got {shapes!r}'
            )
        key = _model_in_matrix(model, models, "[input_shapes]", path)
        if not is_own_model(key):
            raise UserError(
                f"{path}: {where}: {model} is registered; its inputs' sizes come from model_size, not [input_shapes]"
            )
        try:
            parse_input_shapes(shapes)
        except SourceError as exc:
            raise UserError(f"{path}: {where}: {exc}".replace("--input-shape", "an entry")) from None
        out[key] = tuple(shapes)
    return out


def _configurations(
    confs_raw: Any, camp: dict[str, Any], models: list[str], mode: str, path: Path
) -> tuple[Configuration, ...]:
    if not confs_raw or not isinstance(confs_raw, list):
        raise UserError(
            f'{path}: [matrix] needs at least one [[matrix.configurations]] with an image (e.g. image = "onnx-cpu")'
        )
    configurations = []
    for i, raw in enumerate(confs_raw):
        where = f"[[matrix.configurations]] #{i + 1}"
        conf = _configuration(check_table(raw, "configuration", where, path), where, path)
        _check_configuration(conf, camp.get("options", {}), models, mode, where, path)
        configurations.append(conf)
    names = [c.name for c in configurations]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{path}: configuration name(s) {', '.join(dupes)} used twice; give each a unique name")
    return tuple(configurations)


def _configuration(raw: dict[str, Any], where: str, path: Path) -> Configuration:
    if "image" not in raw:
        raise UserError(f"{path}: {where} has no image")
    engine, source = raw.get("engine"), raw.get("source")
    default_name = raw["image"] + (f"-{engine}" if engine else "") + (f"-{source}" if source else "")
    models = raw.get("models")
    return Configuration(
        name=raw.get("name", default_name),
        image=raw["image"],
        engine=engine,
        source=source,
        options=dict(raw.get("options", {})),
        models=tuple(_model_paths(models, path)) if models else None,
        batch_sizes=tuple(raw["batch_sizes"]) if "batch_sizes" in raw else None,
        note=raw.get("note", ""),
        repetitions=raw.get("repetitions"),
        concurrency=raw.get("concurrency"),
    )


def _check_configuration(
    conf: Configuration, options: dict[str, Any], models: list[str], mode: str, where: str, path: Path
) -> None:
    """What a configuration names must exist: its image, its engine there, its source, its options, its models."""
    from controller.images import load_manifests
    from harness.options import OptionError, check_options

    manifests = load_manifests()
    manifest = manifests.get(conf.image)
    if manifest is None:
        raise UserError(f"{path}: {where} image = {conf.image!r}; valid images: {', '.join(sorted(manifests))}")
    engine = conf.engine or manifest.engines[0]
    if engine not in manifest.engines:
        raise UserError(
            f"{path}: {where} engine = {engine!r} is not in image {conf.image}; its engines: "
            f"{', '.join(manifest.engines)}"
        )
    if conf.source is not None:
        _check_source(conf.source, engine, mode, where, path)
    if conf.concurrency is not None and mode != "serving":
        raise UserError(f"{path}: {where} concurrency applies to serving campaigns (requests in flight)")
    try:
        check_options(engine, options | conf.options, serving=mode == "serving")
    except OptionError as exc:
        raise UserError(f"{path}: {where} ({conf.image}, {engine}): {exc}") from None
    outside = [m for m in conf.models or () if m not in models]
    if outside:
        raise UserError(
            f"{path}: {where} models {', '.join(outside)}: a configuration's models are some of [matrix] models "
            f"({', '.join(models)}); add them there"
        )


def _check_source(source: str, engine: str, mode: str, where: str, path: Path) -> None:
    from controller.artifacts import CONVERSIONS, ENGINE_FORMATS

    if mode == "serving":
        raise UserError(f"{path}: {where} source applies to batch campaigns (the framework a conversion starts from)")
    fmt = ENGINE_FORMATS.get(engine)
    if fmt is None:
        raise UserError(
            f"{path}: {where} source: engine {engine} runs models natively; source applies to converted runs"
        )
    valid = sorted(s for s, f in CONVERSIONS if f == fmt)
    if source not in valid:
        raise UserError(
            f"{path}: {where} source = {source!r}; engine {engine} runs {fmt} made from: {', '.join(valid)}"
        )


def _idle(idle: Any, path: Path) -> IdlePolicy:
    # duration_s without a measuring policy is kept, not refused: `--set idle.policy=stored` switches
    # measuring off for one session of a file that measures.
    check_table(idle, "idle", "[idle]", path)
    return IdlePolicy(
        policy=idle.get("policy", "stored"),
        duration_s=float(idle.get("duration_s", 600.0)),
        max_age_days=float(idle.get("max_age_days", 7.0)),
    )


def _cooldown(cool: Any, path: Path) -> Cooldown:
    check_table(cool, "cooldown", "[cooldown]", path)  # keys of other modes kept, as [idle]'s
    return Cooldown(
        mode=cool.get("mode", "none"),
        seconds=float(cool.get("seconds", 0.0)),
        max_s=float(cool.get("max_s", 300.0)),
        tolerance_c=float(cool.get("tolerance_c", 2.0)),
        poll_s=float(cool.get("poll_s", 1.0)),
    )
