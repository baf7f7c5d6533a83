"""``models list`` and ``models inspect``: what a model is, and which images can run it and why not.

Reads models with suite/sources.py (no ML framework) and images with their manifests: an image can
run a model when one of its engines can, natively or through conversions done in the image that
``converts`` them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.artifacts import Artifact
from controller.cache import ArtifactCache
from controller.errors import UserError
from controller.images import Manifest, load_manifests
from controller.runners.base import Runner
from suite.models import MODELS
from suite.source_spec import KIND_NAMES
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
    detail: Callable[[str], None] | None = None,
) -> Artifact | None:
    """Run ``steps`` (conversion_steps) into the artifact cache, each from the one before; the last
    artifact, or None when the engine loads the source itself. ConversionFailed as for registry models."""
    from controller.artifacts import Conversion, ensure_artifact

    artifact = None
    for conversion, image in steps:
        conv = Conversion(conversion, image, source.label, "full", "random", None, seed, artifact, source)
        artifact = ensure_artifact(runner, cache, conv, timeout_s, note, detail)
    return artifact


LM_ONLY = "serves causal language models (transformers folders) only; this is {what}"
FILE_KINDS = {".onnx": "onnx", ".xml": "openvino-ir", ".keras": "keras", ".pt": "torchscript", ".pth": "torchscript"}


def serving_refusal(text: str) -> str | None:
    """Why ``serve`` cannot take the model ``text`` names, in the words of ``models inspect``: a file,
    or a folder of another task; None where it may (a causal LM's folder, a hub id, a paper model).
    Reads config.json only: nothing is hashed."""
    import json

    from suite.hf_config import read_hf_config

    path = Path(text).expanduser()
    if path.is_file():
        kind = FILE_KINDS.get(path.suffix.lower())
        return LM_ONLY.format(what=KIND_NAMES[kind] if kind else f"a file ({path.name})")
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return LM_ONLY.format(what=KIND_NAMES["savedmodel"])
    if not (path / "config.json").is_file():
        return None  # a hub id, a paper model, or no model at all: serve's own resolution says which
    try:
        config = json.loads((path / "config.json").read_text())
        # A config.json that is not a table is left to serve's own resolution, which names it.
        task = read_hf_config(path, config)[0] if isinstance(config, dict) and config.get("architectures") else None
    except (OSError, ValueError, SourceError):
        return None  # transformers' own error at load says more
    if task is None:
        return None  # no architecture named: what it is shows when transformers loads it
    return None if task == "text-generation" else LM_ONLY.format(what=f"a {task} model")


def is_language_model(source: ModelSource) -> bool:
    """A model ``serve`` can serve: a transformers causal LM (a folder or a hub id)."""
    return source.kind == "hf" and source.task == "text-generation"


def serving_route(source: ModelSource, engine: str) -> Route:
    """How ``serve`` gets the model to a serving engine (the exports it makes, in order), or why it
    cannot: the same rule ``serve`` and serving campaigns apply (harness/serving/formats.py)."""
    from harness.serving.formats import EXPORT_FORMATS, unsupported_architecture
    from suite.slm_models import ResolvedModel, model_tokenizer

    if not is_language_model(source):
        what = f"a {source.task} model" if source.kind == "hf" and source.task else KIND_NAMES[source.kind]
        return Route(engine, reason=LM_ONLY.format(what=what))
    architectures = [str(source.details["architecture"])] if source.details.get("architecture") else []
    tokenizer = model_tokenizer(ResolvedModel(source.label, "folder", source.location, None, None))
    why = unsupported_architecture(engine, architectures, tokenizer)
    if why is not None:
        return Route(engine, reason=why)
    fmt = EXPORT_FORMATS[engine]
    return Route(engine, tuple(f"lm2{f}" for f in _export_chain(fmt)) if fmt else ())


def _export_chain(fmt: str) -> list[str]:
    """The exports that make ``fmt``, first to last (a quantised GGUF: the f32 one, then it)."""
    from controller.serving.settings import export_source

    source = export_source(fmt)
    return [*_export_chain(source), fmt] if source else [fmt]


def image_verdicts(source: ModelSource, manifests: dict[str, Manifest]) -> dict[str, dict[str, Any]]:
    """Per image: whether it can run (batch) or serve the model, and per engine how (conversions and
    where) or why not. A serving engine is shown when the model is a language model, or when the
    engine serves only."""
    from harness.serving.formats import EXPORT_FORMATS

    routes = source.routes()
    where = conversion_images(manifests)
    language_model = is_language_model(source)
    verdicts = {}
    for name, manifest in sorted(manifests.items()):
        engines, runs, serves = {}, False, False
        for engine in manifest.engines:
            parts = []
            if engine in routes:
                parts.append(_describe(routes[engine], where))
                runs = runs or routes[engine].runnable
            if engine in EXPORT_FORMATS and (language_model or engine not in routes):
                served = serving_route(source, engine)
                if parts:
                    parts[0] = f"run {parts[0]}"
                parts.append(("serve " if served.runnable else "") + _describe(served, where))
                serves = serves or served.runnable
            engines[engine] = "; ".join(parts) if parts else "no: not an engine joulebench runs models on"
        needs = []
        if manifest.gpu:
            needs.append("an NVIDIA GPU")
        if manifest.unsupported:
            needs.append(manifest.unsupported)
        verdicts[name] = {
            "runnable": runs or serves,
            "runs": runs,
            "serves": serves,
            "provider": manifest.provider,
            "needs": needs,
            "engines": engines,
        }
    return verdicts


def _describe(route: Route, where: dict[str, str]) -> str:
    from controller.serving.settings import export_image

    if route.reason is None and route.conversions:
        images = [where.get(c) or export_image(c.removeprefix("lm2")) for c in route.conversions]
        steps = " -> ".join(f"{c} (in {image})" for c, image in zip(route.conversions, images, strict=True))
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


def owner_only(source: ModelSource) -> str | None:
    """The model's files a container's unprivileged user could not read (shown by name), when the
    controller runs as root (its containers then run as another user); None when there are none."""
    import os

    from controller.runners.readable import find_hidden

    if os.getuid() != 0 or source.kind == "registry":
        return None
    hidden = [p for host, _ in source.mounts() for p in find_hidden(host).paths]
    if not hidden:
        return None
    names = [Path(p).name for p in hidden[:3]]
    return ", ".join(names) + (f" and {len(hidden) - 3} more" if len(hidden) > 3 else "")


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
    hidden = owner_only(source)
    if hidden:
        lines.append(
            f"files       {hidden} readable by its owner only: a Docker run (its containers do not run as root) "
            "reads a readable copy, staged once in the cache"
        )
    lines.append("inputs (the batch axis first)")
    lines += [_input_line(spec) for spec in source.inputs]
    if source.outputs:
        lines.append("outputs")
        lines += [f"  {o.name:<20} {o.dtype or '?':<8} {_dims(o.dims)}" for o in source.outputs]
    lines.append("images (run: `run` and batch campaigns; serve: `serve` and serving campaigns)")
    width = max((len(name) for name in verdicts), default=0)
    for name, verdict in verdicts.items():
        mark = "yes" if verdict["runnable"] else "no "
        needs = f"  [needs {'; '.join(verdict['needs'])}]" if verdict["needs"] and verdict["runnable"] else ""
        engines = " | ".join(f"{e}: {how}" for e, how in verdict["engines"].items())
        lines.append(f"  {mark} {name:<{width}} {engines}{needs}")
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
            "owner_only_files": owner_only(source),
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(render_inspect(source, found["verdicts"], found["missing"]))
    return 0
