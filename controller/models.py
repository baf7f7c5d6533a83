"""``models list`` and ``models inspect``: what a model is, and which images can run it and why not.

Reads models with suite/sources.py (no ML framework) and images with their manifests: an image can
run a model when one of its engines can, natively or through conversions done in the image that
``converts`` them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from controller.artifacts import Artifact
from controller.cache import ArtifactCache
from controller.errors import UserError
from controller.images import Manifest, load_manifests
from controller.runners.base import Runner
from suite.models import MODELS
from suite.sources import ModelSource, Route, SourceError, parse_input_shapes, resolve_source


def conversion_images(manifests: dict[str, Manifest]) -> dict[str, str]:
    """conversion -> the image that runs it (a CPU image where one converts it)."""
    found: dict[str, str] = {}
    for manifest in sorted(manifests.values(), key=lambda m: (m.gpu, m.name)):
        for conversion in manifest.converts:
            found.setdefault(conversion, manifest.name)
    return found


def conversion_steps(source: ModelSource, engine: str, image: str, options: dict[str, Any]) -> list[tuple[str, str]]:
    """(conversion, image that runs it) in order for ``engine`` to run ``source``; [] natively.

    SourceError (exit 2) when the engine cannot run it. ``--option model_format=ir`` on openvino adds
    onnx2openvino in the run's image, after whatever made the ONNX file; ``--option quantization=int8``
    on onnxruntime adds onnx2int8 the same way.
    """
    route = source.route(engine)
    where = conversion_images(load_manifests())
    steps = [(conversion, where[conversion]) for conversion in route.conversions]
    wants_ir = engine == "openvino" and str(options.get("model_format", "onnx")).lower() == "ir"
    if wants_ir and source.kind != "openvino-ir":  # an IR is run as it is
        steps.append(("onnx2openvino", image))
    if engine == "onnxruntime" and str(options.get("quantization", "none")).lower() == "int8":
        steps.append(("onnx2int8", where["onnx2int8"]))
    return steps


def plan_source(
    text: str, input_shapes: list[str], engine: str, image: str, options: dict[str, Any], batch_size: int, dataset: str
) -> tuple[ModelSource, list[tuple[str, str]]]:
    """A user's own model for a run: (source, conversion steps), or UserError saying what does not fit
    (an engine that cannot run it, an input without a concrete shape, a dataset it cannot read)."""
    try:
        source = resolve_source(text, parse_input_shapes(input_shapes))
        steps = conversion_steps(source, engine, image, options)
        source.check_run(batch_size)
    except SourceError as exc:
        raise UserError(str(exc)) from None
    refusal = source.dataset_refusal(dataset)
    if refusal:
        raise UserError(refusal)
    return source, steps


def source_artifact(
    runner: Runner,
    cache: ArtifactCache,
    source: ModelSource,
    steps: list[tuple[str, str]],
    seed: int,
    timeout_s: float,
    note: Callable[[str], None] = print,
) -> Artifact | None:
    """Run ``steps`` (conversion_steps) into the artifact cache, each from the one before; the last
    artifact, or None when the engine loads the source itself. ConversionFailed as for registry models."""
    from controller.artifacts import Conversion, ensure_artifact

    artifact = None
    for conversion, image in steps:
        conv = Conversion(conversion, image, source.label, "full", "random", None, seed, artifact, source)
        artifact = ensure_artifact(runner, cache, conv, timeout_s, note)
    return artifact


def image_verdicts(source: ModelSource, manifests: dict[str, Manifest]) -> dict[str, dict[str, Any]]:
    """Per image: whether it can run the model, and per engine how (conversions and where) or why not."""
    routes = source.routes()
    where = conversion_images(manifests)
    verdicts = {}
    for name, manifest in sorted(manifests.items()):
        engines = {engine: _describe(routes.get(engine), where) for engine in manifest.engines}
        runnable = any(routes.get(e) is not None and routes[e].runnable for e in manifest.engines)
        needs = []
        if manifest.gpu:
            needs.append("an NVIDIA GPU")
        if manifest.unsupported:
            needs.append(manifest.unsupported)
        verdicts[name] = {"runnable": runnable, "provider": manifest.provider, "needs": needs, "engines": engines}
    return verdicts


def _describe(route: Route | None, where: dict[str, str]) -> str:
    if route is None:
        return "no: engine unknown to joulebench's model sources"
    if route.reason is None and route.conversions:
        steps = " -> ".join(f"{c} (in {where.get(c, '?')})" for c in route.conversions)
        return f"via {steps}" + (f"; {route.note}" if route.note else "")
    return route.describe()


def _dims(dims: tuple[int | str, ...] | list[Any]) -> str:
    return " x ".join(str(d).lstrip("?") or "?" for d in dims) or "scalar"


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _input_line(spec: Any) -> str:
    if spec.shape is not None:
        shape = f"-> {'x'.join(map(str, spec.shape)) or 'scalar'} ({spec.shape_from})"
    else:
        shape = "-> needs --input-shape"
    values = {"ids": f"ids below {spec.vocab_size}", "ones": "ones", "zeros": "zeros", "positions": "0..n-1"}
    return f"  {spec.name:<20} {spec.dtype:<8} {_dims(spec.dims):<28} {shape}  {values.get(spec.fill, 'normal(0, 1)')}"


def render_inspect(source: ModelSource, verdicts: dict[str, dict[str, Any]], missing: str | None) -> str:
    ident = source.identity()
    lines = [
        f"model       {source.label} ({source.kind})  {ident['location']}",
        f"task        {source.task or 'not stated by the model'}",
    ]
    if source.digest:
        count = f"{len(source.files)} file{'s' if len(source.files) != 1 else ''}"
        lines.append(f"sha256      {source.digest}  ({count}, {_size(source.size_bytes)})")
    lines.append(f"parameters  {source.parameters:,}" if source.parameters is not None else "parameters  unknown")
    for key, value in source.details.items():
        lines.append(f"{key:<11} {value}")
    lines.append(f"engines     {', '.join(source.engines()) or 'none'}")
    lines.append("inputs (the batch axis first)")
    lines += [_input_line(spec) for spec in source.inputs]
    if source.outputs:
        lines.append("outputs")
        lines += [f"  {o.name:<20} {o.dtype or '?':<8} {_dims(o.dims)}" for o in source.outputs]
    lines.append("images")
    for name, verdict in verdicts.items():
        mark = "yes" if verdict["runnable"] else "no "
        needs = f"  [needs {'; '.join(verdict['needs'])}]" if verdict["needs"] and verdict["runnable"] else ""
        engines = "; ".join(f"{e}: {how}" for e, how in verdict["engines"].items())
        lines.append(f"  {mark} {name:<14} {engines}{needs}")
    if missing:
        lines.append(f"to run it   {missing}")
    return "\n".join(lines)


def inspect(text: str, shapes: list[str] | None = None) -> dict[str, Any]:
    """Everything ``models inspect`` shows, as data; UserError (exit 2) for a model that cannot be read."""
    try:
        source = resolve_source(text, parse_input_shapes(shapes))
    except SourceError as exc:
        raise UserError(str(exc)) from None
    try:
        source.check_run()
        missing = None
    except SourceError as exc:
        missing = str(exc)
    verdicts = image_verdicts(source, load_manifests())
    return {"source": source, "verdicts": verdicts, "missing": missing}


def list_models() -> list[dict[str, Any]]:
    manifests = load_manifests()
    rows = []
    for name in sorted(MODELS):
        source = resolve_source(name)
        verdicts = image_verdicts(source, manifests)
        rows.append(
            {
                "model": name,
                "task": source.task,
                "inputs": [s.to_dict() for s in source.inputs],
                "engines": {e: r.describe() for e, r in source.routes().items()},
                "images": [image for image, v in verdicts.items() if v["runnable"]],
            }
        )
    return rows


def main(command: str, model: str | None, shapes: list[str], as_json: bool) -> int:
    if command == "list":
        rows = list_models()
        if as_json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            shapes_text = ", ".join(f"{i['name']} {'x'.join(map(str, i['shape']))}" for i in row["inputs"])
            print(f"{row['model']:<12} {row['task']:<20} {shapes_text}")
            print(f"{'':<12} images: {', '.join(row['images'])}")
        print("any other model: python -m controller models inspect PATH|hf:ORG/NAME")
        return 0
    assert model is not None
    found = inspect(model, shapes)
    source = found["source"]
    if as_json:
        payload = {
            **source.identity(),
            "details": source.details,
            "outputs": [{"name": o.name, "dtype": o.dtype, "dims": o.dims} for o in source.outputs],
            "routes": {
                e: {"runnable": r.runnable, "conversions": list(r.conversions), "reason": r.reason}
                for e, r in source.routes().items()
            },
            "images": found["verdicts"],
            "missing_shapes": found["missing"],
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(render_inspect(source, found["verdicts"], found["missing"]))
    return 0
