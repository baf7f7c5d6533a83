"""Exports of a causal LM for the serving engines that do not load transformers' folders, cached.

Most are made from the model folder in the source image (torch-cpu: ONNX, TorchScript, GGUF f32/f16,
ONNX Runtime GenAI's builder); a quantised GGUF is made from the f32 GGUF export by llama.cpp in its
own image (an export of an export: its key holds its source's).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.cache import ArtifactCache, Entry, key_of
from controller.progress import relay_progress
from controller.runners.base import Invocation, Mount, Runner, execute
from controller.serving.settings import (
    EXPORT_CODE_VERSION,
    MODEL_MOUNT,
    PARITY_NEW_TOKENS,
    ServingFailed,
    export_image,
    export_source,
)
from harness.protocol import (
    LM_EXPORT_FIELDS,
    LmExportSpec,
    ProtocolError,
    parse_stream,
)
from suite.slm_models import ResolvedModel


def model_identity(model: ResolvedModel) -> str:
    """Content of a model folder's small files, names and sizes of its weights; or the hub id."""
    if model.source == "hub":
        return f"hub:{model.location}"
    digest = hashlib.sha256()
    root = Path(model.location)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        size = path.stat().st_size
        digest.update(str(size).encode())
        if size < 64 << 20:
            digest.update(path.read_bytes())
        else:  # weights of a real model: hash the first and last MiB (hashing GBs on every run is slow)
            with open(path, "rb") as fh:
                digest.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()


def ensure_export(
    runner: Runner,
    cache: ArtifactCache,
    fmt: str,
    model: ResolvedModel,
    parity_prompts: list[str],
    timeout_s: float,
    note: Callable[[str], None],
    detail: Callable[[str], None] | None = None,
) -> Entry:
    """The cached export (folder and meta), exporting (with a greedy-token parity check) when missing.

    An export made from another export (a quantised GGUF from the f32 one) makes or finds that one first.
    ``detail`` shows where the export stands, as the harness reports it.
    """
    source_fmt = export_source(fmt)
    source = None
    if source_fmt is not None:
        source = ensure_export(runner, cache, source_fmt, model, parity_prompts, timeout_s, note, detail)
    image = export_image(fmt)
    inputs = {
        "format": fmt,
        "model": model_identity(model),
        "exporter_environment": runner.environment_id(image),
        "export_code": EXPORT_CODE_VERSION,
        "parity_prompts": parity_prompts,
        **({"source_export": source.key} if source is not None else {}),
    }
    key = key_of(inputs)
    found = cache.lookup(key)
    if found is not None:
        return found
    staging = cache.stage(key)
    try:
        meta = _export(runner, staging, fmt, image, model, source, parity_prompts, timeout_s, note, detail)
        entry = cache.commit(staging, key, {**meta, "key_inputs": inputs})
    finally:
        cache.discard(staging)
    note(f"exported: {entry.folder}")
    return entry


def _export(
    runner: Runner,
    staging: Path,
    fmt: str,
    image: str,
    model: ResolvedModel,
    source: Entry | None,
    parity_prompts: list[str],
    timeout_s: float,
    note: Callable[[str], None],
    detail: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    out_mount = Mount(str(staging), "/out", read_only=False)
    mounts = [out_mount]
    model_path = model.location
    if source is not None:
        sm = Mount(str(source.folder), f"{MODEL_MOUNT}/{source.folder.name}")
        mounts.append(sm)
        model_path = runner.path_for(sm)
    elif model.source == "folder":
        mm = Mount(model.location, f"{MODEL_MOUNT}/{Path(model.location).name}")
        mounts.append(mm)
        model_path = runner.path_for(mm)
    spec = LmExportSpec(
        format=fmt,
        model_path=model_path,
        out_dir=runner.path_for(out_mount),
        parity_prompts=parity_prompts,
        parity_new_tokens=PARITY_NEW_TOKENS,
    )
    note(f"exporting {model.label} to {fmt} in {image} ({runner.kind}) ...")
    from_hub = model.source == "hub" and source is None
    ex = execute(
        runner,
        Invocation(
            image=image,
            argv=["serve-export", "--spec", spec.to_json()],
            timeout_s=timeout_s,
            mounts=mounts,
            network=from_hub,
            env={} if from_hub else {"HF_HUB_OFFLINE": "1"},
            labels={"joulebench.conversion": f"lm2{fmt}"},
            on_line=relay_progress(detail) if detail is not None else None,
        ),
    )
    try:
        out = parse_stream(ex.stdout, LM_EXPORT_FIELDS)
    except ProtocolError as exc:
        raise ServingFailed("export", f"export to {fmt}: {exc}") from None
    if ex.start_error:
        raise ServingFailed("export", f"export to {fmt} could not start: {ex.start_error}")
    if ex.timed_out:
        raise ServingFailed("export", f"export to {fmt} timed out after {timeout_s:g} s")
    if out.error is not None:
        raise ServingFailed("export", f"export to {fmt}: {out.error['message']}")
    if ex.exit_code != 0 or out.result is None:
        tail = " | ".join(ex.log_tail(5))
        raise ServingFailed("export", f"export to {fmt} exited with code {ex.exit_code}: {tail}")
    meta = out.result
    if not meta["parity"]["ok"]:
        raise ServingFailed(
            "export",
            f"{fmt} export's greedy tokens differ from transformers' on "
            f"{1 - meta['parity']['greedy_token_agreement']:.0%} of {meta['parity']['prompts_checked']} prompts",
        )
    return {**meta, "exported_by": ex.runner}
