"""What used to be written twice and had drifted, now said once (issue 25, item 4).

The torch device of a served language model: TorchScriptLM ran an unknown provider on the CPU while
TorchLM refused it; both refuse it now. The language model and the engine are abstract: an adapter
that forgets a step is refused when made, not when the step is first called mid-run.
"""

from __future__ import annotations

import pytest

from harness.engines.base import Engine, EngineError
from harness.protocol import ServeSpec
from harness.serving.lm import LanguageModel, TorchScriptLM, torch_device


def test_an_unknown_provider_is_refused_not_run_on_the_cpu() -> None:
    torch = pytest.importorskip("torch")
    assert torch_device(torch, "cpu").type == "cpu"
    with pytest.raises(EngineError, match="torch serves providers cpu and cuda, not 'rocm'"):
        torch_device(torch, "rocm")


def test_an_adapter_missing_a_step_cannot_be_made() -> None:
    class Half(LanguageModel):
        def load(self) -> None: ...

    class NoInfer(Engine):
        def load(self) -> None: ...

    with pytest.raises(TypeError, match="abstract"):
        Half(ServeSpec.__new__(ServeSpec))  # type: ignore[abstract]
    with pytest.raises(TypeError, match="abstract"):
        NoInfer(None)  # type: ignore[abstract,arg-type]
    assert not TorchScriptLM.__abstractmethods__
