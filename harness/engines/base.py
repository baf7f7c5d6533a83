"""The interface every engine adapter implements."""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from typing import Any

from harness.options import OptionError, flag
from harness.protocol import RunSpec


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (absent ones are left out)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


class EngineError(RuntimeError):
    """A run that cannot go on for a reason worth telling the user (not a harness bug)."""


def option_flag(options: dict[str, Any], key: str, default: bool) -> bool:
    """A yes/no engine option (``--option key=VALUE``); anything else is refused, not guessed."""
    try:
        return flag(options, key, default)
    except OptionError as exc:
        raise EngineError(str(exc)) from None


def model_file(spec: RunSpec, engine: str, formats: str) -> str:
    """The file an engine loads: the run's converted artifact, else the model source's own file."""
    import os

    if spec.artifact and spec.artifact_root:
        path = os.path.join(spec.artifact_root, spec.artifact)
        where = "is the artifact cache mounted?"
    elif spec.model_source is not None:
        path = str(spec.model_source["path"])
        where = "is the model mounted?"
    else:
        raise EngineError(f"{engine} needs {formats}; the controller passed neither an artifact nor a model file")
    if not os.path.isfile(path):
        raise EngineError(f"model file {path} not found ({where})")
    return path


def first_output(output: Any) -> Any:
    """The first tensor of a model's outputs: a tuple or list, a dict (or transformers' ModelOutput)."""
    while isinstance(output, (tuple, list, dict)):
        output = next(iter(output.values())) if isinstance(output, dict) else output[0]
    return output


class Engine(ABC):
    """Load a model, move prepared inputs where the engine wants them, run one batch.

    ``infer`` is the only call inside the timed window; it must return only once the results
    exist (device synchronised), so a latency around it is the batch's real latency.
    """

    name = "?"
    packages: tuple[str, ...] = ("numpy",)
    # "compute": host<->device copies are outside the window; "end-to-end": inside it.
    timing_scope = "compute"
    # What ``compile`` does, for the record (e.g. "torch.compile, first call"); None when the
    # engine runs the model as loaded and has no separate build or compile step.
    compile_step: str | None = None

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    @abstractmethod
    def load(self) -> None:
        raise NotImplementedError

    def compile(self, example: Any) -> None:
        """Build or compile for inputs like ``example`` (one prepared batch).

        Timed on its own, after load and before warm-up, so that engine builds (TensorRT),
        just-in-time compilation (torch.compile, XLA) and algorithm searches (cuDNN) neither
        hide in the load time nor leak into the measured window.
        """
        return None  # an engine without a build step runs the model as loaded

    def prepare(self, batch: Any) -> Any:
        """Turn a numpy batch into what ``infer`` takes (outside the timed window)."""
        return batch

    @abstractmethod
    def infer(self, prepared: Any) -> Any:
        raise NotImplementedError

    def to_numpy(self, output: Any) -> Any:
        return output

    def providers_active(self) -> list[str]:
        return [self.spec.provider]

    def options_used(self) -> dict[str, Any]:
        """Options that change results or speed, as actually applied (recorded)."""
        return {}

    def versions(self) -> dict[str, str]:
        return package_versions(*self.packages)
