"""Conversions, done once into a content-addressed cache, in the source framework's image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.cache import ArtifactCache, default_root, key_of
from controller.errors import UserError
from controller.progress import relay_progress
from controller.runners.base import Invocation, Mount, Runner, execute
from harness.protocol import CONVERT_FIELDS, ConvertSpec, ProtocolError, parse_stream
from suite.model_formats import file_sha256
from suite.models import get_model
from suite.source_spec import KIND_NAMES
from suite.sources import MODEL_MOUNT, ModelSource

__all__ = ["file_sha256"]  # moved to suite.model_formats; still importable from here

# engine -> (artifact format it loads, or None when it builds the model itself)
ENGINE_FORMATS: dict[str, str | None] = {
    "torch": None,
    "torchscript": "torchscript",
    "torch-compile": None,
    "onnxruntime": "onnx",
    "openvino": "onnx",
    "tensorrt": "onnx",  # built into a TensorRT engine on the run's GPU, as its compile step
    "tensorflow": None,
    "mxnet": None,
}
# (source framework, format) -> conversion name (harness/converters names the same)
CONVERSIONS: dict[tuple[str, str], str] = {
    ("torch", "onnx"): "torch2onnx",
    ("torch", "torchscript"): "torch2torchscript",
    ("tensorflow", "onnx"): "tf2onnx",
    ("mxnet", "onnx"): "mx2onnx",
}
# The image in which a framework's models are built and converted.
FRAMEWORK_IMAGES = {"torch": "torch-cpu", "tensorflow": "tf-cpu", "mxnet": "mxnet-cpu"}
ARTIFACT_MOUNT = "/artifacts"
WEIGHTS_MOUNT = "/weights"


class ConversionFailed(Exception):
    def __init__(self, reason: str, log_tail: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail or []


@dataclass(frozen=True)
class Artifact:
    key: str
    relpath: str  # relative to the cache root
    meta: dict[str, Any]
    reused: bool


def default_cache() -> Path:
    return default_root() / "artifacts"


def conversion_for(engine: str, model: str, source: str | None = None) -> tuple[str, str] | None:
    """(conversion, image that runs it) an engine needs for a model, or None when it needs none.

    ``source`` picks which framework's definition is converted (default: the model's first).
    """
    fmt = ENGINE_FORMATS.get(engine)
    sources = get_model(model).sources
    if fmt is None:
        if source is not None:
            raise UserError(f"engine {engine} runs {model} natively; --source applies to converted runs")
        return None
    source = source or sources[0]
    if source not in sources:
        raise UserError(f"{model} has no {source} definition; valid sources: {', '.join(sources)}")
    if (source, fmt) not in CONVERSIONS:
        valid = sorted(s for s, f in CONVERSIONS if f == fmt)
        raise UserError(f"no {source} to {fmt} conversion; {fmt} can come from: {', '.join(valid)}")
    return CONVERSIONS[(source, fmt)], FRAMEWORK_IMAGES[source]


@dataclass(frozen=True)
class Conversion:
    """One conversion of one model: what it is, where it runs, what it starts from."""

    name: str  # torch2onnx, onnx2openvino, ...
    image: str  # the image that runs it
    model: str
    model_size: str
    weights: str
    weights_file: Path | None
    seed: int
    source: Artifact | None = None  # a conversion of an artifact (onnx2openvino): the one it converts
    model_source: ModelSource | None = None  # a user's own model (file, folder, hub id); ``model`` is its label


def describe_parity(parity: dict[str, Any]) -> str:
    """One line: the parity gate's figure, or a quantisation's recorded top-1 agreement."""
    if parity.get("gated", True):
        return f"parity max abs diff {parity.get('max_abs_diff', float('nan')):.2g}"
    return (
        f"top-1 agreement with the source {parity.get('argmax_agreement', float('nan')):.1%} of "
        f"{parity.get('samples', '?')} fixed inputs (recorded, not a gate; max abs diff "
        f"{parity.get('max_abs_diff', float('nan')):.2g})"
    )


def describe_model(conv: Conversion) -> str:
    """The model a conversion starts from, for the screen: a user's own brings its own weights."""
    if conv.model_source is not None:
        return f"{conv.model} ({KIND_NAMES[conv.model_source.kind]}, its own weights)"
    return f"{conv.model} ({conv.model_size}, {conv.weights} weights)"


def cache_inputs(
    spec: ConvertSpec, environment: str, weights_sha: str | None, source_key: dict[str, Any] | None = None
) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "conversion": spec.conversion,
        "model": spec.model,
        "model_size": spec.model_size,
        "weights": spec.weights,
        "weights_sha256": weights_sha,
        "seed": spec.seed,
        "opset": spec.opset,
        "exporter_environment": environment,
    }
    if source_key is not None:  # a model source: its contents' sha256 and the inputs it is traced with
        inputs["model_source"] = source_key
    return inputs


def mount_source(runner: Runner, source: ModelSource, mounts: list[Mount]) -> dict[str, Any]:
    """Mount a model source's files read-only (appended to ``mounts``); its harness fields (RunSpec
    or ConvertSpec.model_source), with its path as the harness sees it."""
    mounts += [Mount(host, f"{MODEL_MOUNT}/{rel}") for host, rel in source.mounts()]
    return source.harness_fields(runner.path_for(Mount(source.location, f"{MODEL_MOUNT}/{source.entry}")))


