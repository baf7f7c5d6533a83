"""The dataset registry: names, what each needs, and a cheap layout check.

Importing this package imports no ML framework and reads no image or text: the controller calls
:func:`check` to validate a path and count samples before it starts anything; the harness calls
the loaders (``digits``, ``imagenet``, ``imdb``) in its load phase, before the measured window.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class DatasetError(ValueError):
    """A dataset that cannot be read as asked: unknown name, missing path, unexpected layout."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str | None  # the model task it serves; None: any (synthetic)
    labelled: bool
    needs_path: bool
    description: str


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "synthetic",
            None,
            False,
            False,
            "seeded random inputs of the model's shape (energy and time only: accuracy not applicable)",
        ),
        DatasetInfo(
            "digits",
            "image-classification",
            True,
            False,
            "scikit-learn's bundled 8x8 digits, a fixed seeded test split (offline, labelled)",
        ),
        DatasetInfo(
            "imagenet-val",
            "image-classification",
            True,
            True,
            "ImageNet validation images: a folder val/<wnid>/*.JPEG (classes = sorted wnids) "
            "or a labelled file list of 'path,label' lines",
        ),
        DatasetInfo(
            "imdb",
            "text-classification",
            True,
            True,
            "IMDB reviews: the aclImdb folder (test/pos, test/neg *.txt) or a CSV/Parquet of (text, label)",
        ),
    )
}


def get_dataset(name: str) -> DatasetInfo:
    """The registered dataset, or DatasetError naming the valid ones."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def subset(items: list[T], limit: int | None, seed: int) -> list[T]:
    """A seeded subset of ``limit`` items in their original order (all of them without a limit).

    stdlib ``random`` so that the controller (which counts) and the harness (which loads) pick
    the same samples without numpy.
    """
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise DatasetError(f"--limit must be at least 1, got {limit}")
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def check(name: str, path: str | Path | None, limit: int | None = None, seed: int = 0) -> int | None:
    """Validate a dataset request; the number of samples it yields (None for synthetic)."""
    info = get_dataset(name)
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be at least 1, got {limit}")
    if not info.needs_path:
        if path is not None:
            raise DatasetError(f"dataset {name} takes no --dataset-path (it is {info.description})")
        if name == "synthetic":
            if limit is not None:
                raise DatasetError("--limit applies to labelled datasets, not synthetic inputs")
            return None
        from suite.datasets.digits import TEST_SIZE

        return min(TEST_SIZE, limit) if limit else TEST_SIZE
    if path is None:
        raise DatasetError(f"dataset {name} needs --dataset-path: {info.description}")
    if not Path(path).exists():
        raise DatasetError(f"--dataset-path {path} does not exist ({name}: {info.description})")
    if name == "imagenet-val":
        from suite.datasets.imagenet import find

        return len(subset(find(path), limit, seed))
    from suite.datasets.imdb import find as find_reviews

    return len(subset(find_reviews(path), limit, seed))


# Where a container sees a dataset (read-only); the local runner uses the host path itself.
DATASET_MOUNT = "/datasets"
