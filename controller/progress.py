"""Progress on stderr: what a run or a campaign is doing now, through structured calls.

The pipeline and the campaign call :class:`Progress` methods (a note, a named step, a harness
phase, where the work says it is, a cell's start and end); nothing parses text. On a terminal Rich
draws a spinner with the step's name, where the work stands and the time it has taken, and for
campaigns a bar with ETA; elsewhere (CI logs, pipes) each call is one plain line, so logs stay
readable. Nothing stays still for long: while a step or a phase runs, a line with its elapsed time
(and the work's latest progress) comes at least every :data:`HEARTBEAT_S` seconds, and the
spinner's clock ticks every second.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from harness.protocol import HarnessOutput, ProtocolError, parse_line, progress_text

HEARTBEAT_S = 8.0  # the longest a run's output stays still (goal: under 10 s) while work goes on
TICK_S = 0.5


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _stage(text: str) -> str:
    """A progress text without its count: "greedy parity (3/9 prompts)" -> "greedy parity"."""
    return text.rsplit(" (", 1)[0] if text.endswith(")") else text


def fold_line(line: str, out: HarnessOutput, detail: Callable[[str], None]) -> None:
    """Parse one harness stdout line into ``out`` (ProtocolError as parse_line); a progress line is
    shown through ``detail`` (:meth:`Progress.detail`)."""
    seen = out.progress_lines
    parse_line(line, out, required={})
    if out.progress_lines > seen and out.progress is not None:
        detail(progress_text(out.progress))


def relay_progress(detail: Callable[[str], None]) -> Callable[[str], None]:
    """An Invocation's ``on_line`` for work whose output is parsed at its end (a conversion, an
    export): its progress lines shown live through ``detail``, the rest left for that parse."""
    out = HarnessOutput()

    def on_line(line: str) -> None:
        try:
            fold_line(line, out, detail)
        except ProtocolError:
            pass  # the final parse reports it

    return on_line


class Progress:
    """One run's progress. Notes are shown once each; steps and phases say what runs now, and
    :meth:`detail` where the work inside them stands."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, heartbeat_s: float = HEARTBEAT_S):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.heartbeat_s = heartbeat_s
        self._seen: set[str] = set()
        self._console: Any = None
        self._status: Any = None
        self._lock = threading.RLock()
        self._activity: str | None = None  # the step or phase that runs now
        self._detail: str | None = None  # where the work in it says it is
        self._since = 0.0  # when the activity began
        self._last_out = time.monotonic()  # when a line was last written
        self._ticker: threading.Thread | None = None
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
        previous = self._begin(name)
        try:
            yield
        finally:
            self._restore(previous)

    def phase(self, phase: str) -> None:
        """The harness (or server) entered a phase: load, compile, warmup, measure."""
        name = phase.strip().removesuffix("...").rstrip()
        self._line(f"  {name} ...")
        self._begin(name)

    def detail(self, text: str) -> None:
        """Where the work of the current step stands (relayed from the harness): a new stage is a line
        at once; a count within one shows in the next heartbeat (or on the spinner)."""
        with self._lock:
            previous, self._detail = self._detail, text
            if self._console is None and (previous is None or _stage(previous) != _stage(text)):
                self._line(f"    {text}")
        self._render()

    def idle(self) -> None:
        """Nothing runs now (a run ended): no more heartbeats until the next step or phase."""
        self._restore(None)

    # -- what runs now, and the clock ---------------------------------------------------------

    def _begin(self, name: str) -> tuple[str, float] | None:
        """Make ``name`` the activity; the one it replaces (to restore when a step ends)."""
        with self._lock:
            previous = (self._activity, self._since) if self._activity is not None else None
            self._activity, self._detail, self._since = name, None, time.monotonic()
            self._start_ticker()
        self._render()
        return previous

    def _restore(self, previous: tuple[str, float] | None) -> None:
        with self._lock:
            self._activity, self._since = previous if previous is not None else (None, 0.0)
            self._detail = None
        self._render()

    def _start_ticker(self) -> None:
        """The clock's thread, while an activity runs (it ends when none does)."""
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="joulebench-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(TICK_S)
            with self._lock:
                if not self._tick_once():
                    self._ticker = None
                    return

    def _tick_once(self) -> bool:
        """Move the spinner's clock, or write a heartbeat when the output has been still too long;
        False when nothing runs."""
        with self._lock:
            if self._activity is None:
                return False
            if self._console is not None:
                self._render()
            elif time.monotonic() - self._last_out >= self.heartbeat_s:
                self._line(f"  [{fmt_duration(time.monotonic() - self._since)}] {self._now()}")
            return True

    def _now(self) -> str:
        """What runs now, and where it stands."""
        return f"{self._activity} — {self._detail}" if self._detail else str(self._activity)

    def _render(self) -> None:
        """On a terminal: what runs now, where it stands and its clock (nothing while nothing runs)."""
        if self._console is None:
            return
        with self._lock:
            text = None
            if self._activity is not None:
                # the clock first: a narrow terminal cuts the end of the line
                text = f"[{fmt_duration(time.monotonic() - self._since)}] {self._now()}"
            self._show_live(text)

    def _show_live(self, text: str | None) -> None:
        """A spinner with ``text``; None: no spinner."""
        if text is None:
            if self._status is not None:
                self._status.stop()
                self._status = None
        elif self._status is None:
            self._status = self._console.status(text, spinner="dots")
            self._status.start()
        else:
            self._status.update(text)

    def _line(self, text: str) -> None:
        with self._lock:
            self._last_out = time.monotonic()
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

    def _start_ticker(self) -> None:
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
        self.idle()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.tally.done + self.tally.failed)
        self._line(f"  {'ok' if ok else 'FAILED'}: {line}")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._show(name)
        previous = self._begin(f"{self.current}: {name}")
        try:
            yield
        finally:
            self._restore(previous)

    def phase(self, phase: str) -> None:
        name = phase.strip().removesuffix("...").rstrip()
        self._show(name)
        self._begin(f"{self.current}: {name}")

    def _show_live(self, text: str | None) -> None:
        """The bar's description: the current cell and what it does (the bar is this display's spinner)."""
        if self._bar is not None and text is not None:
            self._bar.update(self._task, description=text)

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
