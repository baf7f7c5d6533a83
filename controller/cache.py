"""The content-addressed cache that conversions and serving exports share.

An entry is a folder named by the hash of everything that made it, holding the converted files
and a ``meta.json`` with the sha256 of each file. It is made in a staging folder beside it and
renamed into place only once the conversion passed its checks, so a reader sees a whole entry or
none. On reuse every file is hashed again: an entry whose files changed, went missing or whose
meta cannot be read is removed (with a warning) and made again, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import UserError
from controller.hostinfo import pid_alive
from suite.model_formats import cache_root, file_sha256

META = "meta.json"
STAGING_PREFIX = ".staging-"
CACHE_HELP = "artifact cache (default ~/.cache/joulebench/artifacts; $JOULEBENCH_CACHE or $XDG_CACHE_HOME moves it)"
CONTAINER_UID = 10001


def default_root() -> Path:
    """$JOULEBENCH_CACHE, else $XDG_CACHE_HOME/joulebench, else ~/.cache/joulebench."""
    return cache_root()


def key_of(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Entry:
    key: str
    folder: Path
    meta: dict[str, Any]
    reused: bool


class ArtifactCache:
    """One folder of entries (``root``), writable by the containers that convert into it."""

    def __init__(self, root: Path, container_writes: bool, warn: Callable[[str], None] = print) -> None:
        self.root = root
        self.container_writes = container_writes  # the Docker runner's containers write as CONTAINER_UID
        self.warn = warn
        check_writable_folder(root, "the artifact cache (--cache)")

    def sub(self, name: str) -> ArtifactCache:
        """A cache of its own kind of entries in a subfolder (serving exports)."""
        return ArtifactCache(self.root / name, self.container_writes, self.warn)

    def lookup(self, key: str) -> Entry | None:
        """The whole, unchanged entry ``key``, or None (a damaged one is removed with a warning)."""
        folder = self.root / key
        if not folder.exists():
            return None
        problem = self._damage(folder)
        if problem is None:
            meta = json.loads((folder / META).read_text())
            return Entry(key, folder, meta, reused=True)
        self.warn(f"warning: cache entry {folder} is damaged ({problem}); removing it and converting again")
        shutil.rmtree(folder, ignore_errors=True)
        return None

    def _damage(self, folder: Path) -> str | None:
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError) as exc:
            return f"{META} unreadable: {exc.__class__.__name__}"
        files = meta.get("files") if isinstance(meta, dict) else None
        if not isinstance(files, dict) or not files:
            return f"{META} lists no file hashes (made by an older joulebench)"
        for name, want in files.items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if file_sha256(path, remember=False) != want:
                return f"{name} changed since it was made"
        return None

    def stage(self, key: str) -> Path:
        """A fresh folder beside entry ``key`` that a converting harness may write into."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f"{STAGING_PREFIX}{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(mode=0o755)
        if self.container_writes and os.getuid() == 0:
            os.chown(staging, CONTAINER_UID, CONTAINER_UID)  # the container writes as that user
        return staging

    def commit(self, staging: Path, key: str, meta: dict[str, Any]) -> Entry:
        """Hash the staged files, write the meta, and rename the staging folder into place."""
        files = {
            p.relative_to(staging).as_posix(): file_sha256(p, remember=False)
            for p in sorted(staging.rglob("*"))
            if p.is_file()
        }
        meta = {**meta, "key": key, "files": files}
        (staging / META).write_text(json.dumps(meta, indent=1))
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        final = self.root / key
        try:
            staging.rename(final)
        except OSError:
            if self.lookup(key) is None:  # a concurrent conversion did not finish either
                raise
            shutil.rmtree(staging, ignore_errors=True)
            return self.lookup(key) or Entry(key, final, meta, reused=True)
        return Entry(key, final, meta, reused=False)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def clean_abandoned(self) -> list[Path]:
        """Remove staging folders whose process is gone (a conversion killed with -9)."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for staging in self.root.glob(f"{STAGING_PREFIX}*"):
            parts = staging.name.removeprefix(STAGING_PREFIX).split("-")
            pid = parts[1] if len(parts) == 3 else ""
            if not pid.isdigit() or not pid_alive(int(pid)):
                shutil.rmtree(staging, ignore_errors=True)
                removed.append(staging)
        return removed


def check_writable_folder(path: Path, what: str) -> None:
    """UserError unless ``path`` is (or can be made) a folder this process can write into."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"{what} {path}: {probe} is a file, not a folder; name a folder")
    real = probe.resolve()
    top = "/" + real.parts[1] if len(real.parts) > 1 else "/"
    if top in ("/proc", "/sys", "/dev"):
        raise UserError(f"{what} {path} is under {top}, a kernel file system, not a folder for files; name another")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {probe} is not writable by this user; name a writable folder")
