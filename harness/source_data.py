"""A labelled dataset read for a model source, where the model's inputs fit it.

Images go to a model with one float input of 1x8x8 (digits) or 3xHxW / HxWx3 (imagenet-val,
torchvision's transform, laid out as the model declares); texts go to a model whose inputs are
token ids (and masks), tokenised with the folder's own tokenizer or, without one, a WordPiece
vocabulary trained on the texts and sized below the model's vocabulary.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.protocol import RunSpec


def source_samples(spec: RunSpec) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """(every input by name, labels, info) of the whole (limited) dataset; DatasetError when it does not fit."""
    from suite.datasets import DatasetError, get_dataset
    from suite.sources import dataset_refusal

    source = spec.model_source
    assert source is not None
    refusal = dataset_refusal(source["label"], source.get("task"), source["inputs"], spec.dataset)
    if refusal is not None:
        raise DatasetError(refusal)
    info = get_dataset(spec.dataset)
    if info.needs_path and not spec.dataset_path:
        raise DatasetError(f"dataset {spec.dataset} needs a path ({info.description})")
    meta: dict[str, Any] = {"dataset": spec.dataset, "limit": spec.limit, "subset_seed": spec.seed}
    if spec.dataset == "imdb":
        return _texts(spec, source, meta)
    return _images(spec, source, meta)


def _images(spec: RunSpec, source: dict[str, Any], meta: dict[str, Any]) -> Any:
    from suite.datasets import DatasetError, subset

    inputs = source["inputs"]  # one float input of three axes (dataset_refusal checked)
    shape = tuple(inputs[0]["shape"])
    nhwc = shape[-1] in (1, 3) and shape[0] not in (1, 3)
    chw = (shape[2], shape[0], shape[1]) if nhwc else shape
    if spec.dataset == "digits":
        from suite.datasets import digits

        images, labels = digits.test_split()
        keep = np.asarray(subset(list(range(len(labels))), spec.limit, spec.seed), dtype=np.int64)
        images, labels, how = images[keep], labels[keep], "pixels / 16"
    elif spec.dataset == "imagenet-val":
        from suite.datasets import imagenet

        assert spec.dataset_path is not None
        items = subset(imagenet.find(spec.dataset_path), spec.limit, spec.seed)
        images = imagenet.load(items, chw, "torch")
        labels, how = np.asarray([label for _, label in items], dtype=np.int64), "torch"
    else:
        raise DatasetError(f"dataset {spec.dataset} has no loader for a model file in this harness")
    if nhwc:
        images = images.transpose(0, 2, 3, 1)
    array = np.ascontiguousarray(images, dtype=np.dtype(inputs[0]["dtype"]))
    layout = "NHWC" if nhwc else "NCHW"
    return {inputs[0]["name"]: array}, labels, {**meta, "preprocessing": f"{how}, {layout}"}


def _texts(spec: RunSpec, source: dict[str, Any], meta: dict[str, Any]) -> Any:
    import os

    from suite.datasets import DatasetError, imdb, subset
    from suite.datasets.tokenize import encode

    inputs = {s["name"]: s for s in source["inputs"]}
    ids = inputs["input_ids"]  # token ids of one axis (dataset_refusal checked)
    assert spec.dataset_path is not None
    reviews = subset(imdb.find(spec.dataset_path), spec.limit, spec.seed)
    length, vocab = int(ids["shape"][0]), int(ids["vocab_size"])
    folder = source["path"] if source["kind"] == "hf" and os.path.isdir(source["path"]) else None
    # A folder's own tokenizer when it has one; otherwise WordPiece trained on the texts, below its vocabulary.
    has_tokenizer = folder is not None and any(
        os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")
    )
    encoded, how = encode(
        source["label"], imdb.texts(reviews), length, vocab, "path" if has_tokenizer else "random", folder
    )
    count = len(reviews)
    samples = {}
    for name, s in inputs.items():
        if name in encoded:
            samples[name] = np.ascontiguousarray(encoded[name], dtype=np.dtype(s["dtype"]))
        elif s["fill"] in ("zeros", "ones") and len(s["shape"]) == 1 and s["shape"][0] == length:
            samples[name] = (np.zeros if s["fill"] == "zeros" else np.ones)((count, length), np.dtype(s["dtype"]))
        else:
            raise DatasetError(f"dataset imdb cannot fill input {name} of {source['label']}")
    labels = np.asarray([label for _, label in reviews], dtype=np.int64)
    return samples, labels, {**meta, "preprocessing": how}
