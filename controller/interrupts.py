"""Ctrl-C, SIGTERM and SIGHUP: the first one stops the controller, none can cut its cleanup short.

The first of these signals raises :class:`Interrupted` (a ``KeyboardInterrupt`` that names the
signal) wherever the controller is; from then on the controller is on its way out, removing its
containers and writing the run's record, and later signals only say so: a second Ctrl-C 0.3 s
after the first must not lose the record nor end the process by the signal instead of exit 130.
:func:`signals_deferred` holds even the first signal while a block that must not be cut (the
record's writing, a container's removal) runs, then acts on it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_WHY: dict[int, str] = {
    signal.SIGINT: "by the user (SIGINT, Ctrl-C)",
    signal.SIGTERM: "by SIGTERM (a kill, a scheduler or a shutdown)",
    signal.SIGHUP: "by SIGHUP (its terminal or session closed)",
}


class Interrupted(KeyboardInterrupt):
    """The controller was told to stop by a signal; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class _State:
    first: int | None = None  # the signal that stopped this controller, once one did


def install() -> dict[int, Any]:
    """The controller's handlers for SIGINT, SIGTERM and SIGHUP (the CLI calls this first); the
    handlers they replace, for :func:`restore`."""
    if signal.getsignal(signal.SIGINT) is not _on_signal:
        _State.first = None  # a fresh start (not the CLI after ``python -m controller`` installed them)
    return {int(sig): signal.signal(sig, _on_signal) for sig in HANDLED}


def restore(previous: dict[int, Any]) -> None:
    """The handlers in place before :func:`install` (a controller called in-process, by a test).
    A controller that was interrupted keeps its own: it is on its way out, and a late signal must
    not turn exit 130 into a traceback or a death by that signal."""
    if _State.first is not None:
        return
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def ignore() -> None:
    """From now on these signals change nothing (a process about to exit with its status)."""
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_IGN)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _State.first is not None:
        # Already stopping: the record is being written and containers removed. Say so, once per
        # signal, without Python's buffered streams (a signal handler may interrupt a print).
        os.write(2, f"\n{signal.Signals(signum).name} again: still stopping cleanly (kill -9 to force)\n".encode())
        return
    _State.first = signum
    raise Interrupted(signum)


def signal_of(exc: BaseException | None) -> int:
    """The signal behind an interrupt (SIGINT for a plain KeyboardInterrupt)."""
    return exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)


def interrupted_reason(exc: BaseException | None) -> str:
    """What a run's record says about the interrupt that ended it, naming the signal."""
    return f"interrupted {_WHY.get(signal_of(exc), f'by {signal.Signals(signal_of(exc)).name}')}"


@contextmanager
def signals_deferred() -> Iterator[None]:
    """A block that a Ctrl-C (or SIGTERM, SIGHUP) cannot cut short: a signal is held until the
    block ends, then acted on as it would have been. Outside the main thread signals cannot arrive
    here anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous: dict[int, Any] = {}
    try:
        for sig in map(int, HANDLED):
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            _act_on(received[0], previous.get(received[0]))


def _act_on(signum: int, handler: Any) -> None:
    """What the handler in place before the block would have done with the signal."""
    if callable(handler):
        handler(signum, None)
    elif handler != signal.SIG_IGN:  # the default action of these three signals: stop
        raise Interrupted(signum)
