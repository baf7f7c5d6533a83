"""The campaign folder's lock: one ``campaign run`` at a time measures and records a campaign.

The lock is the kernel's (``flock`` on ``results/<campaign>/campaign/lock``), taken in one step:
there is no moment in which a file exists but is not yet owned, so an empty, half-written or stale
lock file cannot let two starts through. The kernel drops it when its holder dies, however it
dies (``kill -9`` included), so a lock left by a dead controller is simply free. The file's text
(host, pid, since) only names the holder in the refusal.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from controller.campaigns.spec import Campaign
from controller.errors import UserError

ATTEMPTS = 20  # a lock file replaced under us (its holder released it) is retried this often


@contextmanager
def locked(results: Path, campaign: Campaign, note: Callable[[str], None]) -> Iterator[None]:
    """Hold the campaign folder's lock while the block runs; UserError naming the holder when
    another live controller holds it. ``note`` is kept for the callers' sake (nothing to say now)."""
    from controller.campaigns.history import state_dir

    folder = state_dir(results, campaign)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lock"
    fd = _acquire(path, campaign)
    try:
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(timezone.utc).isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        # Unlinked while still held: a start that opened this file meanwhile sees it replaced and retries.
        try:
            if _same_file(fd, path):
                path.unlink()
        except OSError:
            pass
        os.close(fd)


def _acquire(path: Path, campaign: Campaign) -> int:
    for _ in range(ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UserError(
                f"campaign {campaign.name} is being run by {holder}; wait for it to finish (or stop it)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # its holder released and removed it between our open and our lock: again
    raise UserError(f"could not lock {path}: other controllers kept taking it; try again")


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote (it may not have written yet)."""
    try:
        held = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"process {int(held['pid'])} on {held['host']} since {held.get('since', '?')}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another controller (starting now)"
