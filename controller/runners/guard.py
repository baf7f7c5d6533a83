"""``python -m controller.runners.guard FD harness ARGS``: ``python -m harness ARGS``, ended with its
controller.

The local runner starts the harness in its own session (so that a kill takes its children too),
which also keeps it alive when its controller dies. This guard closes that gap: the controller
holds the write end of a pipe whose read end is ``FD`` here, and never writes to it. When the
controller is gone, however it went (``kill -9`` included), the kernel closes its end; the read
below returns, and the harness's whole process group is killed. Stdlib only; nothing of the
controller is imported.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    # The group is ours only when this process leads it (the local runner starts a new session).
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    fd, module = int(sys.argv[1]), sys.argv[2]
    threading.Thread(target=_watch, args=(fd,), daemon=True, name="joulebench-guard").start()
    sys.argv = [sys.argv[0], *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
