"""Reading each kind of model file or folder into a ModelSource (suite/sources.py): what it takes,
what it gives, how big it is, its files and their sha256, and what a container mounts."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from suite import model_formats as mf
from suite.model_formats import FormatError, OnnxValue, combined_sha256, file_sha256, folder_files
from suite.protowire import WireError, read_onnx, read_saved_model
from suite.source_spec import InputSpec, ModelSource, SourceError, fill_for, input_spec


def from_path(path: Path) -> ModelSource:
    if path.is_dir():
        if (path / "config.json").is_file():
            return hf_folder(path)
        if (path / "saved_model.pb").is_file():
            return _saved_model(path)
        raise SourceError(
            f"folder {path} is neither a transformers save_pretrained folder (config.json) nor a TensorFlow "
            "SavedModel (saved_model.pb)"
        )
    suffix = path.suffix.lower()
    readers = {".onnx": _onnx_file, ".xml": _ir_file, ".keras": _keras_file}
    try:
        if suffix in readers:
            return readers[suffix](path)
        if _is_zip(path):
            return _torchscript_file(path)
    except FormatError as exc:
        raise SourceError(f"{path} is not a model joulebench can read: {exc}") from None
    hint = " (legacy Keras HDF5: save it as .keras)" if suffix in (".h5", ".hdf5") else ""
    raise SourceError(
        f"{path} is not a model joulebench can read{hint}: expected an ONNX file (.onnx), a TorchScript file "
        "(torch.jit.save), a Keras file (.keras), an OpenVINO IR (.xml + .bin), a transformers folder or a SavedModel"
    )


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _file_entries(root: Path, files: list[Path]) -> tuple[tuple[str, str, int], ...]:
    return tuple((f.relative_to(root).as_posix(), file_sha256(f), f.stat().st_size) for f in files)


def _single_files(kind: str, main: Path, extra: list[Path], **fields: Any) -> ModelSource:
    """A source made of one file and maybe files beside it (external data, IR weights)."""
    root = main.parent
    entries = _file_entries(root, [main, *extra])
    digest = entries[0][1] if len(entries) == 1 else combined_sha256([(p, s) for p, s, _ in entries])
    plan = tuple((str(root / p), p) for p, _, _ in entries)
    return ModelSource(
        kind,
        str(main),
        main.stem,
        size_bytes=sum(b for _, _, b in entries),
        files=entries,
        digest=digest,
        mount_plan=plan,
        entry=entries[0][0],
        **fields,
    )


def _onnx_file(path: Path) -> ModelSource:
    try:
        graph = read_onnx(path.read_bytes())
    except WireError as exc:
        raise SourceError(f"{path} is not an ONNX model whose graph can be read: {exc}") from None
    extra = []
    for name in graph.external_files:
        data = (path.parent / name).resolve()
        if not data.is_file() or path.parent not in data.parents:
            raise SourceError(f"{path} keeps weights in {name}, which is not a file beside it: copy it there")
        extra.append(data)
    inputs = tuple(input_spec(v, graph.vocab.get(v.name)) for v in graph.inputs)
    details = {"opsets": graph.opsets, "producer": graph.producer, "ir_version": graph.ir_version, "nodes": graph.nodes}
    return _single_files(
        "onnx",
        path,
        extra,
        task=None,
        inputs=inputs,
        outputs=tuple(graph.outputs),
        parameters=graph.parameters,
        details=details,
    )


def _ir_file(path: Path) -> ModelSource:
    info = mf.read_ir(path)
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise SourceError(f"OpenVINO IR {path} needs its weights {weights.name} beside it")
    details = {"ir_version": info.version, "name": info.name}
    inputs = tuple(input_spec(v, info.vocab.get(v.name)) for v in info.inputs)
    return _single_files(
        "openvino-ir",
        path,
        [weights],
        task=None,
        inputs=inputs,
        outputs=tuple(info.outputs),
        parameters=info.parameters,
        details=details,
    )


def _keras_file(path: Path) -> ModelSource:
    info = mf.read_keras(path)
    details = {"keras_class": info.class_name, "keras_version": info.keras_version, "layout": "as declared"}
    outputs = tuple(OnnxValue(name, "", []) for name in info.outputs)
    return _single_files(
        "keras", path, [], task=None, inputs=tuple(input_spec(v) for v in info.inputs), outputs=outputs, details=details
    )


def _torchscript_file(path: Path) -> ModelSource:
    info = mf.read_torchscript(path)
    inputs = tuple(_traced(v) if v.dtype else _untyped(v) for v in info.inputs)
    details = {"root_class": info.root_class, "example_shapes": "from the traced inputs" if info.traced else "none"}
    return _single_files("torchscript", path, [], task=None, inputs=inputs, parameters=info.parameters, details=details)


def _traced(value: OnnxValue) -> InputSpec:
    """An input of a traced module: the example it was traced with gives the default shape; a trace
    is not bound to it, so every axis stays open to --input-shape."""
    spec = input_spec(value)
    dims = ("batch", *(f"?{i}" for i in range(1, len(value.dims))))
    return replace(spec, dims=dims, shape_from="default")


def _untyped(value: OnnxValue) -> InputSpec:
    """A scripted module's input: no dtype or shape in the file; token-like names are int64 ids."""
    dtype = "int64" if re.search(r"(ids|mask)$", value.name) else "float32"
    fill, bound = fill_for(value.name, dtype, None)
    return InputSpec(value.name, dtype, ("?unranked",), None, fill, bound)


