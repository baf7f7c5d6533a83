"""Inputs prepared before any timed window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.protocol import RunSpec
from suite.models import get_model

# Distinct synthetic batches cycled through the window: enough to defeat trivial caching, few
# enough that batch 64 of 224x224 images stays well under a gigabyte.
SYNTHETIC_POOL = 4


def source_batch(inputs: list[dict[str, Any]], batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One batch for a model source: every input by name, drawn as its spec says (suite/sources.py)."""
    batch: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = (batch_size, *spec["shape"])
        try:
            dtype = np.dtype(spec["dtype"])
        except TypeError:
            from harness.engines.base import EngineError

            raise EngineError(f"input {spec['name']} has dtype {spec['dtype']}, which numpy cannot make") from None
        fill = spec["fill"]
        if fill == "ids":
            array = rng.integers(0, int(spec["vocab_size"]), shape).astype(dtype)
        elif fill == "ones":
            array = np.ones(shape, dtype)
        elif fill == "zeros":
            array = np.zeros(shape, dtype)
        elif fill == "positions":
            array = np.ascontiguousarray(np.broadcast_to(np.arange(shape[-1], dtype=dtype), shape))
        else:
            array = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        batch[spec["name"]] = array
    return batch


def synthetic_batches(spec: RunSpec, n_batches: int | None) -> list[Any]:
    count = SYNTHETIC_POOL if n_batches is None else max(1, min(SYNTHETIC_POOL, n_batches))
    rng = np.random.default_rng(spec.seed)
    if spec.model_source is not None:
        return [source_batch(spec.model_source["inputs"], spec.batch_size, rng) for _ in range(count)]
    size = get_model(spec.model).size(spec.model_size)
    shape = size.input_shape
    if size.input_names:  # token ids and a full attention mask
        assert size.vocab_size is not None
        ids_shape = (spec.batch_size, max_length(spec))
        return [
            {"input_ids": rng.integers(0, size.vocab_size, ids_shape), "attention_mask": np.ones(ids_shape, np.int64)}
            for _ in range(count)
        ]
    return [rng.standard_normal((spec.batch_size, *shape), dtype=np.float32) for _ in range(count)]


@dataclass
class Inputs:
    """The batches a run cycles through, and for a labelled dataset what accuracy needs."""

    batches: list[Any]  # arrays, or dicts of arrays for models with several inputs
    info: dict[str, Any]
    sample_ids: list[np.ndarray] | None = None  # dataset index of every sample of each batch
    labels: np.ndarray | None = None  # true label per dataset index

    def accuracy_inputs(self, predicted: list[int]) -> dict[str, Any]:
        """Predicted and true label of each distinct sample measured (first prediction of each).

        ``predicted`` holds one label per measured sample, batch after batch; batch i of the
        window was ``batches[i % len(batches)]``.
        """
        if self.sample_ids is None or self.labels is None:
            return {}
        per_batch = len(self.sample_ids[0])
        n_batches = len(predicted) // per_batch
        ids = np.concatenate([self.sample_ids[i % len(self.sample_ids)] for i in range(n_batches)])
        seen, first = np.unique(ids, return_index=True)
        return {
            "predictions": np.asarray(predicted, dtype=np.int64)[first].tolist(),
            "labels": self.labels[seen].tolist(),
        }


