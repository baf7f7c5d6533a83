"""Mounts a batch run needs beside its model: its dataset, and TensorRT's engine cache."""

from __future__ import annotations

import os
from pathlib import Path

from controller.cache import CONTAINER_UID
from controller.runners.base import Mount, Runner

TRT_CACHE_MOUNT = "/trt-cache"


def dataset_mount(path: Path) -> Mount:
    """Read-only mount of a dataset: a folder or a table as is; a file list with its folder (its
    relative paths point there)."""
    from suite.datasets import DATASET_MOUNT

    if path.is_file() and path.suffix.lower() not in (".csv", ".parquet"):
        return Mount(str(path.parent), f"{DATASET_MOUNT}/{path.parent.name or 'root'}")
    return Mount(str(path), f"{DATASET_MOUNT}/{path.name}")


def tensorrt_cache(cache_parent: Path, runner: Runner) -> Path:
    """The host folder for TensorRT engine and timing caches, writable by the container's user."""
    folder = cache_parent / "tensorrt"
    if not folder.is_dir():
        folder.mkdir(parents=True, mode=0o755)
        if runner.kind == "docker" and os.getuid() == 0:
            os.chown(folder, CONTAINER_UID, CONTAINER_UID)
    return folder
