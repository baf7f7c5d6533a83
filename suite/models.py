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
    # Models with several inputs (token ids and attention mask) name them; their batches are dicts
    # of integer arrays of shape (batch, *input_shape). Empty: one float32 input.
    input_names: tuple[str, ...] = ()
    vocab_size: int | None = None  # token ids are drawn below this for synthetic inputs


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
# BERT's sequence classifier on IMDB; tiny: a small BertConfig and a WordPiece vocabulary trained
# on the texts at hand (suite/datasets/tokenize.py).
_BERT_INPUTS = ("input_ids", "attention_mask")
_BERT = ModelSize(input_shape=(256,), num_classes=2, pretrained=True, input_names=_BERT_INPUTS, vocab_size=30522)
_TINY_BERT = ModelSize(input_shape=(32,), num_classes=2, pretrained=False, input_names=_BERT_INPUTS, vocab_size=1000)
# scikit-learn's 8x8 digits: a model small enough to train inside a test, for honest accuracy.
_DIGITS = ModelSize(input_shape=(1, 8, 8), num_classes=10, pretrained=False)

MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            name="resnet50",
            task="image-classification",
            sources=("torch", "tensorflow", "mxnet"),
            description="ResNet-50 (torchvision; keras.applications.ResNet50; Gluon zoo resnet50_v1); tiny: "
            "one bottleneck per stage (torchvision's ResNet, keras.applications' ResNet builder, Gluon ResNetV1)",
            sizes={"full": _IMAGENET, "tiny": _TINY_IMAGE},
        ),
        ModelInfo(
            name="mobilenetv2",
            task="image-classification",
            sources=("torch", "tensorflow", "mxnet"),
            description="MobileNetV2 (torchvision; keras.applications.MobileNetV2; Gluon zoo mobilenetv2_1.0); "
            "tiny: width multiplier 0.25 (torch, Gluon), alpha 0.35 (Keras' smallest published width)",
            sizes={"full": _IMAGENET, "tiny": _TINY_IMAGE},
        ),
        ModelInfo(
            name="bert-imdb",
            task="text-classification",
            sources=("torch", "tensorflow", "mxnet"),
            description="BERT-base-uncased sequence classifier, IMDB sentiment: transformers' "
            "BertForSequenceClassification; KerasHub's BertBackbone + BertTextClassifier (preset "
            "bert_base_en_uncased); GluonNLP 0.10's BERTModel + BERTClassifier (bert_12_768_12, "
            "book_corpus_wiki_en_uncased). PATH: a fine-tuned model folder (from_pretrained; KerasHub: "
            "save_to_preset), a .keras/.weights.h5 file, or a Gluon .params file; tiny: 2 layers, hidden 32; "
            "max length 256 (--option max_length=N)",
            sizes={"full": _BERT, "tiny": _TINY_BERT},
        ),
        ModelInfo(
            name="digits-cnn",
            task="image-classification",
            sources=("torch",),
            description="a two-convolution CNN for scikit-learn's 8x8 digits (train it, pass --weights PATH); "
            "the offline accuracy check across engines",
            sizes={"full": _DIGITS, "tiny": _DIGITS},
        ),
    )
}


def get_model(name: str) -> ModelInfo:
    """The registered model, or KeyError naming the valid ones."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    return MODELS[name]
