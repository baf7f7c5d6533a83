"""What a campaign's runs are fed, from its file: the data set ([campaign]'s, or a model's own in
[datasets]), a user's model's input sizes ([input_shapes]), and a serving campaign's [serving]
table, whose batch-only keys are refused with what replaces each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.campaigns.paths import local_path, model_in_matrix
from controller.campaigns.schema import check_table
from controller.campaigns.spec import DatasetChoice
from controller.errors import UserError
from controller.serving.settings import ServingSettings

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


def serving_table(data: dict[str, Any], camp: dict[str, Any], mode: str, path: Path) -> dict[str, Any] | None:
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


def dataset_choice(raw: dict[str, Any], where: str, path: Path, default: str = "synthetic") -> DatasetChoice:
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


def model_datasets(datasets_raw: Any, models: list[str], path: Path) -> dict[str, DatasetChoice]:
    if not isinstance(datasets_raw, dict):
        raise UserError(f"{path}: [datasets] must be tables named by model, e.g. [datasets.bert-imdb]")
    datasets: dict[str, DatasetChoice] = {}
    for model, raw in datasets_raw.items():
        where = f"[datasets.{model}]"
        check_table(raw, "datasets", where, path)
        key = model_in_matrix(model, models, where, path)
        datasets[key] = dataset_choice(raw, where, path)
    return datasets


def model_input_shapes(raw: Any, models: list[str], path: Path) -> dict[str, tuple[str, ...]]:
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
        key = model_in_matrix(model, models, "[input_shapes]", path)
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


def serving_settings(raw: dict[str, Any], path: Path) -> ServingSettings:
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
