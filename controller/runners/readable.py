"""Files only their owner can read, made readable to a container's unprivileged user without
loosening them or the container: a read-only view of the mount, staged once in the cache.

transformers 5's ``save_pretrained`` writes ``model.safetensors`` with mode 0600. A controller run
as root starts its containers as an unprivileged user (``CONTAINER_USER``), which cannot read such a
file. Rather than run the container as root or chmod the user's files, the controller (which can
read them) stages a view of the mounted folder: the files others can read are hard links (no copy,
no space), the others are copies readable by all (a reflink where the file system has them, so
free on btrfs and XFS; else one copy, made once and reused while the sources' sizes, times and
inodes stay the same). The view is mounted read-only, as the original would have been.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.runners.base import Mount

MAX_STAGED_FILES = 10000  # a model folder has tens; a dataset folder is not copied, it is refused
FICLONE = 0x40049409  # ioctl: the destination shares the source's blocks (btrfs, XFS, bcachefs)


@dataclass(frozen=True)
class Hidden:
    """What under a mount its container's user could not read."""

    paths: list[str]  # files and folders (the first few are named in messages)
    file_bytes: int  # the size of the unreadable files (what a staged view copies)
    files: int  # every file under the mount (a view links or copies each)


def _hidden(st: os.stat_result, folder: bool) -> bool:
    need = 0o005 if folder else 0o004
    return st.st_mode & need != need


def find_hidden(path: str, limit: int = MAX_STAGED_FILES) -> Hidden:
    """Files and folders under ``path`` that a user other than their owner cannot read."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        hidden = _hidden(st, False)
        return Hidden([path] if hidden else [], st.st_size if hidden else 0, 1)
    found = [path] if _hidden(st, True) else []
    size = files = 0
    for root, dirs, names in os.walk(path):
        found += [os.path.join(root, d) for d in dirs if _hidden(os.stat(os.path.join(root, d)), True)]
        for name in names:
            full = os.path.join(root, name)
            fst = os.stat(full)
            files += 1
            if _hidden(fst, False):
                found.append(full)
                size += fst.st_size
        if files > limit:
            break
    return Hidden(found, size, files)


def _identity(path: Path) -> str:
    """What makes a staged view current: every file's path, size, modification time and inode."""
    digest = hashlib.sha256(str(path).encode())
    entries = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in entries:
        st = p.stat()
        name = p.relative_to(path) if p != path else p.name
        digest.update(f"{name}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_mode}".encode())
    return digest.hexdigest()[:32]


def _clone_or_copy(src: Path, dst: Path) -> None:
    try:
        import fcntl

        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
        return
    except OSError:
        pass
    shutil.copyfile(src, dst)


def _place(src: Path, dst: Path) -> None:
    """``dst``: a hard link to ``src`` when others can read it, else a copy readable by all."""
    if not _hidden(src.stat(), False):
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links refused: a copy
            pass
    _clone_or_copy(src, dst)
    dst.chmod(0o444)


def _stage(source: Path, into: Path) -> None:
    """The view of ``source`` (a file or a folder) at ``into``, every folder open to all."""
    if source.is_file():
        _place(source, into)
        return
    into.mkdir(mode=0o755)
    for root, dirs, names in os.walk(source):
        rel = Path(root).relative_to(source)
        for d in dirs:
            (into / rel / d).mkdir(mode=0o755)
        for name in names:
            _place(Path(root) / name, into / rel / name)
    for folder in [into, *(p for p in into.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)  # mkdir's mode is masked by the umask


def staged_view(source: Path, root: Path, before: Callable[[], None] = lambda: None) -> Path:
    """A current readable view of ``source`` under ``root``; ``before`` is called when it must be
    made first. Older views of the same source are removed."""
    slot = root / hashlib.sha256(str(source).encode()).hexdigest()[:16]
    view = slot / _identity(source)
    target = view / source.name
    if target.exists():
        return target
    before()
    slot.mkdir(parents=True, exist_ok=True)
    staging = slot / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(mode=0o755)
    try:
        _stage(source, staging / source.name)
        staging.chmod(0o755)
        try:
            staging.rename(view)
        except OSError:  # another run made it meanwhile
            if not target.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in slot.iterdir():
        if old != view and not old.name.startswith(".staging-"):
            shutil.rmtree(old, ignore_errors=True)
    return target


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def readable_mounts(mounts: list[Mount], root: Path, note: Callable[[str], None]) -> tuple[list[Mount], list[str]]:
    """The mounts with each read-only one whose files its container's user cannot all read replaced
    by a staged view; and what could not be staged (more than MAX_STAGED_FILES files), to refuse."""
    out, refused = [], []
    for mount in mounts:
        hidden = find_hidden(mount.host) if mount.read_only else Hidden([], 0, 0)
        if not hidden.paths:
            out.append(mount)
            continue
        if hidden.files > MAX_STAGED_FILES:
            refused += hidden.paths
            out.append(mount)
            continue
        shown = ", ".join(Path(p).name for p in hidden.paths[:3]) + (" ..." if len(hidden.paths) > 3 else "")

        def say(shown: str = shown, hidden: Hidden = hidden, host: str = mount.host) -> None:
            note(
                f"{host}: {shown} readable by its owner only: staging a readable copy for the container "
                f"({_size(hidden.file_bytes)}, once, in {root}) ..."
            )

        out.append(Mount(str(staged_view(Path(mount.host), root, say)), mount.target, read_only=True))
    return out, refused
