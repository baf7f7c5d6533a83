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

import math
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import tomllib

from controller.campaigns.spec import (
    BLOCK_KEYS,
    COOLDOWN_MODES,
    DEFAULT_BLOCK_BY,
    IDLE_POLICIES,
    MODES,
    ORDERS,
    RUNNERS,
    Campaign,
    Configuration,
    Cooldown,
    DatasetChoice,
    IdlePolicy,
)
from controller.errors import UserError
from controller.requests import size_bytes
from controller.serving.settings import ServingSettings

_KNOWN = {
    "campaign": {
        "name",
        "description",
        "mode",
        "repetitions",
        "model_size",
        "weights",
        "dataset",
        "dataset_path",
        "limit",
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
        "block_by",
        "retries",
    },
    "idle": {"policy", "duration_s", "max_age_days"},
    "cooldown": {"mode", "seconds", "max_s", "tolerance_c", "poll_s"},
    "matrix": {"models", "batch_sizes", "configurations"},
    "configuration": {
        "name",
        "image",
        "engine",
        "source",
        "options",
        "models",
        "batch_sizes",
        "note",
        "repetitions",
        "concurrency",
    },
    "datasets": {"dataset", "dataset_path", "limit"},
    "serving": {f.name for f in fields(ServingSettings)},
}
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


def _check_keys(table: Any, known: set[str], where: str, path: Path) -> None:
    if not isinstance(table, dict):
        raise UserError(f"{path}: {where} must be a table")
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
    if not ok_type or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        what = "an integer" if kind is int else "a finite number"
        bound = "0 or more" if allow_zero else "positive"
        raise UserError(f"{path}: {key} must be {what}, {bound}; got {value!r}")
    return kind(value)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def local_path(text: str, base: Path) -> Path:
    """A path from a campaign file: absolute as is; relative from the file's folder, else from the
    current directory; when neither exists, the file-relative one (for the error message)."""
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


