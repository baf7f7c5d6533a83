"""scikit-learn's bundled 8x8 digits (1 797 labelled images, offline): a fixed seeded split."""

from __future__ import annotations

import numpy as np

TOTAL = 1797  # sklearn.datasets.load_digits()
TEST_SIZE = 450  # a quarter, fixed so that the controller can count without scikit-learn
SPLIT_SEED = 0  # the split never depends on the run's seed: every run tests on the same images
SHAPE = (1, 8, 8)


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels); images N x 1 x 8 x 8 float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    if len(labels) != TOTAL:
        raise RuntimeError(f"scikit-learn's digits has {len(labels)} samples, expected {TOTAL}")
    order = np.random.default_rng(SPLIT_SEED).permutation(TOTAL)
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return images[train], labels[train], images[test], labels[test]


def test_split() -> tuple[np.ndarray, np.ndarray]:
    """The test images and labels the benchmark runs on."""
    _, _, images, labels = split()
    return images, labels
