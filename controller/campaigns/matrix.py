"""A campaign file's [matrix]: its models and batch sizes, its configurations checked against what
exists (images, their engines, conversion sources, options), and a size that can run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.campaigns.paths import model_paths
from controller.campaigns.schema import check_table
from controller.campaigns.spec import Configuration
from controller.errors import UserError
from controller.inputs import MAX_CELLS


def models_and_batches(matrix: dict[str, Any], mode: str, path: Path) -> tuple[list[str], list[int]]:
    if "models" not in matrix:
        raise UserError(f'{path}: [matrix] models must be a non-empty list of model ids, e.g. ["resnet50"]')
    batches = matrix.get("batch_sizes", [1])
    if mode == "serving" and batches != [1]:
        raise UserError(
            f"{path}: a serving campaign sends one prompt per request; leave batch_sizes out "
            "(requests in flight are [serving] concurrency)"
        )
    models = model_paths(matrix["models"], path)
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise UserError(f"{path}: [matrix] models name {', '.join(twice)} twice (as written or once resolved)")
    return models, batches


def check_cell_count(
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


def matrix_configurations(
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
        models=tuple(model_paths(models, path)) if models else None,
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
