"""What a model source is (:class:`ModelSource`, its inputs, the engines' routes to it) and the
checks on it; ``suite/sources.py`` resolves a name, path or hub id into one.

A model is a source: a registered name, an ONNX file, a transformers folder or hub id, a TorchScript
file, a Keras file or SavedModel, or an OpenVINO IR. :func:`resolve_source` reads what the model
says about itself (task, inputs with dtypes and dynamic axes, outputs, parameters, files and their
sha256) with the standard library only, so the controller can validate a run, pick images and name
the model in its record without any ML framework. :meth:`ModelSource.routes` says which engines can
run it, natively or through which conversions, and why the others cannot. The harness gets
:meth:`ModelSource.harness_fields`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from suite.model_formats import OnnxValue

MODEL_MOUNT = "/model"  # where a container sees the model's files (read-only)
ENGINES = ("onnxruntime", "openvino", "tensorrt", "torch", "torch-compile", "torchscript", "tensorflow", "mxnet")
ONNX_ENGINES = ("onnxruntime", "openvino", "tensorrt")
KIND_NAMES = {
    "registry": "a registered model",
    "onnx": "an ONNX file",
    "hf": "a transformers model",
    "torchscript": "a TorchScript file",
    "keras": "a Keras file",
    "savedmodel": "a TensorFlow SavedModel",
    "openvino-ir": "an OpenVINO IR",
}
ENGINE_NEEDS = {
    "onnxruntime": "an ONNX file or a model converted to one",
    "openvino": "an ONNX file, an OpenVINO IR or a model converted to ONNX",
    "tensorrt": "an ONNX file or a model converted to one",
    "torch": "a torch module (a transformers folder or a registered model)",
    "torch-compile": "a torch module (a transformers folder or a registered model)",
    "torchscript": "a TorchScript file or a torch module to trace",
    "tensorflow": "a Keras file or SavedModel",
    "mxnet": "a Gluon model (registered models only)",
}
# kind -> engines that load it as it is, and engine -> conversions that reach it
NATIVE = {
    "onnx": ONNX_ENGINES,
    "openvino-ir": ("openvino",),
    "hf": ("torch", "torch-compile"),
    "torchscript": ("torchscript",),
    "keras": ("tensorflow",),
    "savedmodel": ("tensorflow",),
}
_TF_ONNX: dict[str, tuple[str, ...]] = {engine: ("tf2onnx",) for engine in ONNX_ENGINES}
CONVERTED: dict[str, dict[str, tuple[str, ...]]] = {
    "hf": {"torchscript": ("torch2torchscript",), **dict.fromkeys(ONNX_ENGINES, ("torch2onnx",))},
    "keras": _TF_ONNX,
    "savedmodel": _TF_ONNX,
}
TO_ONNX = {"torch": "torch2onnx", "tensorflow": "tf2onnx", "mxnet": "mx2onnx"}
TEXT_SEQUENCE_DEFAULT = 128  # tokens, when --input-shape does not say (capped by the model's positions)
AUDIO_SAMPLES_DEFAULT = 16000  # one second at 16 kHz


class SourceError(ValueError):
    """A model that cannot be read or run as asked; the message says what to do (exit code 2)."""


@dataclass(frozen=True)
class InputSpec:
    """One input: its dims as declared (batch first; a str names a dynamic axis) and, once every
    dynamic axis other than the batch has a size, one sample's concrete shape."""

    name: str
    dtype: str
    dims: tuple[int | str, ...]
    shape: tuple[int, ...] | None = None
    fill: str = "normal"  # normal (floats) | ids (below vocab_size) | ones (masks) | zeros | positions
    vocab_size: int | None = None
    shape_from: str = "model"  # model | --input-shape | default

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "dims": list(self.dims),
            "shape": list(self.shape) if self.shape is not None else None,
            "fill": self.fill,
            "vocab_size": self.vocab_size,
            "shape_from": self.shape_from,
        }


