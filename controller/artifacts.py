"""Conversions, done once into a content-addressed cache, in the source framework's image."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import UserError
from controller.runners.base import Invocation, Mount
from harness.protocol import CONVERT_FIELDS, ConvertSpec, ProtocolError, parse_stream
from suite.model_formats import file_sha256
from suite.models import get_model
from suite.sources import MODEL_MOUNT, ModelSource

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
CONTAINER_UID = 10001
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
    return Path(os.environ.get("JOULEBENCH_CACHE", Path.home() / ".cache" / "joulebench")) / "artifacts"


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


def new_staging(cache_root: Path, key: str, runner: Any) -> Path:
    """A fresh folder beside the cache entry ``key`` that the converting harness may write into.

    It is renamed into place only once the conversion passed its checks.
    """
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = cache_root / f".staging-{key}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(mode=0o755)
    if runner.kind == "docker" and os.getuid() == 0:
        os.chown(staging, CONTAINER_UID, CONTAINER_UID)  # the container writes as that user
    return staging


def cache_key(
    spec: ConvertSpec, environment: str, weights_sha: str | None, source_key: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
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
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32], inputs


def mount_source(runner: Any, source: ModelSource, mounts: list[Mount]) -> dict[str, Any]:
    """Mount a model source's files read-only (appended to ``mounts``); its harness fields (RunSpec
    or ConvertSpec.model_source), with its path as the harness sees it."""
    mounts += [Mount(host, f"{MODEL_MOUNT}/{rel}") for host, rel in source.mounts()]
    return source.harness_fields(runner.path_for(Mount(source.location, f"{MODEL_MOUNT}/{source.entry}")))


def ensure_artifact(
    runner: Any,
    cache_root: Path,
    conversion: str,
    source_image: str,
    model: str,
    model_size: str,
    weights: str,
    weights_file: Path | None,
    seed: int,
    timeout_s: float,
    say: Any = print,
    source: Artifact | None = None,
    model_source: ModelSource | None = None,
) -> Artifact:
    """The cached artifact for these inputs, converting (and checking parity) when missing.

    ``source``: for a conversion of an artifact (onnx2openvino), the cached artifact it converts;
    its key joins the cache key and its folder is mounted read-only for the conversion.
    ``model_source``: a model given as a file, folder or hub id (``model`` is then its label): its
    files are mounted read-only and its digest joins the cache key; an ONNX file is what
    onnx2openvino converts when no ``source`` artifact is given.
    """
    weights_sha = file_sha256(weights_file) if weights_file else None
    probe = ConvertSpec(conversion=conversion, model=model, model_size=model_size, weights=weights, seed=seed)
    source_key = model_source.conversion_key() if model_source is not None else None
    key, inputs = cache_key(probe, runner.environment_id(source_image), weights_sha, source_key)
    if source is not None:
        inputs["source_artifact"] = source.key
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]
    final = cache_root / key
    meta_path = final / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return Artifact(key, f"{key}/{meta['artifact_file']}", meta, reused=True)

    staging = new_staging(cache_root, key, runner)
    mounts = [Mount(str(staging), "/out", read_only=False)]
    weights_in = None
    if weights_file is not None:
        weights_mount = Mount(str(weights_file), f"{WEIGHTS_MOUNT}/{weights_file.name}")
        mounts.append(weights_mount)
        weights_in = runner.path_for(weights_mount)
    source_in = None
    if source is not None:
        source_mount = Mount(str(cache_root / source.key), f"{ARTIFACT_MOUNT}/{source.key}")
        mounts.append(source_mount)
        source_in = f"{runner.path_for(source_mount)}/{source.meta['artifact_file']}"
    source_fields = None
    if model_source is not None:
        source_fields = mount_source(runner, model_source, mounts)
        if source is None and model_source.kind == "onnx":
            source_in = source_fields["path"]  # onnx2openvino of the user's own ONNX file
    spec = ConvertSpec(
        conversion=conversion,
        model=model,
        model_size=model_size,
        weights=weights,
        weights_path=weights_in,
        seed=seed,
        out_dir=runner.path_for(mounts[0]),
        source_artifact=source_in,
        model_source=source_fields,
    )
    say(f"converting {model} ({model_size}, {weights} weights) with {conversion} in {source_image} ...")
    try:
        execution = runner.execute(
            Invocation(
                image=source_image,
                argv=["convert", "--spec", spec.to_json()],
                timeout_s=timeout_s,
                mounts=mounts,
                network=weights == "pretrained" and source is None,  # only a download needs it
                labels={"joulebench.conversion": conversion},
            )
        )
        tail = execution.log_tail()
        if execution.start_error:
            raise ConversionFailed(f"{conversion} could not start: {execution.start_error}", tail)
        try:
            out = parse_stream(execution.stdout, CONVERT_FIELDS)
        except ProtocolError as exc:
            raise ConversionFailed(f"{conversion}: {exc}", tail) from None
        if execution.timed_out:
            raise ConversionFailed(f"{conversion} timed out after {timeout_s:.0f} s", tail)
        if out.error is not None:
            raise ConversionFailed(f"{conversion}: {out.error['message']}", tail)
        if execution.exit_code != 0 or out.result is None:
            raise ConversionFailed(f"{conversion} exited with code {execution.exit_code}", tail)
        meta = out.result
        parity = meta["parity"]
        if not parity["ok"]:
            raise ConversionFailed(
                f"{conversion} output differs from the source model beyond tolerance: "
                f"max abs diff {parity['max_abs_diff']:.3g} (atol {parity['atol']}), max rel diff "
                f"{parity['max_rel_diff']:.3g} (rtol {parity['rtol']}), argmax agreement "
                f"{parity['argmax_agreement']:.1%}",
                tail,
            )
        meta = {**meta, "key": key, "key_inputs": inputs, "converted_by": execution.runner}
        if source is not None:  # the chain, for the record: which artifact this one was made from
            meta["source_artifact"] = {"key": source.key, "conversion": source.meta.get("conversion")}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        for path in staging.iterdir():
            path.chmod(0o644)
        try:
            staging.rename(final)
        except OSError:
            if not meta_path.is_file():  # a concurrent conversion did not finish either
                raise
        say(f"converted: {final} (parity max abs diff {parity['max_abs_diff']:.2g})")
        return Artifact(key, f"{key}/{meta['artifact_file']}", meta, reused=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
