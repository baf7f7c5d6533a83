"""MXNet Gluon definitions of the registered models (imported only inside an MXNet environment).

The official definitions are the Gluon model zoo's (``mxnet.gluon.model_zoo.vision``): full size is
``resnet50_v1`` / ``mobilenetv2_1.0``; tiny keeps the same classes with the torch tiny shapes: a
ResNetV1 with one BottleneckV1 per stage, and MobileNetV2 with width multiplier 0.25 (64x64 inputs,
10 classes). MXNet takes NCHW, like the harness's batches.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from suite.models import get_model

ZOO_NAMES = {"resnet50": "resnet50_v1", "mobilenetv2": "mobilenetv2_1.0"}


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be fetched or a weights file could not be loaded."""


def definition_source() -> str:
    return f"mxnet=={importlib.metadata.version('mxnet')} (gluon model zoo)"


def _architecture(name: str, size: str, pretrained: bool) -> Any:
    from mxnet.gluon.model_zoo import vision

    info = get_model(name).size(size)
    if name not in ZOO_NAMES:
        raise KeyError(f"no Gluon definition of {name!r}; valid: {', '.join(ZOO_NAMES)}")
    if size == "full":
        return vision.get_model(ZOO_NAMES[name], pretrained=pretrained, classes=info.num_classes)
    if name == "resnet50":
        return vision.ResNetV1(vision.BottleneckV1, [1, 1, 1, 1], [64, 256, 512, 1024, 2048], classes=info.num_classes)
    return vision.MobileNetV2(multiplier=0.25, classes=info.num_classes)


def build(name: str, size: str, weights: str, weights_path: str | None = None, seed: int = 0) -> Any:
    """The Gluon network, initialised and hybridized, with the requested weights (random: seeded)."""
    import mxnet as mx

    info = get_model(name).size(size)
    pretrained = weights == "pretrained"
    if pretrained and not info.pretrained:
        raise WeightsUnavailable(f"no pretrained weights for {name} size {size!r}; use --weights random or PATH")
    mx.random.seed(seed)
    try:
        net = _architecture(name, size, pretrained)
    except Exception as exc:  # noqa: BLE001 - the zoo's download raises assorted errors offline
        if not pretrained:
            raise
        raise WeightsUnavailable(
            f"could not download the pretrained weights of {name} ({definition_source()}): {exc}. "
            "Without network, download them once into ~/.mxnet/models on a connected machine, or pass "
            "--weights PATH (a .params file)"
        ) from None
    if weights == "random":
        # He (MSRA) initialisation, as torchvision does: the zoo's default leaves a random deep
        # network with logits around 1e-12, every prediction a near-tie.
        net.initialize(mx.init.MSRAPrelu(factor_type="in", slope=0.0), ctx=mx.cpu())
        # Gluon defers initialisation to the first forward pass: run it now, while the seed holds.
        net(mx.nd.zeros((1, *info.input_shape), ctx=mx.cpu()))
    elif weights == "path":
        if not weights_path:
            raise WeightsUnavailable("weights 'path' needs a weights file")
        try:
            net.load_parameters(weights_path, ctx=mx.cpu())
        except Exception as exc:  # noqa: BLE001 - wrong file, wrong architecture: the user's input
            raise WeightsUnavailable(
                f"weights file {os.path.basename(weights_path)} does not fit {name} ({size}, "
                f"{definition_source()}): {str(exc)[:500]}"
            ) from None
    return net
