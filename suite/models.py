"""The model registry: names, input shapes and where each model's definition comes from.

Importing this module imports no ML framework; the controller reads it to validate specs, the
harness reads it to build inputs and call the framework-specific builder.
"""

from __future__ import annotations

from dataclasses import dataclass

WEIGHTS_KINDS = ("random", "pretrained", "path")


@dataclass(frozen=True)
class ModelSize:
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    num_classes: int
    pretrained: bool  # whether official pretrained weights exist for this size


@dataclass(frozen=True)
class ModelInfo:
    name: str
    task: str
    # Frameworks with an official definition of the model; the first is the default source of
    # conversions (a converted run can name another with --source).
    sources: tuple[str, ...]
    description: str
    sizes: dict[str, ModelSize]

    def size(self, size: str) -> ModelSize:
        if size not in self.sizes:
            raise KeyError(f"model {self.name!r} has no size {size!r}; valid sizes: {', '.join(self.sizes)}")
        return self.sizes[size]


_IMAGENET = ModelSize(input_shape=(3, 224, 224), num_classes=1000, pretrained=True)
# Same architectures, fewer blocks/channels and small inputs: for tests and quick runs.
_TINY_IMAGE = ModelSize(input_shape=(3, 64, 64), num_classes=10, pretrained=False)

MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            name="resnet50",
            task="image-classification",
            sources=("torch", "tensorflow"),
            description="ResNet-50 (torchvision; keras.applications.ResNet50); tiny: one bottleneck per "
            "stage (torch: torchvision's ResNet; Keras: keras.applications' ResNet builder)",
            sizes={"full": _IMAGENET, "tiny": _TINY_IMAGE},
        ),
        ModelInfo(
            name="mobilenetv2",
            task="image-classification",
            sources=("torch", "tensorflow"),
            description="MobileNetV2 (torchvision; keras.applications.MobileNetV2); tiny: width multiplier "
            "0.25 (torch), alpha 0.35 (Keras' smallest published width)",
            sizes={"full": _IMAGENET, "tiny": _TINY_IMAGE},
        ),
    )
}


def get_model(name: str) -> ModelInfo:
    """The registered model, or KeyError naming the valid ones."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    return MODELS[name]
