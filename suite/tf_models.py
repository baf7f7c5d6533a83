"""TensorFlow/Keras definitions of the registered models (imported only inside a TF environment).

The official definitions are keras.applications'. Full size is ``ResNet50`` / ``MobileNetV2`` as
published (224x224x3, 1000 classes). Tiny keeps the families with small inputs (64x64x3, 10
classes): MobileNetV2 with width multiplier alpha=0.35 (the smallest width Keras publishes), and
keras.applications' own ResNet builder with one bottleneck block per stage (as the torch tiny
ResNet), instead of 3-4-6-3.

Keras takes NHWC ("channels_last") images; the harness hands out NCHW batches, which the
tensorflow engine and the tf2onnx conversion transpose outside any timed window.

bert-imdb is KerasHub's BERT: ``keras_hub.models.BertBackbone`` under a ``BertTextClassifier`` (full:
bert_base_en_uncased's shape, ``pretrained`` its preset; tiny: 2 layers, hidden 32, as the torch tiny
BERT). Its inputs are named ``token_ids``, ``segment_ids`` and ``padding_mask``; the harness's token
batches (``input_ids``, ``attention_mask``: transformers' names) map onto them, with segment ids all 0
(one sentence per review), in :func:`model_inputs`.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import numpy as np

from suite.models import get_model


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be fetched or a weights file could not be loaded."""


# KerasHub's preset of BERT-base-uncased (the same uncased WordPiece vocabulary as bert-base-uncased).
BERT_PRESET = "bert_base_en_uncased"
# harness input name -> KerasHub BertBackbone input name; segment_ids are zeros.
BERT_INPUTS = {"input_ids": "token_ids", "attention_mask": "padding_mask"}


def definition_source(name: str | None = None) -> str:
    keras_version = f"keras=={importlib.metadata.version('keras')}"
    if name == "bert-imdb":
        hub = importlib.metadata.version("keras-hub")
        return f"keras-hub=={hub} (BertBackbone + BertTextClassifier), {keras_version}"
    return keras_version


