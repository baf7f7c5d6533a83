"""Progress on stderr: what a run or a campaign is doing now, through structured calls.

The pipeline and the campaign call :class:`Progress` methods (a note, a named step, a harness
phase, a cell's start and end); nothing parses text. On a terminal Rich draws a spinner with the
step's name and, for campaigns, a bar with ETA; elsewhere (CI logs, pipes) each call is one plain
line, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


class Progress:
    """One run's progress. Notes are shown once each; steps and phases say what runs now."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._seen: set[str] = set()
        self._console: Any = None
        if self.live:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        """A line worth reading (the runner chosen, a warning); the same text is shown once."""
        if text in self._seen:
            return
        self._seen.add(text)
        self._line(text)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A step that may take a while (an image build, a conversion, a server start)."""
        if self._console is None:
            self._line(f"{name} ...")
            yield
            return
        with self._console.status(name, spinner="dots"):
            yield

    def phase(self, phase: str) -> None:
        """The harness (or server) entered a phase: load, compile, warmup, measure."""
        self._line(f"  {phase} ...")

    def _line(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            print(text, file=self.stream, flush=True)


class Quiet(Progress):
    """Shows nothing (benchmarks, tests that drive the pipeline directly)."""

    def __init__(self) -> None:
        super().__init__(live=False)

    def _line(self, text: str) -> None:
        pass


@dataclass
class Tally:
    """Done / failed / left of a campaign and its ETA."""

    total: int
    first_guess_s: float
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed

    def eta_s(self) -> float:
        finished = self.done + self.failed
        per = (time.monotonic() - self.started) / finished if finished else self.first_guess_s
        return per * self.left


class CampaignProgress(Progress):
    """A campaign: a bar with ETA on a terminal, a counted line per phase elsewhere.

    :meth:`cell` says which run is current; the run's own calls (steps, phases) then describe it.
    """

    def __init__(self, total: int, first_guess_s: float, stream: TextIO | None = None, live: bool | None = None):
        super().__init__(stream, live)
        self.tally = Tally(total, first_guess_s)
        self.current = ""
        self._bar: Any = None
        self._task: Any = None
        if self._console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=False,
            )
            self._task = self._bar.add_task("campaign", total=total)

    def __enter__(self) -> CampaignProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def cell(self, label: str) -> None:
        self.current = label
        self._show("start")

    def finished(self, ok: bool, line: str) -> None:
        if ok:
            self.tally.done += 1
        else:
            self.tally.failed += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.tally.done + self.tally.failed)
        self._line(f"  {'ok' if ok else 'FAILED'}: {line}")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._show(name)
        yield

    def phase(self, phase: str) -> None:
        self._show(phase)

    def _show(self, what: str) -> None:
        t = self.tally
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self.current}: {what}")
            return
        n = t.done + t.failed + 1
        self._line(
            f"[{n}/{t.total}  done {t.done}  failed {t.failed}  left {t.left}  ETA {fmt_duration(t.eta_s())}] "
            f"{self.current}: {what}"
        )