def load_inputs(spec: RunSpec, n_batches: int | None) -> Inputs:
    """The run's batches: synthetic, or the dataset's samples preprocessed for this model."""
    if spec.dataset == "synthetic":
        return Inputs(synthetic_batches(spec, n_batches), {"dataset": "synthetic", "labelled": False})
    from harness.engines.base import EngineError
    from suite.datasets import DatasetError

    try:
        if spec.model_source is not None:
            from harness.source_data import source_samples

            samples, labels, info = source_samples(spec)
        else:
            samples, labels, info = _load_samples(spec)
    except DatasetError as exc:  # a stated reason for the user, not a harness bug
        raise EngineError(str(exc)) from None
    size = len(labels)
    batch = spec.batch_size
    # One pass over the dataset (or the part the sample count asks for); the last batch is
    # filled up from the dataset's start so that every batch has the run's batch size.
    count = math.ceil(size / batch) if n_batches is None else min(n_batches, math.ceil(size / batch))
    batches, ids = [], []
    for j in range(count):
        start, stop = j * batch, (j + 1) * batch
        if stop <= size:
            index: Any = slice(start, stop)  # a view: no copy of the prepared inputs
            ids.append(np.arange(start, stop))
        else:
            index = np.arange(start, stop) % size
            ids.append(index)
        batches.append({k: v[index] for k, v in samples.items()} if isinstance(samples, dict) else samples[index])
    return Inputs(batches, {**info, "labelled": True, "size": size}, ids, labels)


def _load_samples(spec: RunSpec) -> tuple[Any, np.ndarray, dict[str, Any]]:
    from suite.datasets import DatasetError, get_dataset, subset

    info = get_dataset(spec.dataset)
    model = get_model(spec.model)
    shape = model.size(spec.model_size).input_shape
    if info.task != model.task:
        raise DatasetError(f"dataset {spec.dataset} serves {info.task} models; {spec.model} is a {model.task} model")
    if info.needs_path and not spec.dataset_path:
        raise DatasetError(f"dataset {spec.dataset} needs a path ({info.description})")
    meta: dict[str, Any] = {"dataset": spec.dataset, "limit": spec.limit, "subset_seed": spec.seed}
    if spec.dataset == "digits":
        from suite.datasets import digits

        if tuple(shape) != digits.SHAPE:
            raise DatasetError(
                f"dataset digits gives 1x8x8 images; {spec.model} ({spec.model_size}) takes "
                f"{'x'.join(map(str, shape))} (use a model made for it, e.g. digits-cnn)"
            )
        images, labels = digits.test_split()
        keep = np.asarray(subset(list(range(len(labels))), spec.limit, spec.seed), dtype=np.int64)
        return np.ascontiguousarray(images[keep]), labels[keep], {**meta, "preprocessing": "pixels / 16"}
    if spec.dataset == "imagenet-val":
        from suite.datasets import imagenet

        assert spec.dataset_path is not None
        items = subset(imagenet.find(spec.dataset_path), spec.limit, spec.seed)
        style = imagenet.preprocess_style(spec.source, spec.model)
        images = imagenet.load(items, tuple(shape), style)
        labels = np.asarray([label for _, label in items], dtype=np.int64)
        return images, labels, {**meta, "preprocessing": style}
    if spec.dataset == "imdb":
        from suite.datasets import imdb

        assert spec.dataset_path is not None
        reviews = subset(imdb.find(spec.dataset_path), spec.limit, spec.seed)
        encoded, how = _tokenize(spec, imdb.texts(reviews))
        labels = np.asarray([label for _, label in reviews], dtype=np.int64)
        return encoded, labels, {**meta, "preprocessing": how}
    raise DatasetError(f"dataset {spec.dataset} has no loader in this harness")


def max_length(spec: RunSpec) -> int:
    """Sequence length of a text model's inputs: the registry's, or ``--option max_length=N``."""
    return int(spec.options.get("max_length") or get_model(spec.model).size(spec.model_size).input_shape[0])


def _tokenize(spec: RunSpec, texts: list[str]) -> tuple[dict[str, np.ndarray], str]:
    from suite.datasets import DatasetError
    from suite.datasets.tokenize import encode

    size = get_model(spec.model).size(spec.model_size)
    if not size.input_names or size.vocab_size is None:
        raise DatasetError(f"{spec.model} takes no token ids: the imdb dataset needs a text model (bert-imdb)")
    return encode(spec.model, texts, max_length(spec), size.vocab_size, spec.weights, spec.weights_path)