def _folder_source(kind: str, path: Path, label: str, **fields: Any) -> ModelSource:
    files = folder_files(path)
    entries = _file_entries(path, files)
    return ModelSource(
        kind,
        str(path),
        label,
        size_bytes=sum(b for _, _, b in entries),
        files=entries,
        digest=combined_sha256([(p, s) for p, s, _ in entries]),
        mount_plan=((str(path), path.name),),
        entry=path.name,
        **fields,
    )


def _saved_model(path: Path) -> ModelSource:
    try:
        sig = read_saved_model((path / "saved_model.pb").read_bytes())
    except WireError as exc:
        raise SourceError(f"{path}/saved_model.pb is not a SavedModel that can be read: {exc}") from None
    details = {"signature": sig.name, "layout": "as declared"}
    inputs = tuple(input_spec(v) for v in sig.inputs)
    return _folder_source(
        "savedmodel", path, path.name, task=None, inputs=inputs, outputs=tuple(sig.outputs), details=details
    )


def hf_folder(path: Path, hub_id: str | None = None) -> ModelSource:
    from suite.hf_config import check_config, read_hf_config

    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}/config.json is not JSON: {exc}") from None
    try:
        check_config(config)  # its kinds first, then the weights: reading it may import transformers
    except SourceError as exc:
        raise SourceError(f"transformers cannot load {path} for joulebench: {exc}") from None
    try:
        parameters = mf.hf_parameters(path)
    except FormatError as exc:
        raise SourceError(f"the weights in {path} cannot be read: {exc}") from None
    if parameters is None:
        raise SourceError(
            f"{path} has no torch weights (model.safetensors or pytorch_model.bin): save it with save_pretrained"
        )
    task, auto_class, inputs, details = read_hf_config(path, config)
    label = hub_id.split("/")[-1] if hub_id else path.name
    source = _folder_source("hf", path, label, task=task, inputs=inputs, parameters=parameters, hub_id=hub_id)
    details = {**details, "auto_class": auto_class}
    if hub_id:  # the cache's snapshot links into blobs/: mount the whole repository folder
        repo = path.parent.parent
        rel = path.relative_to(repo).as_posix()
        return replace(source, details=details, mount_plan=((str(repo), repo.name),), entry=f"{repo.name}/{rel}")
    return replace(source, details=details)