@dataclass(frozen=True)
class Route:
    """How an engine runs a source: natively (no conversions), through conversions, or not (reason)."""

    engine: str
    conversions: tuple[str, ...] = ()
    reason: str | None = None
    note: str = ""

    @property
    def runnable(self) -> bool:
        return self.reason is None

    def describe(self) -> str:
        if self.reason is not None:
            return f"no: {self.reason}"
        how = "natively" if not self.conversions else "via " + " -> ".join(self.conversions)
        return how + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class ModelSource:
    kind: str
    location: str  # absolute path (hub: the snapshot folder), or the registered name
    label: str  # short name for tables
    task: str | None
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OnnxValue, ...] = ()
    parameters: int | None = None
    size_bytes: int | None = None
    files: tuple[tuple[str, str, int], ...] = ()  # (path relative to the source, sha256, bytes)
    digest: str | None = None  # sha256 over the files (one file: its own sha256)
    hub_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # What a container mounts (host path, path under MODEL_MOUNT) and where in it the model is.
    mount_plan: tuple[tuple[str, str], ...] = ()
    entry: str = ""

    # --- engines ---------------------------------------------------------------------------

    def routes(self) -> dict[str, Route]:
        """Every engine: how it runs this model, or why it cannot."""
        if self.kind == "registry":
            return _registry_routes(self.location)
        native, converted = NATIVE.get(self.kind, ()), CONVERTED.get(self.kind, {})
        found = {}
        for engine in ENGINES:
            if engine in native:
                note = (
                    "or --option model_format=ir: onnx2openvino first"
                    if engine == "openvino" and self.kind == "onnx"
                    else ""
                )
                found[engine] = Route(engine, (), None, note)
            elif engine in converted:
                note = "+ onnx2openvino with --option model_format=ir" if engine == "openvino" else ""
                found[engine] = Route(engine, converted[engine], None, note)
            else:
                found[engine] = Route(engine, reason=f"{engine} needs {ENGINE_NEEDS[engine]}")
        return found

    def engines(self) -> list[str]:
        """The engines that can run it, natively or converted."""
        return [e for e, r in self.routes().items() if r.runnable]

    def route(self, engine: str) -> Route:
        """How ``engine`` runs this model; SourceError with the reason when it cannot."""
        if engine not in ENGINES:
            raise SourceError(f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}")
        found = self.routes()[engine]
        if found.reason is not None:
            raise SourceError(
                f"{self.label} ({KIND_NAMES[self.kind]}) cannot run on {engine}: {found.reason}; "
                f"it runs on {', '.join(self.engines())}"
            )
        return found

    # --- inputs ----------------------------------------------------------------------------

    def with_shapes(self, given: dict[str, tuple[int, ...]] | None) -> ModelSource:
        """The source with ``--input-shape`` sizes bound; SourceError for a shape that does not fit."""
        if not given:
            return self
        inputs = bind_shapes(self.label, self.inputs, given)
        limit = self.details.get("max_positions")
        for spec in inputs:
            if limit and spec.dims[1:] == ("sequence",) and spec.shape and spec.shape[0] > limit:
                raise SourceError(
                    f"--input-shape {spec.name}={spec.shape[0]} is longer than {self.label}'s {limit} positions"
                )
        return replace(self, inputs=inputs)

    def check_run(self, batch_size: int | None = None) -> None:
        """SourceError unless every input has a concrete shape and the batch fits the model."""
        for spec in self.inputs:
            if spec.dtype in ("string", "non-tensor", "", "undefined"):
                what = "a string tensor" if spec.dtype == "string" else "not a numeric tensor"
                raise SourceError(f"input {spec.name} of {self.label} is {what}: joulebench feeds numeric tensors only")
            if spec.shape is None:
                raise SourceError(_missing_shape(self.label, spec))
            batch = spec.dims[0] if spec.dims else None
            if isinstance(batch, int) and batch_size is not None and batch != batch_size:
                raise SourceError(
                    f"{self.label} fixes the batch of input {spec.name} at {batch}: run it with --batch-size {batch}"
                )

    def harness_fields(self, path: str, batch_size: int | None = None) -> dict[str, Any]:
        """What RunSpec.model_source / ConvertSpec.model_source carry; ``path`` as the harness sees it.

        SourceError when an input lacks a concrete shape, or ``batch_size`` (a run's) does not fit.
        """
        self.check_run(batch_size)
        return {
            "kind": self.kind,
            "path": path,
            "label": self.label,
            "task": self.task,
            "digest": self.digest,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [o.name for o in self.outputs],
            **{k: self.details[k] for k in ("auto_class", "signature") if k in self.details},
        }

    # --- files and identity ----------------------------------------------------------------

    def mounts(self) -> list[tuple[str, str]]:
        """(host path, path under MODEL_MOUNT) of every file or folder a container needs, read-only."""
        return list(self.mount_plan)

    def identity(self) -> dict[str, Any]:
        """What a record names the model by: two runs of one path with other contents never match."""
        return {
            "kind": self.kind,
            "location": self.hub_id and f"hf:{self.hub_id}" or self.location,
            "label": self.label,
            "sha256": self.digest,
            "files": [{"path": p, "sha256": s, "bytes": b} for p, s, b in self.files],
            "task": self.task,
            "parameters": self.parameters,
            "size_bytes": self.size_bytes,
            "inputs": [s.to_dict() for s in self.inputs],
        }

    def dataset_refusal(self, dataset: str) -> str | None:
        """Why ``dataset`` cannot feed this model (its inputs do not fit), or None."""
        return dataset_refusal(self.label, self.task, [s.to_dict() for s in self.inputs], dataset)

    def conversion_key(self) -> dict[str, Any]:
        """The source's part of a conversion's cache key: contents and the inputs it is traced with."""
        return {
            "kind": self.kind,
            "sha256": self.digest,
            "task": self.task,
            "inputs": [{"name": s.name, "dtype": s.dtype, "dims": list(s.dims), "shape": s.shape} for s in self.inputs],
        }


