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


# Sizes a config gives as whole numbers: transformers refuses another type when it loads the folder,
# after an export or a run has started; refused here first.
WHOLE_KEYS = (
    "vocab_size",
    "num_channels",
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
)


def check_config(config: Any) -> None:
    """SourceError (saying what is wrong, not where) unless ``config`` is a config transformers loads:
    an object with a model_type name, architectures a list of class names, sizes whole numbers."""
    if not isinstance(config, dict):
        raise SourceError(f"its config.json is a JSON {type(config).__name__}, not an object")
    if not config.get("model_type"):
        raise SourceError("its config.json has no model_type: transformers' Auto classes cannot load it")
    if not isinstance(config["model_type"], str):
        raise SourceError(f"its config.json's model_type is {config['model_type']!r}, not a name such as \"bert\"")
    architectures = config.get("architectures")
    if architectures is not None and not (
        isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)
    ):
        raise SourceError(
            f"its config.json's architectures is {architectures!r}, not a list of class names such as "
            '["BertForSequenceClassification"]'
        )
    for key in WHOLE_KEYS:
        if config.get(key) is not None and _whole(config[key]) is None:
            raise SourceError(f"its config.json's {key} is {config[key]!r}, not a whole number above 0")
    type_vocab = config.get("type_vocab_size")
    if type_vocab is not None and _whole(type_vocab, lowest=0) is None:
        raise SourceError(f"its config.json's type_vocab_size is {type_vocab!r}, not a whole number")


def _head(config: dict[str, Any]) -> tuple[str, str, str]:
    """(architecture, task, AutoModel class) that loads this config; SourceError when none does."""
    if config.get("auto_map"):
        raise SourceError(
            "it needs its own Python code (auto_map, trust_remote_code): joulebench runs no downloaded code"
        )
    architecture = (config.get("architectures") or [f"{config['model_type']}Model"])[0]
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
    if size is not None:
        if _whole(size) is not None:
            return size, size
        if isinstance(size, list) and len(size) == 2 and all(_whole(v) is not None for v in size):
            return size[0], size[1]
        raise SourceError(f"its config.json's image_size is {size!r}, not a size in pixels (224 or [224, 224])")
    try:
        found = _processor_size(folder)
    except (TypeError, ValueError, AttributeError):
        found = None
    # A preprocessor config of another shape: the size is then asked for (--input-shape).
    return found if found is not None and all(_whole(v) is not None for v in found) else None


def _whole(value: Any, lowest: int = 1) -> int | None:
    """``value`` when it is a whole number (not a bool) of at least ``lowest``, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= lowest:
        return value
    return None


def _processor_size(folder: Path) -> tuple[int, int] | None:
    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        try:
            pre = json.loads(processor.read_text())
        except (OSError, ValueError):
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


def _vocab_size(config: dict[str, Any]) -> int:
    """The config's vocab_size; without one, the default transformers gives its model_type (as it would
    when it loads the folder)."""
    if "vocab_size" in config:
        vocab = _whole(config["vocab_size"])
        if vocab is None:
            raise SourceError(f"its config.json's vocab_size is {config['vocab_size']!r}, not a number of tokens")
        return vocab
    model_type = config["model_type"]
    try:
        from transformers import CONFIG_MAPPING  # only here: reading a config needs no transformers otherwise
    except ImportError:
        raise SourceError(
            f"its config.json has no vocab_size, and transformers (not installed here) is needed for "
            f"{model_type}'s default: add \"vocab_size\": N to config.json, or pip install transformers"
        ) from None
    try:
        vocab = _whole(getattr(CONFIG_MAPPING[model_type](), "vocab_size", None))
    except (KeyError, TypeError, ValueError):
        vocab = None
    if vocab is None:
        raise SourceError(
            f"its config.json has no vocab_size and transformers has no default for model_type {model_type!r}: "
            'add "vocab_size": N to config.json'
        )
    return vocab


def _text_inputs(config: dict[str, Any]) -> tuple[InputSpec, ...]:
    vocab = _vocab_size(config)
    positions = _positions(config)
    length = min(TEXT_SEQUENCE_DEFAULT, positions) if positions is not None else TEXT_SEQUENCE_DEFAULT
    dims = ("batch", "sequence")
    specs = [
        InputSpec("input_ids", "int64", dims, (length,), "ids", vocab, "default"),
        InputSpec("attention_mask", "int64", dims, (length,), "ones", None, "default"),
    ]
    type_vocab = config.get("type_vocab_size") or 0
    if _whole(type_vocab, lowest=0) is None:
        raise SourceError(f"its config.json's type_vocab_size is {type_vocab!r}, not a whole number")
    if type_vocab > 1:
        specs.append(InputSpec("token_type_ids", "int64", dims, (length,), "zeros", None, "default"))
    return tuple(specs)


def _positions(config: dict[str, Any]) -> int | None:
    """The longest sequence the model takes, when its config says."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        if config.get(key) is not None:
            positions = _whole(config[key])
            if positions is None:
                raise SourceError(f"its config.json's {key} is {config[key]!r}, not a number of positions")
            return positions
    return None


def read_hf_config(folder: Path, config: Any) -> tuple[str, str, tuple[InputSpec, ...], dict[str, Any]]:
    """(task, AutoModel class, inputs, details) of a save_pretrained folder; SourceError explains a refusal,
    naming the folder."""
    try:
        check_config(config)
        return _read(folder, config)
    except SourceError as exc:
        raise SourceError(f"transformers cannot load {folder} for joulebench: {exc}") from None


def _read(folder: Path, config: dict[str, Any]) -> tuple[str, str, tuple[InputSpec, ...], dict[str, Any]]:
    architecture, task, auto = _head(config)
    modality = _modality(task, config)
    details: dict[str, Any] = {"architecture": architecture, "model_type": config["model_type"], "modality": modality}
    if modality == "image":
        channels = _whole(config.get("num_channels") or 3)
        if channels is None:
            raise SourceError(f"its config.json's num_channels is {config['num_channels']!r}, not a channel count")
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
    positions = _positions(config)
    if positions is not None:
        details["max_positions"] = positions
    return task, auto, _text_inputs(config), details