def model_inputs(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A token batch (input_ids, attention_mask) as KerasHub's BERT takes it: int32 token_ids,
    segment_ids (all 0: one segment) and padding_mask."""
    ids = np.asarray(batch["input_ids"], dtype=np.int32)
    return {
        "token_ids": ids,
        "segment_ids": np.zeros_like(ids),
        "padding_mask": np.asarray(batch["attention_mask"], dtype=np.int32),
    }


def _bert_architecture(size: str) -> Any:
    import keras_hub

    info = get_model("bert-imdb").size(size)
    if size == "full":  # bert_base_en_uncased's configuration
        shape = {"num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072}
    else:  # as the torch tiny BERT
        shape = {"num_layers": 2, "num_heads": 2, "hidden_dim": 32, "intermediate_dim": 64}
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=info.vocab_size or 30522, max_sequence_length=512, num_segments=2, **shape
    )
    # activation None: logits, like the other definitions. KerasHub's own (truncated-normal,
    # stddev 0.02) initialisers give the random weights: seeded by keras.utils.set_random_seed.
    return keras_hub.models.BertTextClassifier(backbone, num_classes=info.num_classes, preprocessor=None)


def _bert(size: str, weights: str, weights_path: str | None) -> Any:
    """KerasHub's BertTextClassifier: the preset, a saved preset folder / .keras model, or a config."""
    import keras
    import keras_hub

    info = get_model("bert-imdb").size(size)
    if weights == "pretrained":
        try:
            return keras_hub.models.BertTextClassifier.from_preset(
                BERT_PRESET, num_classes=info.num_classes, preprocessor=None
            )
        except Exception as exc:  # noqa: BLE001 - kagglehub raises assorted errors offline
            raise WeightsUnavailable(
                f"could not download the KerasHub preset {BERT_PRESET} ({definition_source('bert-imdb')}): "
                f"{str(exc)[:300]}. Without network, save it once on a connected machine "
                f"(keras_hub.models.BertTextClassifier.from_preset({BERT_PRESET!r}, num_classes=2)"
                ".save_to_preset(DIR)) and pass --weights DIR"
            ) from None
    if weights == "path":
        if not weights_path:
            raise WeightsUnavailable("weights 'path' needs a saved model")
        try:
            if os.path.isdir(weights_path):  # a fine-tuned classifier saved with save_to_preset(DIR)
                return keras_hub.models.BertTextClassifier.from_preset(weights_path, preprocessor=None)
            if weights_path.endswith(".keras"):
                return keras.models.load_model(weights_path, compile=False)
        except Exception as exc:  # noqa: BLE001 - an unreadable folder or file is the user's input error
            raise WeightsUnavailable(
                f"cannot load a KerasHub BertTextClassifier from {weights_path} ({definition_source('bert-imdb')}): "
                f"{str(exc)[:500]}. Expected a folder written by save_to_preset(DIR), a .keras file or a "
                ".weights.h5 file of this size"
            ) from None
        if not weights_path.endswith(".weights.h5"):
            raise WeightsUnavailable(
                f"weights {os.path.basename(weights_path)} are neither a KerasHub preset folder "
                "(save_to_preset), a .keras (whole model) nor a .weights.h5 (weights of bert-imdb) file"
            )
    model = _bert_architecture(size)
    if weights == "path":
        assert weights_path is not None
        try:
            model.load_weights(weights_path)
        except Exception as exc:  # noqa: BLE001 - wrong file, wrong architecture: the user's input
            raise WeightsUnavailable(
                f"weights file {weights_path} does not fit bert-imdb ({size}, {definition_source('bert-imdb')}): "
                f"{str(exc)[:500]}"
            ) from None
    return model


def nhwc_shape(name: str, size: str) -> tuple[int, int, int]:
    c, h, w = get_model(name).size(size).input_shape
    return h, w, c


def _architecture(name: str, size: str, pretrained: bool) -> Any:
    import keras

    info = get_model(name).size(size)
    common: dict[str, Any] = {
        "input_shape": nhwc_shape(name, size),
        "weights": "imagenet" if pretrained else None,
        "classes": info.num_classes,
        # Logits, like the torch definitions: parity and predictions compare the same quantity.
        "classifier_activation": None,
    }
    if name == "resnet50":
        if size == "full":
            return keras.applications.ResNet50(**common)
        from keras.src.applications.resnet import ResNet, stack_residual_blocks_v1

        def stack_fn(x: Any) -> Any:
            x = stack_residual_blocks_v1(x, 64, 1, stride1=1, name="conv2")
            x = stack_residual_blocks_v1(x, 128, 1, name="conv3")
            x = stack_residual_blocks_v1(x, 256, 1, name="conv4")
            return stack_residual_blocks_v1(x, 512, 1, name="conv5")

        return ResNet(stack_fn, preact=False, use_bias=True, name="resnet50_tiny", **common)
    if name == "mobilenetv2":
        return keras.applications.MobileNetV2(alpha=1.0 if size == "full" else 0.35, **common)
    raise KeyError(f"no Keras definition of {name!r}; valid: resnet50, mobilenetv2")


def _seeded_init(model: Any, seed: int) -> None:
    """He-normal convolutions, LeCun-normal dense layers, zero biases, from one seeded generator.

    Keras' default (Glorot-uniform) leaves a random 50-layer network with logits around 1e-10:
    every prediction is then a near-tie and any conversion would pass a parity check. This
    initialisation keeps activations at unit scale, as torchvision's does.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        values = []
        for var in layer.weights:
            shape = tuple(var.shape)
            if var.path.endswith("bias"):
                values.append(np.zeros(shape, np.float32))
                continue
            if kind == "Dense":
                fan_in, gain = shape[0], 1.0
            elif kind == "DepthwiseConv2D":
                fan_in, gain = shape[0] * shape[1], 2.0
            else:
                fan_in, gain = shape[0] * shape[1] * shape[2], 2.0
            values.append(rng.normal(0.0, np.sqrt(gain / fan_in), shape).astype(np.float32))
        layer.set_weights(values)


def _whole_model_file(name: str, weights_path: str | None) -> Any:
    """A .keras file is the whole model (returned); a .weights.h5 file is loaded later (None)."""
    import keras

    if not weights_path:
        raise WeightsUnavailable("weights 'path' needs a weights file")
    if weights_path.endswith(".keras"):
        try:
            return keras.models.load_model(weights_path, compile=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
            raise WeightsUnavailable(f"cannot load Keras model file {weights_path}: {exc}") from None
    if not weights_path.endswith(".weights.h5"):
        raise WeightsUnavailable(
            f"weights file {os.path.basename(weights_path)} is neither a .weights.h5 (weights of "
            f"{name}) nor a .keras (whole model) file"
        )
    return None


def build(name: str, size: str, weights: str, weights_path: str | None = None, seed: int = 0) -> Any:
    """The Keras model (inference only) with the requested weights; random ones are seeded."""
    import keras

    info = get_model(name).size(size)
    pretrained = weights == "pretrained"
    if pretrained and not info.pretrained:
        raise WeightsUnavailable(f"no pretrained weights for {name} size {size!r}; use --weights random or PATH")
    keras.utils.set_random_seed(seed)
    if name == "bert-imdb":
        model = _bert(size, weights, weights_path)
        model.trainable = False
        return model
    if weights == "path":
        whole = _whole_model_file(name, weights_path)
        if whole is not None:
            return whole
    try:
        model = _architecture(name, size, pretrained)
    except Exception as exc:  # noqa: BLE001 - keras' get_file raises a bare Exception offline
        if not pretrained:
            raise
        raise WeightsUnavailable(
            f"could not download the pretrained weights of {name} ({definition_source()}): {exc}. "
            "Without network, download them once into ~/.keras/models on a connected machine, or "
            "pass --weights PATH (a .weights.h5 or .keras file)"
        ) from None
    if weights == "random":
        _seeded_init(model, seed)
    elif weights == "path":
        assert weights_path is not None
        try:
            model.load_weights(weights_path)
        except Exception as exc:  # noqa: BLE001 - wrong file, wrong architecture: the user's input
            raise WeightsUnavailable(
                f"weights file {weights_path} does not fit {name} ({size}, {definition_source()}): {str(exc)[:500]}"
            ) from None
    model.trainable = False
    return model