# --- datasets -------------------------------------------------------------------------------------


def dataset_refusal(label: str, task: str | None, inputs: list[dict[str, Any]], dataset: str) -> str | None:
    """Why ``dataset`` cannot feed a source with these inputs (InputSpec.to_dict()s), or None when it fits.

    Images (digits 1x8x8, imagenet-val 3xHxW, or HxWx3) go to one float input; texts (imdb) to token
    ids of one axis, with masks and type ids beside them.
    """
    from suite.datasets import DatasetError, get_dataset

    if dataset == "synthetic":
        return None
    try:
        info = get_dataset(dataset)
    except DatasetError as exc:
        return str(exc)
    if task and info.task != task:
        return f"dataset {dataset} serves {info.task} models; {label} is a {task} model"
    shown = ", ".join(f"{s['name']} {'x'.join(map(str, s['shape'] or ['?']))}" for s in inputs)
    if dataset == "imdb":
        ids = [s for s in inputs if s["name"] == "input_ids" and s["fill"] == "ids" and len(s["shape"] or []) == 1]
        others_fit = all(s["fill"] in ("ones", "zeros") for s in inputs if s["name"] != "input_ids")
        return None if ids and others_fit else f"dataset imdb gives texts; {label} takes {shown}"
    shape = tuple(inputs[0]["shape"] or ()) if len(inputs) == 1 else ()
    if len(shape) != 3 or inputs[0]["fill"] != "normal":
        return f"dataset {dataset} gives images; {label} takes {shown}"
    channels = shape[2] if shape[-1] in (1, 3) and shape[0] not in (1, 3) else shape[0]
    if dataset == "digits" and sorted(shape) != [1, 8, 8]:
        return f"dataset digits gives 1x8x8 images; {label} takes {shown}"
    if dataset == "imagenet-val" and channels != 3:
        return f"dataset imagenet-val gives RGB images; {label} takes {shown}"
    return None


# --- shapes ---------------------------------------------------------------------------------------


MAX_DIM = 2**20  # one axis of one sample; a larger one is a typo, not an input


