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

from controller.campaigns.matrix import check_cell_count, matrix_configurations, models_and_batches
from controller.campaigns.paths import local_path
from controller.campaigns.run_inputs import (
    dataset_choice,
    model_datasets,
    model_input_shapes,
    serving_settings,
    serving_table,
)
from controller.campaigns.schema import check_table
from controller.campaigns.spec import (
    BLOCK_KEYS,
    DEFAULT_BLOCK_BY,
    Campaign,
    Cooldown,
    IdlePolicy,
    default_quiet_wait_s,
)
from controller.errors import UserError

TOP = {"campaign", "idle", "cooldown", "matrix", "datasets", "serving", "input_shapes"}


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
    serving_raw = serving_table(data, camp, mode, path)
    matrix = data.get("matrix")
    if not matrix:
        raise UserError(f"{path}: no [matrix] table; a campaign needs models, batch_sizes and configurations")
    check_table(matrix, "matrix", "[matrix]", path)
    models, batches = models_and_batches(matrix, mode, path)
    configurations = matrix_configurations(matrix.get("configurations"), camp, models, mode, path)
    repetitions = camp.get("repetitions", 1)
    _check_size(camp, mode, path)
    check_cell_count(configurations, models, batches, repetitions, path)
    samples, duration = _amount(camp, path)
    timeout_s = camp.get("timeout_s", 1800.0)
    _check_runs_fit(camp, duration, timeout_s, path)
    default_dataset = dataset_choice(camp, "[campaign]", path)
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
        datasets=model_datasets(data.get("datasets", {}), models, path),
        input_shapes=model_input_shapes(data.get("input_shapes", {}), models, path),
        serving=serving_settings(serving_raw or {}, path) if mode == "serving" else None,
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


def _check_size(camp: dict[str, Any], mode: str, path: Path) -> None:
    from suite.models import MODELS

    if mode != "batch" or "model_size" not in camp:
        return
    sizes = sorted({size for info in MODELS.values() for size in info.sizes})
    if camp["model_size"] not in sizes:
        raise UserError(f"{path}: [campaign] model_size = {camp['model_size']!r}; valid sizes: {', '.join(sizes)}")


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