def ensure_artifact(
    runner: Runner,
    cache: ArtifactCache,
    conv: Conversion,
    timeout_s: float,
    note: Callable[[str], None],
    detail: Callable[[str], None] | None = None,
) -> Artifact:
    """The cached artifact for these inputs, converting (and checking parity) when missing or damaged.
    ``detail`` shows where the conversion stands, as the harness reports it.

    A conversion of an artifact (``conv.source``) has the source's key in its own key, and the
    source's folder is mounted read-only for it.
    """
    weights_sha = file_sha256(conv.weights_file) if conv.weights_file else None
    probe = ConvertSpec(
        conversion=conv.name, model=conv.model, model_size=conv.model_size, weights=conv.weights, seed=conv.seed
    )
    source_key = conv.model_source.conversion_key() if conv.model_source is not None else None
    inputs = cache_inputs(probe, runner.environment_id(conv.image), weights_sha, source_key)
    if conv.source is not None:
        inputs["source_artifact"] = conv.source.key
    key = key_of(inputs)
    found = cache.lookup(key)
    if found is not None:
        return Artifact(key, f"{key}/{found.meta['artifact_file']}", found.meta, reused=True)
    staging = cache.stage(key)
    try:
        meta = _convert(runner, cache, conv, staging, timeout_s, note, detail)
        meta = {**meta, "key_inputs": inputs}
        if conv.source is not None:  # the chain, for the record: which artifact this one was made from
            meta["source_artifact"] = {"key": conv.source.key, "conversion": conv.source.meta.get("conversion")}
        entry = cache.commit(staging, key, meta)
    finally:
        cache.discard(staging)
    note(f"converted: {entry.folder} ({describe_parity(entry.meta['parity'])})")
    return Artifact(key, f"{key}/{entry.meta['artifact_file']}", entry.meta, reused=False)


def _convert(
    runner: Runner,
    cache: ArtifactCache,
    conv: Conversion,
    staging: Path,
    timeout_s: float,
    note: Callable[[str], None],
    detail: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Run the conversion into ``staging``; its result (meta) once parity holds, else ConversionFailed."""
    mounts = [Mount(str(staging), "/out", read_only=False)]
    weights_in = source_in = None
    if conv.weights_file is not None:
        mounts.append(Mount(str(conv.weights_file), f"{WEIGHTS_MOUNT}/{conv.weights_file.name}"))
        weights_in = runner.path_for(mounts[-1])
    if conv.source is not None:
        mounts.append(Mount(str(cache.root / conv.source.key), f"{ARTIFACT_MOUNT}/{conv.source.key}"))
        source_in = f"{runner.path_for(mounts[-1])}/{conv.source.meta['artifact_file']}"
    source_fields = None
    if conv.model_source is not None:
        source_fields = mount_source(runner, conv.model_source, mounts)
        if conv.source is None and conv.model_source.kind == "onnx":
            source_in = source_fields["path"]  # onnx2openvino of the user's own ONNX file
    spec = ConvertSpec(
        conversion=conv.name,
        model=conv.model,
        model_size=conv.model_size,
        weights=conv.weights,
        weights_path=weights_in,
        seed=conv.seed,
        out_dir=runner.path_for(mounts[0]),
        source_artifact=source_in,
        model_source=source_fields,
    )
    where = f"in {conv.image}" if runner.kind == "docker" else "locally"
    note(f"converting {describe_model(conv)} with {conv.name} {where} ...")
    execution = execute(
        runner,
        Invocation(
            image=conv.image,
            argv=["convert", "--spec", spec.to_json()],
            timeout_s=timeout_s,
            mounts=mounts,
            network=conv.weights == "pretrained" and conv.source is None,  # only a download needs it
            labels={"joulebench.conversion": conv.name},
            on_line=relay_progress(detail) if detail is not None else None,
        ),
    )
    tail = execution.log_tail()
    if execution.start_error:
        raise ConversionFailed(f"{conv.name} could not start: {execution.start_error}", tail)
    try:
        out = parse_stream(execution.stdout, CONVERT_FIELDS)
    except ProtocolError as exc:
        raise ConversionFailed(f"{conv.name}: {exc}", tail) from None
    if execution.timed_out:
        raise ConversionFailed(f"{conv.name} timed out after {timeout_s:.0f} s", tail)
    if out.error is not None:
        raise ConversionFailed(f"{conv.name}: {out.error['message']}", tail)
    if execution.exit_code != 0 or out.result is None:
        raise ConversionFailed(f"{conv.name} exited with code {execution.exit_code}", tail)
    parity = out.result["parity"]
    if not parity["ok"] and parity.get("gated", True):
        raise ConversionFailed(
            f"{conv.name} output differs from the source model beyond tolerance: "
            f"max abs diff {parity['max_abs_diff']:.3g} (atol {parity['atol']}), max rel diff "
            f"{parity['max_rel_diff']:.3g} (rtol {parity['rtol']}), argmax agreement "
            f"{parity['argmax_agreement']:.1%}",
            tail,
        )
    return {**out.result, "converted_by": execution.runner}
