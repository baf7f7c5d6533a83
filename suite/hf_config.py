"""A transformers folder's task and inputs, from its config.json (no transformers import).

The architecture named in ``architectures`` says which ``AutoModelFor...`` class loads the folder
(its head); the config's modality fields say what goes in: pixel values, token ids or audio samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from suite.source_spec import AUDIO_SAMPLES_DEFAULT, TEXT_SEQUENCE_DEFAULT, InputSpec, SourceError

# architecture suffix -> (task, AutoModel class); checked in order, the first match wins
HEADS = (
    ("ForImageClassificationWithTeacher", "image-classification", "AutoModelForImageClassification"),
    ("ForImageClassification", "image-classification", "AutoModelForImageClassification"),
    ("ForSemanticSegmentation", "image-segmentation", "AutoModelForSemanticSegmentation"),
    ("ForDepthEstimation", "depth-estimation", "AutoModelForDepthEstimation"),
    ("ForSequenceClassification", "text-classification", "AutoModelForSequenceClassification"),
    ("ForTokenClassification", "token-classification", "AutoModelForTokenClassification"),
    ("ForQuestionAnswering", "question-answering", "AutoModelForQuestionAnswering"),
    ("ForMaskedLM", "fill-mask", "AutoModelForMaskedLM"),
    ("ForCausalLM", "text-generation", "AutoModelForCausalLM"),
    ("LMHeadModel", "text-generation", "AutoModelForCausalLM"),
    ("ForAudioClassification", "audio-classification", "AutoModelForAudioClassification"),
    ("ForCTC", "automatic-speech-recognition", "AutoModelForCTC"),
    ("Model", "feature-extraction", "AutoModel"),
)
IMAGE_TASKS = ("image-classification", "image-segmentation", "depth-estimation")
AUDIO_TASKS = ("audio-classification", "automatic-speech-recognition")
AUDIO_MODEL_TYPES = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech", "sew", "sew-d")


def _head(config: dict[str, Any]) -> tuple[str, str, str]:
    """(architecture, task, AutoModel class) that loads this config; SourceError when none does."""
    if not config.get("model_type"):
        raise SourceError("its config.json has no model_type: transformers' Auto classes cannot load it")
    if config.get("auto_map"):
        raise SourceError(
            "it needs its own Python code (auto_map, trust_remote_code): joulebench runs no downloaded code"
        )
    architectures = config.get("architectures") or [f"{config['model_type']}Model"]
    architecture = str(architectures[0])
    for suffix, task, auto in HEADS:
        if architecture.endswith(suffix):
            return architecture, task, auto
    tasks = sorted({t for _, t, _ in HEADS})
    raise SourceError(
        f"its architecture {architecture} has a head no AutoModelFor... class joulebench runs loads "
        f"(it runs: {', '.join(tasks)})"
    )


def _modality(task: str, config: dict[str, Any]) -> str:
    if "text_config" in config and "vision_config" in config:
        raise SourceError("it takes text and images together: multimodal models are not supported yet")
    if task in IMAGE_TASKS:
        return "image"
    if task in AUDIO_TASKS or config.get("model_type") in AUDIO_MODEL_TYPES:
        return "audio"
    if task != "feature-extraction" or "vocab_size" in config:
        return "text"
    return "image" if "num_channels" in config or "image_size" in config else "text"


def _image_size(folder: Path, config: dict[str, Any]) -> tuple[int, int] | None:
    size = config.get("image_size")
    if isinstance(size, int):
        return size, size
    if isinstance(size, list) and len(size) == 2:
        return int(size[0]), int(size[1])
    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        try:
            pre = json.loads(processor.read_text())
        except ValueError:
            return None
        for key in ("crop_size", "size"):
            value = pre.get(key)
            if isinstance(value, int):
                return value, value
            if isinstance(value, dict):
                if "height" in value and "width" in value:
                    return int(value["height"]), int(value["width"])
                if "shortest_edge" in value and key == "size" and not pre.get("do_center_crop", True):
                    continue
                if "shortest_edge" in value:
                    return int(value["shortest_edge"]), int(value["shortest_edge"])
    return None


def _text_inputs(config: dict[str, Any]) -> tuple[InputSpec, ...]:
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or vocab < 1:
        raise SourceError("its config.json has no vocab_size: token ids cannot be drawn")
    positions = config.get("max_position_embeddings") or config.get("n_positions") or config.get("max_seq_len")
    length = min(TEXT_SEQUENCE_DEFAULT, int(positions)) if isinstance(positions, int) else TEXT_SEQUENCE_DEFAULT
    dims = ("batch", "sequence")
    specs = [
        InputSpec("input_ids", "int64", dims, (length,), "ids", vocab, "default"),
        InputSpec("attention_mask", "int64", dims, (length,), "ones", None, "default"),
    ]
    if int(config.get("type_vocab_size") or 0) > 1:
        specs.append(InputSpec("token_type_ids", "int64", dims, (length,), "zeros", None, "default"))
    return tuple(specs)


def read_hf_config(folder: Path, config: dict[str, Any]) -> tuple[str, str, tuple[InputSpec, ...], dict[str, Any]]:
    """(task, AutoModel class, inputs, details) of a save_pretrained folder; SourceError explains a refusal."""
    try:
        architecture, task, auto = _head(config)
        modality = _modality(task, config)
    except SourceError as exc:
        raise SourceError(f"transformers cannot load {folder} for joulebench: {exc}") from None
    details: dict[str, Any] = {"architecture": architecture, "model_type": config["model_type"], "modality": modality}
    if modality == "image":
        channels = int(config.get("num_channels") or 3)
        size = _image_size(folder, config)
        # Height and width stay dynamic (convolutional models take any size): the config's is the default.
        shape = (channels, *size) if size else None
        spec = InputSpec(
            "pixel_values", "float32", ("batch", channels, "height", "width"), shape, "normal", None, "config"
        )
        return task, auto, (spec,), details
    if modality == "audio":
        spec = InputSpec(
            "input_values", "float32", ("batch", "samples"), (AUDIO_SAMPLES_DEFAULT,), "normal", None, "default"
        )
        return task, auto, (spec,), details
    positions = config.get("max_position_embeddings") or config.get("n_positions")
    if isinstance(positions, int):
        details["max_positions"] = positions
    return task, auto, _text_inputs(config), details