def _dataset_choice(raw: dict[str, Any], where: str, path: Path, default: str = "synthetic") -> DatasetChoice:
    from suite.datasets import DATASETS

    dataset = raw.get("dataset", default)
    if dataset not in DATASETS:
        raise UserError(f"{path}: {where} dataset = {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    ds_path = raw.get("dataset_path")
    if ds_path is not None and not isinstance(ds_path, str):
        raise UserError(f"{path}: {where} dataset_path must be a path (a string), got {ds_path!r}")
    limit = raw.get("limit")
    if limit is not None:
        limit = _positive(limit, f"{where} limit", path)
    resolved = str(local_path(ds_path, path.parent)) if ds_path else None
    return DatasetChoice(dataset, resolved, limit)


def _serving_settings(raw: dict[str, Any], path: Path) -> ServingSettings:
    d = ServingSettings()  # defaults in one place
    prompts = raw.get("prompts", d.prompts)
    if not isinstance(prompts, str) or not prompts:
        raise UserError(f'{path}: [serving] prompts must be "humaneval" or a prompt file path, got {prompts!r}')
    if prompts != "humaneval":
        prompts = str(local_path(prompts, path.parent))
    limit = raw.get("limit", d.limit)
    seed = raw.get("seed", d.seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError(f"{path}: [serving] seed must be an integer, got {seed!r}")

    def number(key: str, kind: type = int, allow_zero: bool = False) -> Any:
        return _positive(raw.get(key, getattr(d, key)), f"[serving] {key}", path, kind, allow_zero=allow_zero)

    return ServingSettings(
        **_serving_load_settings(raw, path),
        prompts=prompts,
        limit=None if limit is None else _positive(limit, "[serving] limit", path),
        seed=seed,
        max_new_tokens=number("max_new_tokens"),
        concurrency=number("concurrency"),
        warmup_requests=number("warmup_requests", allow_zero=True),
        warmup_s=number("warmup_s", float, allow_zero=True),
        cooldown_s=number("cooldown_s", float, allow_zero=True),
        request_timeout_s=number("request_timeout_s", float),
        ready_timeout_s=number("ready_timeout_s", float),
    )


def _serving_load_settings(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """[serving] slo, synthetic and ignore_eos as ``serve`` takes them; a load sweep is refused."""
    from controller.serving.metrics import parse_slo
    from suite.prompts import PromptError, parse_synthetic

    if "load" in raw:
        raise UserError(
            f"{path}: [serving] load: a campaign serves each cell at one closed-loop concurrency ([serving] "
            "concurrency); sweep loads with serve --concurrency 1,4,16 or --request-rate 1,2,inf"
        )
    out: dict[str, Any] = {}
    for key, parse in (("slo", parse_slo), ("synthetic", parse_synthetic)):
        if key in raw:
            if not isinstance(raw[key], str):
                raise UserError(f'{path}: [serving] {key} must be a string as serve --{key} takes it, got {raw[key]!r}')
            try:
                out[key] = parse(raw[key])
            except (ValueError, PromptError) as exc:
                raise UserError(f"{path}: [serving] {exc}") from None
    if "ignore_eos" in raw:
        if not isinstance(raw["ignore_eos"], bool):
            raise UserError(f"{path}: [serving] ignore_eos must be true or false, got {raw['ignore_eos']!r}")
        out["ignore_eos"] = raw["ignore_eos"]
    return out


def _interval(value: Any, path: Path) -> float:
    interval = float(_positive(value, "interval_s", path, float))
    if interval < 0.001:
        raise UserError(
            f"{path}: [campaign] interval_s = {interval:g} is under 1 ms: the meters cannot sample that often"
        )
    return interval


def _memory(value: Any, path: Path) -> str | None:
    if value is None:
        return None
    try:
        size_bytes(str(value), "memory")
    except UserError as exc:
        raise UserError(f"{path}: [campaign] {exc}") from None
    return str(value)


def _model_paths(models: list[str], path: Path) -> list[str]:
    """Model files and folders resolved (a relative one from the campaign file's folder); names and hub
    ids as is."""
    out = []
    for m in models:
        p = local_path(m, path.parent)
        looks_like_path = m.startswith((".", "/", "~")) or p.exists()
        out.append(str(p) if looks_like_path else m)
    return out


def load_campaign_file(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Campaign:
    """Read and validate a campaign file (with ``--set`` overrides); UserError names the key, the
    value and what is valid."""
    path = Path(path)
    data, text = _read(path, overrides)
    top = {"campaign", "idle", "cooldown", "matrix", "datasets", "serving", "input_shapes"}
    _check_keys(data, top, "the file's top level", path)
    camp = data.get("campaign", {})
    _check_keys(camp, _KNOWN["campaign"], "[campaign]", path)
    mode = _choice(camp.get("mode", "batch"), MODES, "[campaign] mode", path)
    serving_raw = _serving_table(data, camp, mode, path)
    matrix = data.get("matrix")
    if not matrix:
        raise UserError(f"{path}: no [matrix] table; a campaign needs models, batch_sizes and configurations")
    _check_keys(matrix, _KNOWN["matrix"], "[matrix]", path)
    name = camp.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"{path}: campaign name {name!r} must be letters, digits, '.', '_', '+' or '-'")
    samples, duration = _amount(camp, path)
    seed = camp.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise UserError(f"{path}: seed must be an integer, got {seed!r}")
    models, batches = _models_and_batches(matrix, mode, path)
    default_dataset = _dataset_choice(camp, "[campaign]", path)
    weights = camp.get("weights", "random")
    if isinstance(weights, str) and weights not in ("random", "pretrained"):
        weights = str(local_path(weights, path.parent))
    return Campaign(
        name=name,
        path=path,
        text=text,
        description=camp.get("description", ""),
        repetitions=_positive(camp.get("repetitions", 1), "repetitions", path),
        model_size=camp.get("model_size", "full"),
        weights=weights,
        dataset=default_dataset.dataset,
        samples=samples,
        duration_s=duration,
        warmup=_positive(camp.get("warmup", 5), "warmup", path, allow_zero=True),
        seed=seed,
        runner=_choice(camp.get("runner", "auto"), RUNNERS, "runner", path),
        order=_choice(camp.get("order", "interleaved"), ORDERS, "order", path),
        timeout_s=_positive(camp.get("timeout_s", 1800.0), "timeout_s", path, float),
        memory=_memory(camp.get("memory"), path),
        interval_s=_interval(camp.get("interval_s", 0.01), path),
        keep_trace=bool(camp.get("keep_trace", False)),
        options=dict(camp.get("options", {})),
        idle=_idle(data.get("idle", {}), path),
        cooldown=_cooldown(data.get("cooldown", {}), path),
        models=tuple(models),
        batch_sizes=tuple(batches),
        configurations=_configurations(matrix.get("configurations"), mode, path),
        mode=mode,
        dataset_path=default_dataset.dataset_path,
        limit=default_dataset.limit,
        datasets=_datasets(data.get("datasets", {}), path),
        input_shapes=_input_shapes(data.get("input_shapes", {}), path),
        serving=_serving_settings(serving_raw or {}, path) if mode == "serving" else None,
        overrides=tuple(overrides),
        block_by=_block_by(camp.get("block_by", list(DEFAULT_BLOCK_BY)), path),
        retries=_positive(camp.get("retries", 1), "retries", path, allow_zero=True),
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
    if data.get("datasets"):
        raise UserError(f"{path}: [datasets] does not apply to a serving campaign (the prompts are [serving])")
    if not isinstance(serving_raw or {}, dict):
        raise UserError(f"{path}: [serving] must be a table")
    _check_keys(serving_raw or {}, _KNOWN["serving"], "[serving]", path)
    return serving_raw or {}


def _amount(camp: dict[str, Any], path: Path) -> tuple[int | None, float | None]:
    samples, duration = camp.get("samples"), camp.get("duration_s")
    if samples is not None and duration is not None:
        raise UserError(f"{path}: give samples or duration_s in [campaign], not both")
    return (
        None if samples is None else _positive(samples, "samples", path),
        None if duration is None else _positive(duration, "duration_s", path, float),
    )


def _models_and_batches(matrix: dict[str, Any], mode: str, path: Path) -> tuple[list[str], list[int]]:
    models = matrix.get("models")
    if not models or not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise UserError(f'{path}: [matrix] models must be a non-empty list of model ids, e.g. ["resnet50"]')
    batches = matrix.get("batch_sizes", [1])
    if not isinstance(batches, list) or not batches:
        raise UserError(f"{path}: [matrix] batch_sizes must be a non-empty list of integers")
    batches = [_positive(b, "batch_sizes", path) for b in batches]
    if mode == "serving" and batches != [1]:
        raise UserError(
            f"{path}: a serving campaign sends one prompt per request; leave batch_sizes out "
            "(requests in flight are [serving] concurrency)"
        )
    return _model_paths(models, path), batches


def _datasets(datasets_raw: Any, path: Path) -> dict[str, DatasetChoice]:
    if not isinstance(datasets_raw, dict):
        raise UserError(f"{path}: [datasets] must be tables named by model, e.g. [datasets.bert-imdb]")
    datasets: dict[str, DatasetChoice] = {}
    for model, raw in datasets_raw.items():
        where = f"[datasets.{model}]"
        if not isinstance(raw, dict):
            raise UserError(f"{path}: {where} must be a table with dataset, dataset_path and limit")
        _check_keys(raw, _KNOWN["datasets"], where, path)
        datasets[model] = _dataset_choice(raw, where, path)
    return datasets


def _input_shapes(raw: Any, path: Path) -> dict[str, tuple[str, ...]]:
    """``[input_shapes]``: per model (as named in matrix.models), its inputs' NAME=DIMS."""
    if not isinstance(raw, dict):
        raise UserError(f'{path}: [input_shapes] must map models to lists, e.g. "./model.onnx" = ["x=3x224x224"]')
    out: dict[str, tuple[str, ...]] = {}
    for model, shapes in raw.items():
        if not isinstance(shapes, list) or not all(isinstance(v, str) and "=" in v for v in shapes):
            raise UserError(f"{path}: [input_shapes] {model} must be a list of NAME=DIMS strings, got {shapes!r}")
        key = _model_paths([model], path)[0]
        out[key] = tuple(shapes)
    return out


def _configurations(confs_raw: Any, mode: str, path: Path) -> tuple[Configuration, ...]:
    if not confs_raw or not isinstance(confs_raw, list):
        raise UserError(
            f'{path}: [matrix] needs at least one [[matrix.configurations]] with an image (e.g. image = "onnx-cpu")'
        )
    configurations = [
        _configuration(raw, f"[[matrix.configurations]] #{i + 1}", mode, path) for i, raw in enumerate(confs_raw)
    ]
    names = [c.name for c in configurations]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{path}: configuration name(s) {', '.join(dupes)} used twice; give each a unique name")
    return tuple(configurations)


def _configuration(raw: Any, where: str, mode: str, path: Path) -> Configuration:
    if not isinstance(raw, dict):
        raise UserError(f"{path}: {where} must be a table")
    _check_keys(raw, _KNOWN["configuration"], where, path)
    if "image" not in raw:
        raise UserError(f"{path}: {where} has no image")
    engine, source = raw.get("engine"), raw.get("source")
    default_name = raw["image"] + (f"-{engine}" if engine else "") + (f"-{source}" if source else "")
    cname = raw.get("name", default_name)
    if not isinstance(cname, str) or not _NAME.match(cname):
        raise UserError(f"{path}: {where} name {cname!r} must be letters, digits, '.', '_', '+' or '-'")
    if not isinstance(raw.get("options", {}), dict):
        raise UserError(f"{path}: {where} options must be a table, e.g. options = {{ intra_op_threads = 2 }}")
    models, batches = raw.get("models"), raw.get("batch_sizes")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise UserError(f"{path}: {where} models must be a list of model ids")
    if batches is not None and not isinstance(batches, list):
        raise UserError(f"{path}: {where} batch_sizes must be a list of integers")
    if "concurrency" in raw and mode != "serving":
        raise UserError(f"{path}: {where} concurrency applies to serving campaigns (requests in flight)")
    reps, concurrency = raw.get("repetitions"), raw.get("concurrency")
    return Configuration(
        name=cname,
        image=raw["image"],
        engine=engine,
        source=source,
        options=dict(raw.get("options", {})),
        models=tuple(_model_paths(models, path)) if models else None,
        batch_sizes=tuple(_positive(b, "batch_sizes", path) for b in batches) if batches else None,
        note=raw.get("note", ""),
        repetitions=None if reps is None else _positive(reps, f"{where} repetitions", path),
        concurrency=None if concurrency is None else _positive(concurrency, f"{where} concurrency", path),
    )


def _idle(idle: Any, path: Path) -> IdlePolicy:
    _check_keys(idle, _KNOWN["idle"], "[idle]", path)
    return IdlePolicy(
        policy=_choice(idle.get("policy", "stored"), IDLE_POLICIES, "[idle] policy", path),
        duration_s=_positive(idle.get("duration_s", 600.0), "[idle] duration_s", path, float),
        max_age_days=_positive(idle.get("max_age_days", 7.0), "[idle] max_age_days", path, float),
    )


def _cooldown(cool: Any, path: Path) -> Cooldown:
    _check_keys(cool, _KNOWN["cooldown"], "[cooldown]", path)
    return Cooldown(
        mode=_choice(cool.get("mode", "none"), COOLDOWN_MODES, "[cooldown] mode", path),
        seconds=_positive(cool.get("seconds", 0.0), "[cooldown] seconds", path, float, allow_zero=True),
        max_s=_positive(cool.get("max_s", 300.0), "[cooldown] max_s", path, float),
        tolerance_c=_positive(cool.get("tolerance_c", 2.0), "[cooldown] tolerance_c", path, float),
        poll_s=_positive(cool.get("poll_s", 1.0), "[cooldown] poll_s", path, float),
    )