def parse_input_shapes(pairs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``--input-shape NAME=DIMS`` values (DIMS like 3x224x224, without the batch axis)."""
    found: dict[str, tuple[int, ...]] = {}
    for pair in pairs or []:
        name, sep, dims = pair.partition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(not 1 <= d <= MAX_DIM for d in shape):
            raise SourceError(
                f"--input-shape takes NAME=DIMS with sizes from 1 to {MAX_DIM} after the batch axis, e.g. "
                f"pixel_values=3x224x224 or input_ids=128; got {pair!r}"
            )
        if name in found:
            raise SourceError(f"--input-shape names {name} twice")
        found[name] = shape
    return found


def _template(spec: InputSpec) -> str:
    return "x".join(str(d) if isinstance(d, int) else f"<{d.lstrip('?') or 'N'}>" for d in spec.dims[1:]) or "N"


def _missing_shape(label: str, spec: InputSpec) -> str:
    if spec.dims and spec.dims[0] == "?unranked":
        return (
            f"{label} does not declare the shape of input {spec.name}: give it with --input-shape "
            f"{spec.name}=DIMS (the sizes after the batch axis, e.g. {spec.name}=3x224x224)"
        )
    axis = next(i for i, d in enumerate(spec.dims) if i > 0 and not isinstance(d, int))
    symbol = str(spec.dims[axis])
    named = f" ({symbol})" if not symbol.startswith("?") else ""
    return (
        f"input {spec.name} of {label} has a dynamic axis {axis}{named} besides the batch: give its size with "
        f"--input-shape {spec.name}={_template(spec)} (every size after the batch axis)"
    )


def _symbol_key(spec: InputSpec, axis: int) -> str:
    symbol = spec.dims[axis]
    assert isinstance(symbol, str)
    # Unnamed dynamic axes are each their own; named ones (sequence_length) are shared across inputs.
    return f"{spec.name}#{axis}" if symbol.startswith("?") else symbol


def bind_shapes(label: str, inputs: tuple[InputSpec, ...], given: dict[str, tuple[int, ...]]) -> tuple[InputSpec, ...]:
    """Inputs with the given sample shapes applied, and the dynamic axes they name bound everywhere."""
    names = [s.name for s in inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise SourceError(
            f"--input-shape names {', '.join(unknown)}, not an input of {label}; its inputs: {', '.join(names)}"
        )
    sizes: dict[str, int] = {}
    specs = list(inputs)
    for i, spec in enumerate(specs):
        if spec.name not in given:
            continue
        shape = given[spec.name]
        if spec.dims and spec.dims[0] == "?unranked":
            specs[i] = spec = replace(spec, dims=("batch", *(f"?{j + 1}" for j in range(len(shape)))))
        _check_fits(label, spec, shape)
        for axis, (dim, size) in enumerate(zip(spec.dims[1:], shape, strict=True), start=1):
            if isinstance(dim, str):
                key = _symbol_key(spec, axis)
                if sizes.get(key, size) != size:
                    raise SourceError(f"--input-shape gives axis {dim} of {label} two sizes: {sizes[key]} and {size}")
                sizes[key] = size
        specs[i] = replace(spec, shape=shape, shape_from="--input-shape")
    for i, spec in enumerate(specs):
        if spec.name in given or not spec.dims or spec.dims[0] == "?unranked":
            continue
        resolved = [d if isinstance(d, int) else sizes.get(_symbol_key(spec, a)) for a, d in enumerate(spec.dims) if a]
        if all(r is not None for r in resolved) and (spec.shape is None or spec.shape_from in ("default", "config")):
            specs[i] = replace(spec, shape=tuple(int(r) for r in resolved if r is not None), shape_from="--input-shape")
    return tuple(specs)


def _check_fits(label: str, spec: InputSpec, shape: tuple[int, ...]) -> None:
    want = len(spec.dims) - 1
    if len(shape) != want:
        raise SourceError(
            f"--input-shape {spec.name}={'x'.join(map(str, shape))} has {len(shape)} sizes; input {spec.name} of "
            f"{label} takes {want} after the batch axis: {_template(spec)}"
        )
    for axis, (dim, size) in enumerate(zip(spec.dims[1:], shape, strict=True), start=1):
        if isinstance(dim, int) and dim != size:
            raise SourceError(
                f"--input-shape {spec.name}={'x'.join(map(str, shape))} does not fit {label}: axis {axis} of "
                f"{spec.name} is fixed at {dim} (its sizes after the batch axis: {_template(spec)})"
            )


def fill_for(name: str, dtype: str, vocab: int | None) -> tuple[str, int | None]:
    """How synthetic values for an input are drawn: floats normal, token ids below the vocabulary."""
    lowered = name.lower()
    if dtype == "bool" or (dtype.startswith(("int", "uint")) and "mask" in lowered):
        return "ones", None
    if not dtype.startswith(("int", "uint")):
        return "normal", None
    if "type_ids" in lowered or "segment" in lowered:
        return "zeros", None
    if "position" in lowered:
        return "positions", None
    if vocab:
        return "ids", vocab
    return "zeros", None  # an index of unknown range: zero is valid for every table


def input_spec(value: OnnxValue, vocab: int | None = None) -> InputSpec:
    dims = tuple(value.dims)
    fill, bound = fill_for(value.name, value.dtype, vocab)
    if not dims or dims[0] == "?unranked":
        return InputSpec(value.name, value.dtype, dims, None, fill, bound)
    first = dims[0]
    if isinstance(first, str) and first.startswith("?"):
        dims = ("batch", *dims[1:])  # an unnamed first axis is the batch; a fixed one is checked against --batch-size
    shape = tuple(int(d) for d in dims[1:]) if all(isinstance(d, int) for d in dims[1:]) else None
    return InputSpec(value.name, value.dtype, dims, shape, fill, bound)


def _registry_routes(name: str) -> dict[str, Route]:
    from suite.models import get_model

    sources = get_model(name).sources
    native = {"torch": "torch", "torch-compile": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet"}
    found = {}
    for engine in ENGINES:
        if engine in native:
            ok = native[engine] in sources
            reason = None if ok else f"{name} has no {native[engine]} definition (it has: {', '.join(sources)})"
            found[engine] = Route(engine, (), reason)
        elif engine == "torchscript":
            found[engine] = Route(engine, ("torch2torchscript",), None if "torch" in sources else "no torch definition")
        else:
            others = [TO_ONNX[s] for s in sources[1:]]
            note = f"--source picks {', '.join(others)}" if others else ""
            found[engine] = Route(engine, (TO_ONNX[sources[0]],), None, note)
    return found
