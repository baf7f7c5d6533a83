"""Progress of long harness work (a conversion, an export, a model load), shown live by the controller.

Work that takes more than a few seconds says which step it is in and, where it can count, how far
it got: ``report("exporting to ONNX")``, ``report("greedy parity", done=3, total=9, unit="prompts")``.
The harness's entrypoint points :func:`report` at its protocol stream (a ``progress`` line); the
generation process of a model server points it at its pipe to the server, which passes it on. With no
sink (a converter called directly, in tests) a report goes nowhere. Never called inside a measured
window: progress is for the minutes before one.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

Sink = Callable[[dict[str, Any]], None]
# A stage torch.onnx's exporter starts: "[torch.onnx] Obtain model graph for `ResNet(...)` with ...".
TORCH_ONNX_STAGE = r"^\[torch\.onnx\] ([^`✅❌]+?)(?: for `.*)?\.\.\.\s*$"
_sink: Sink | None = None


def set_sink(sink: Sink | None) -> None:
    global _sink
    _sink = sink


def report(step: str, done: int | None = None, total: int | None = None, unit: str = "") -> None:
    """The step the work is in now, and how far it got when it can count."""
    if _sink is None:
        return
    payload: dict[str, Any] = {"step": step}
    if done is not None:
        payload |= {"done": done, "total": total, "unit": unit}
    _sink(payload)


class _Relay:
    """A text stream that passes everything on and reports the lines that name a step."""

    def __init__(self, inner: TextIO, pattern: re.Pattern[str], step: str) -> None:
        self.inner, self.pattern, self.step = inner, pattern, step
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            found = self.pattern.search(line)
            if found:
                report(f"{self.step}: {found.group(1).strip()}")
        return self.inner.write(text)

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextmanager
def relayed_prints(pattern: str, step: str) -> Iterator[None]:
    """While the block runs, lines a library prints that match ``pattern`` (its group 1: the stage)
    are reported as stages of ``step``: torch.onnx's exporter prints ``[torch.onnx] Run decompositions...``."""
    saved = sys.stdout
    sys.stdout = _Relay(saved, re.compile(pattern), step)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = saved
