"""MXNet Gluon definitions of the registered models (imported only inside an MXNet environment).

The official definitions are the Gluon model zoo's (``mxnet.gluon.model_zoo.vision``): full size is
``resnet50_v1`` / ``mobilenetv2_1.0``; tiny keeps the same classes with the torch tiny shapes: a
ResNetV1 with one BottleneckV1 per stage, and MobileNetV2 with width multiplier 0.25 (64x64 inputs,
10 classes). MXNet takes NCHW, like the harness's batches.

bert-imdb is GluonNLP 0.10's BERT (``gluonnlp.model.BERTModel`` under a ``BERTClassifier``; full:
``bert_12_768_12``, ``pretrained`` its ``book_corpus_wiki_en_uncased`` weights; tiny: 2 layers, hidden
32, as the torch tiny BERT). It takes ``inputs`` (token ids), ``token_types`` (all 0: one segment)
and ``valid_length`` (tokens per sequence) instead of a mask: :func:`model_inputs` maps the
harness's token batches (``input_ids``, ``attention_mask``) onto them.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import numpy as np

from suite.models import get_model

ZOO_NAMES = {"resnet50": "resnet50_v1", "mobilenetv2": "mobilenetv2_1.0"}
# GluonNLP's name of BERT-base and of the uncased corpus its pretrained weights come from.
BERT_PRETRAINED = ("bert_12_768_12", "book_corpus_wiki_en_uncased")


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be fetched or a weights file could not be loaded."""


def definition_source(name: str | None = None) -> str:
    mxnet = f"mxnet=={importlib.metadata.version('mxnet')}"
    if name == "bert-imdb":
        return f"gluonnlp=={importlib.metadata.version('gluonnlp')} (BERTModel + BERTClassifier), {mxnet}"
    return f"{mxnet} (gluon model zoo)"


def model_inputs(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A token batch (input_ids, attention_mask) as GluonNLP's BERT takes it, in float32 (Gluon's
    default dtype, as GluonNLP's own pipelines feed it): inputs, token_types (all 0), valid_length.

    GluonNLP masks by length: every attention_mask row must be ones then zeros (right padding,
    as the harness's tokenisers produce); ValueError otherwise.
    """
    mask = np.asarray(batch["attention_mask"])
    lengths = mask.sum(axis=1)
    if not np.array_equal(mask, (np.arange(mask.shape[1]) < lengths[:, None]).astype(mask.dtype)):
        raise ValueError("GluonNLP's BERT masks by valid length: attention_mask rows must be 1s then 0s")
    ids = np.asarray(batch["input_ids"], dtype=np.float32)
    return ids, np.zeros_like(ids), lengths.astype(np.float32)


def _bert(size: str, pretrained: bool) -> Any:
    """GluonNLP's BERTClassifier: bert_12_768_12 with its uncased weights (classifier head new), or a config."""
    import gluonnlp as nlp

    info = get_model("bert-imdb").size(size)
    if pretrained:
        model_name, dataset = BERT_PRETRAINED
        bert, _vocab = nlp.model.get_model(
            model_name,
            dataset_name=dataset,
            pretrained=True,
            use_pooler=True,
            use_decoder=False,
            use_classifier=False,
        )
        return nlp.model.BERTClassifier(bert, num_classes=info.num_classes, dropout=0.1)
    if size == "full":  # bert_12_768_12's hyper-parameters
        units, layers, heads, hidden = 768, 12, 12, 3072
    else:  # as the torch tiny BERT
        units, layers, heads, hidden = 32, 2, 2, 64
    encoder = nlp.model.BERTEncoder(
        num_layers=layers,
        units=units,
        hidden_size=hidden,
        max_length=512,
        num_heads=heads,
        dropout=0.1,
        output_attention=False,
        output_all_encodings=False,
    )
    bert = nlp.model.BERTModel(
        encoder,
        vocab_size=info.vocab_size,
        token_type_vocab_size=2,
        units=units,
        embed_size=units,
        word_embed=None,
        use_pooler=True,
        use_decoder=False,
        use_classifier=False,
    )
    return nlp.model.BERTClassifier(bert, num_classes=info.num_classes, dropout=0.1)


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
    text = name == "bert-imdb"
    if weights == "path" and weights_path and os.path.isdir(weights_path):
        raise WeightsUnavailable(
            f"--weights {weights_path} is a folder; {name} on MXNet loads a .params file "
            "(Block.save_parameters of the same architecture)"
        )
    try:
        net = _bert(size, pretrained) if text else _architecture(name, size, pretrained)
    except Exception as exc:  # noqa: BLE001 - the zoo's and GluonNLP's downloads raise assorted errors offline
        if not pretrained:
            raise
        raise WeightsUnavailable(
            f"could not download the pretrained weights of {name} ({definition_source(name)}): {exc}. "
            "Without network, download them once into ~/.mxnet/models on a connected machine, or pass "
            "--weights PATH (a .params file)"
        ) from None
    # Gluon defers initialisation to the first forward pass: run it now, while the seed holds.
    probe = model_inputs({"input_ids": np.zeros((1, 8)), "attention_mask": np.ones((1, 8))}) if text else None
    if text and pretrained:  # the BERT weights are loaded; only the new classifier head is random
        assert probe is not None
        net.classifier.initialize(mx.init.Normal(0.02), ctx=mx.cpu())
        net(*(mx.nd.array(a) for a in probe))
    elif weights == "random" and text:
        assert probe is not None
        # GluonNLP's (and BERT's) initialisation: N(0, 0.02) weights; LayerNorm and biases keep
        # their own (ones, zeros).
        net.initialize(mx.init.Normal(0.02), ctx=mx.cpu())
        net(*(mx.nd.array(a) for a in probe))
    elif weights == "random":
        # He (MSRA) initialisation, as torchvision does: the zoo's default leaves a random deep
        # network with logits around 1e-12, every prediction a near-tie.
        net.initialize(mx.init.MSRAPrelu(factor_type="in", slope=0.0), ctx=mx.cpu())
        net(mx.nd.zeros((1, *info.input_shape), ctx=mx.cpu()))
    elif weights == "path":
        if not weights_path:
            raise WeightsUnavailable("weights 'path' needs a weights file")
        try:
            net.load_parameters(weights_path, ctx=mx.cpu())
        except Exception as exc:  # noqa: BLE001 - wrong file, wrong architecture: the user's input
            raise WeightsUnavailable(
                f"weights file {os.path.basename(weights_path)} does not fit {name} ({size}, "
                f"{definition_source(name)}): {str(exc)[:500]}"
            ) from None
    return net
