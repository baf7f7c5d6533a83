"""Resolving a model's name into its source: a registered name, ``hf:ORG/NAME`` (a hub snapshot),
or a file or folder path. What a source is lives in ``suite/source_spec.py`` (re-exported here);
the readers of files and folders in ``suite/source_files.py``, of the hub in ``suite/hub.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from suite.source_spec import (
    AUDIO_SAMPLES_DEFAULT,
    ENGINES,
    MODEL_MOUNT,
    ONNX_ENGINES,
    TEXT_SEQUENCE_DEFAULT,
    InputSpec,
    ModelSource,
    Route,
    SourceError,
    dataset_refusal,
    fill_for,
    input_spec,
    parse_input_shapes,
)

__all__ = [
    "AUDIO_SAMPLES_DEFAULT",
    "ENGINES",
    "MODEL_MOUNT",
    "ONNX_ENGINES",
    "TEXT_SEQUENCE_DEFAULT",
    "InputSpec",
    "ModelSource",
    "Route",
    "SourceError",
    "check_model_name",
    "dataset_refusal",
    "fill_for",
    "input_spec",
    "parse_input_shapes",
    "resolve_source",
]


# --- resolving ----------------------------------------------------------------------------------


def resolve_source(text: str, input_shapes: dict[str, tuple[int, ...]] | None = None) -> ModelSource:
    """The model ``text`` names: a registered name, ``hf:ORG/NAME``, or a file or folder path."""
    from suite.models import MODELS

    if text in MODELS and not _looks_like_path(text):
        source = _registry(text)
    elif text.startswith("hf:"):
        from suite.hub import hub_snapshot
        from suite.source_files import hf_folder

        hub_id, folder = hub_snapshot(text[3:])
        source = hf_folder(folder, hub_id=hub_id)
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise SourceError(
                f"unknown model {text!r}: neither a registered model ({', '.join(sorted(MODELS))}) nor an existing "
                "file or folder (a hub model is named hf:ORG/NAME)"
            )
        from suite.source_files import from_path

        source = from_path(path.resolve())
    return source.with_shapes(input_shapes)


def check_model_name(text: str) -> None:
    """SourceError when ``text`` names no model at all: not registered, no such file or folder, or a
    malformed hub id. Cheap (no download, no file read): said before any other complaint about a run."""
    from suite.models import MODELS

    if text in MODELS and not _looks_like_path(text):
        return
    if text.startswith("hf:"):
        from suite.hub import HUB_ID

        if not HUB_ID.match(text[3:].partition("@")[0]):
            raise SourceError(
                f"{text} is not a hub id; name a hub model hf:ORG/NAME (e.g. hf:google/vit-base-patch16-224)"
            )
        return
    if not Path(text).expanduser().exists():
        raise SourceError(
            f"unknown model {text!r}: neither a registered model ({', '.join(sorted(MODELS))}) nor an existing "
            "file or folder (a hub model is named hf:ORG/NAME)"
        )


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or os.sep in text


def _registry(name: str) -> ModelSource:
    from suite.models import get_model

    info = get_model(name)
    size = info.size("full")
    inputs: tuple[InputSpec, ...]
    if size.input_names:
        inputs = tuple(
            InputSpec(n, "int64", ("batch", "sequence"), size.input_shape, *fill_for(n, "int64", size.vocab_size))
            for n in size.input_names
        )
    else:
        inputs = (InputSpec("input", "float32", ("batch", *size.input_shape), size.input_shape),)
    return ModelSource("registry", name, name, info.task, inputs, details={"description": info.description})
