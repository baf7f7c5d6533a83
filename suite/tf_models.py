"""TensorFlow/Keras definitions of the registered models (imported only inside a TF environment).

The official definitions are keras.applications'. Full size is ``ResNet50`` / ``MobileNetV2`` as
published (224x224x3, 1000 classes). Tiny keeps the families with small inputs (64x64x3, 10
classes): MobileNetV2 with width multiplier alpha=0.35 (the smallest width Keras publishes), and
keras.applications' own ResNet builder with one bottleneck block per stage (as the torch tiny
ResNet), instead of 3-4-6-3.

Keras takes NHWC ("channels_last") images; the harness hands out NCHW batches, which the
tensorflow engine and the tf2onnx conversion transpose outside any timed window.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import numpy as np

from suite.models import get_model


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be fetched or a weights file could not be loaded."""


def definition_source() -> str:
    return f"keras=={importlib.metadata.version('keras')}"


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


def build(name: str, size: str, weights: str, weights_path: str | None = None, seed: int = 0) -> Any:
    """The Keras model (inference only) with the requested weights; random ones are seeded."""
    import keras

    info = get_model(name).size(size)
    pretrained = weights == "pretrained"
    if pretrained and not info.pretrained:
        raise WeightsUnavailable(f"no pretrained weights for {name} size {size!r}; use --weights random or PATH")
    keras.utils.set_random_seed(seed)
    if weights == "path":
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
