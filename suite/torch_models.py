"""PyTorch definitions of the registered models (imported only inside a torch environment).

The official definition is torchvision's. Where torchvision cannot load (it is missing, or its
compiled ops do not match the installed torch build, as with PyPI's torchvision next to a CPU-only
torch wheel), the same architectures come from transformers. Which one was used is returned with
the model and recorded: the two have different pretrained checkpoints.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import torch

from suite.models import get_model

# transformers' hub ids for the same architectures, used when torchvision cannot load.
HF_PRETRAINED = {"resnet50": "microsoft/resnet-50", "mobilenetv2": "google/mobilenet_v2_1.0_224"}


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be fetched or a weights file could not be loaded."""


def _torchvision() -> Any | None:
    try:
        import torchvision
    except Exception:  # noqa: BLE001 - a broken install raises RuntimeError/OSError, not ImportError
        return None
    return torchvision


def definition_source() -> str:
    """'torchvision==X' or 'transformers==Y': whose definition ``build`` will use here."""
    name = "torchvision" if _torchvision() is not None else "transformers"
    return f"{name}=={importlib.metadata.version(name)}"


class _Logits(torch.nn.Module):
    """Wraps a transformers classifier so that it maps pixels to a logits tensor, like torchvision."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(pixel_values=x).logits


class DigitsCNN(torch.nn.Module):
    """Two convolutions and two dense layers for 1x8x8 digits: trains to >95 % in seconds on a CPU."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )
        self.classifier = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(32 * 4 * 4, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# Models defined here rather than by torchvision/transformers.
OWN_MODELS = {"digits-cnn": DigitsCNN}
BERT_PRETRAINED = "bert-base-uncased"


class _TextLogits(torch.nn.Module):
    """Wraps a transformers sequence classifier: (input_ids, attention_mask) -> logits tensor."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


def _bert(size: str, weights: str, weights_path: str | None) -> torch.nn.Module:
    """transformers' BertForSequenceClassification: bert-base-uncased, a fine-tuned folder, or a config."""
    import os

    import transformers as tf

    info = get_model("bert-imdb").size(size)
    if weights == "pretrained" or (weights == "path" and weights_path and os.path.isdir(weights_path)):
        source = BERT_PRETRAINED if weights == "pretrained" else str(weights_path)
        try:
            inner = tf.BertForSequenceClassification.from_pretrained(source, num_labels=info.num_classes)
        except OSError as exc:
            raise WeightsUnavailable(
                f"could not load BERT from {source}: {exc}. Without network, save the model once on a connected "
                "machine (save_pretrained(DIR), with its tokenizer) and pass --weights DIR"
            ) from None
        return _TextLogits(inner)
    if size == "full":
        config = tf.BertConfig(num_labels=info.num_classes)  # type: ignore[call-arg]  # bert-base's shape
    else:
        config = tf.BertConfig(  # type: ignore[call-arg]
            vocab_size=info.vocab_size or 1000,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
            num_labels=info.num_classes,
        )
    return _TextLogits(tf.BertForSequenceClassification(config))


def _torchvision_model(tv: Any, name: str, size: str, num_classes: int, pretrained: bool) -> Any:
    from torchvision.models.resnet import Bottleneck, ResNet

    if name == "resnet50":
        if pretrained:
            return tv.models.resnet50(weights=tv.models.ResNet50_Weights.DEFAULT)
        if size == "full":
            return tv.models.resnet50(weights=None, num_classes=num_classes)
        return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=num_classes)
    if pretrained:
        return tv.models.mobilenet_v2(weights=tv.models.MobileNet_V2_Weights.DEFAULT)
    width = 1.0 if size == "full" else 0.25
    return tv.models.mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width)


def _transformers_model(name: str, size: str, num_classes: int, pretrained: bool) -> Any:
    import transformers as tf

    if pretrained:
        cls = tf.ResNetForImageClassification if name == "resnet50" else tf.MobileNetV2ForImageClassification
        return _Logits(cls.from_pretrained(HF_PRETRAINED[name]))
    if name == "resnet50":
        depths = [3, 4, 6, 3] if size == "full" else [1, 1, 1, 1]
        resnet = tf.ResNetConfig(depths=depths, num_labels=num_classes)  # type: ignore[call-arg]
        return _Logits(tf.ResNetForImageClassification(resnet))
    width = 1.0 if size == "full" else 0.25
    image = get_model(name).size(size).input_shape[-1]
    mobilenet = tf.MobileNetV2Config(  # type: ignore[call-arg]
        depth_multiplier=width, image_size=image, num_labels=num_classes
    )
    return _Logits(tf.MobileNetV2ForImageClassification(mobilenet))


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise WeightsUnavailable(f"cannot load weights file {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"weights file {path} holds no state_dict")
    return state


def _vision(name: str, size: str, num_classes: int, pretrained: bool) -> torch.nn.Module:
    tv = _torchvision()
    try:
        if name in OWN_MODELS:
            return OWN_MODELS[name](num_classes)
        if tv is not None:
            return _torchvision_model(tv, name, size, num_classes, pretrained)  # type: ignore[no-any-return]
        return _transformers_model(name, size, num_classes, pretrained)  # type: ignore[no-any-return]
    except OSError as exc:  # urllib's URLError and the hub's offline errors are OSErrors
        raise WeightsUnavailable(
            f"could not download the pretrained weights of {name} "
            f"({definition_source()}): {exc}. Without network, download them once into the "
            "framework's cache on a connected machine, or pass --weights PATH"
        ) from None


def _condition_random(model: torch.nn.Module, input_shape: tuple[int, ...], seed: int) -> None:
    """Give a random vision model outputs that vary with its input.

    The libraries' default initialisations leave a random deep network nearly constant (MobileNetV2's
    logits come out around 1e-22, every input predicting the same class), so a parity check or an
    agreement between engines could not fail. He-initialised weights and batch-norm statistics
    measured on one seeded random batch keep the activations at unit scale through the network.
    """
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in = module.weight[0].numel()
            with torch.no_grad():
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1, generator=gen)
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the calibration batch
    calibration = torch.randn((16, *input_shape), generator=gen)
    model.train()
    with torch.no_grad():
        model(calibration)
    model.eval()


def build(name: str, size: str, weights: str, weights_path: str | None = None, seed: int = 0) -> torch.nn.Module:
    """The model in eval mode with the requested weights (random ones are seeded)."""
    shape = get_model(name).size(size)
    pretrained = weights == "pretrained"
    if pretrained and not shape.pretrained:
        raise WeightsUnavailable(f"no pretrained weights for {name} size {size!r}; use --weights random or PATH")
    torch.manual_seed(seed)
    if name == "bert-imdb":
        model = _bert(size, weights, weights_path)
        if weights == "path" and weights_path and os.path.isdir(weights_path):
            return model.eval()  # a fine-tuned model folder: loaded by from_pretrained
    else:
        model = _vision(name, size, shape.num_classes, pretrained)
        if weights == "random":
            _condition_random(model, shape.input_shape, seed)
    if weights == "path":
        if not weights_path:
            raise WeightsUnavailable("weights 'path' needs a weights file")
        try:
            model.load_state_dict(load_state_dict(weights_path))
        except RuntimeError as exc:
            raise WeightsUnavailable(
                f"weights file {weights_path} does not fit {name} ({size}, {definition_source()}): {str(exc)[:500]}"
            ) from None
    return model.eval()
