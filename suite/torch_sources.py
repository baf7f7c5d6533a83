"""Model sources that torch loads: a transformers folder through its AutoModelFor... class (imported
only inside a torch environment)."""

from __future__ import annotations

from typing import Any

import torch

from suite.torch_models import WeightsUnavailable


def load_source(source: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """The source's model in eval mode, float32, without a generation cache (one forward per batch)."""
    if source["kind"] != "hf":
        raise WeightsUnavailable(
            f"the torch engines load transformers folders, not {source['kind']} ({source['label']})"
        )
    import transformers

    name = source.get("auto_class", "AutoModel")
    cls = getattr(transformers, name, None)
    if cls is None:
        raise WeightsUnavailable(f"transformers {transformers.__version__} has no {name} to load {source['label']}")
    # Weights the checkpoint lacks (a new head) are initialised at random: seeded, so runs agree.
    torch.manual_seed(seed)
    try:
        model = cls.from_pretrained(source["path"], dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailable(f"transformers cannot load {source['label']} with {name}: {first[:400]}") from None
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    return model.eval()


class PositionalFirst(torch.nn.Module):
    """The model fed its inputs positionally (in the source's order), giving its first output only:
    the form exporters and tracers take, with graph inputs named as the source names them."""

    def __init__(self, inner: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.inner = inner
        self.names = names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        out = self.inner(**dict(zip(self.names, args, strict=True)), return_dict=False)
        return out[0] if isinstance(out, (tuple, list)) else out
