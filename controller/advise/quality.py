"""The quality constraint of a reduced-precision candidate: agreement with the full-precision source.

Where the agreement comes from, best first:

- a labelled dataset (``--dataset``): the top-1 prediction of every sample against its
  full-precision sibling's on the same samples, and the accuracy drop against the sibling's;
- a language model: the greedy tokens the runtime gave at load against transformers' on the
  reference prompts (``result.generation.load_parity``);
- ONNX Runtime's INT8 conversion: its top-1 agreement with the FP32 model on the conversion's fixed
  inputs (``artifact.parity``, recorded, not a gate);
- synthetic inputs: the run's first predictions against the sibling's on the same seeded inputs.

A candidate whose agreement could not be measured is never recommended: it is listed with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from controller.advise.candidate import Candidate

# harness/inputs.py SYNTHETIC_POOL: synthetic runs cycle through this many seeded batches, so the
# first predictions of a batch-1 run repeat after this many samples.
SYNTHETIC_POOL = 4
HEAD = 16  # predictions_head's length (harness/run.py)


@dataclass
class Quality:
    agreement: float | None = None
    n: int | None = None
    basis: str = ""
    accuracy: float | None = None  # a meaningful top-1 accuracy (trained weights, labelled data)
    reference_accuracy: float | None = None
    reason: str = ""  # why the agreement is unknown

    def verdict(self, min_agreement: float, max_drop: float) -> tuple[bool, str]:
        """(admissible, why not) for a reduced-precision candidate."""
        if self.agreement is None:
            return False, f"its agreement with full precision could not be measured ({self.reason})"
        if self.agreement < min_agreement:
            return (
                False,
                f"agreement with full precision {self.agreement:.1%} < {min_agreement:.1%} ({self.n} {self.basis})",
            )
        if self.accuracy is not None and self.reference_accuracy is not None:
            drop = self.reference_accuracy - self.accuracy
            if drop > max_drop:
                return False, (
                    f"accuracy {self.accuracy:.2%} is {100 * drop:.2f} points below full precision's "
                    f"{self.reference_accuracy:.2%} (at most {100 * max_drop:g} allowed)"
                )
        return True, ""

    def describe(self) -> str:
        if self.agreement is None:
            return "n/a"
        return f"{self.agreement:.1%} of {self.n}"

    def lower_bound(self, confidence: float = 0.95) -> float | None:
        """The one-sided lower confidence bound of the agreement (Clopper-Pearson, exact), from the
        ``n`` inputs compared: what so few inputs can vouch for (four that all agree: 47 %)."""
        if self.agreement is None or not self.n:
            return None
        from scipy.stats import beta

        agreed = round(self.agreement * self.n)
        return 0.0 if agreed == 0 else float(beta.ppf(1 - confidence, agreed, self.n - agreed + 1))

    def undecided(self, min_agreement: float, confidence: float = 0.95) -> str:
        """Why the inputs compared cannot show the goal was met, or "" where they can."""
        low = self.lower_bound(confidence)
        if low is None or low >= min_agreement or self.agreement is None or self.agreement < min_agreement:
            return ""
        needed = math.ceil(math.log(1 - confidence) / math.log(min_agreement)) if min_agreement < 1 else None
        more = f"at least {needed} inputs, all agreeing, would decide" if needed else "no inputs can show 100 %"
        return (
            f"{self.n} inputs cannot show agreement ≥ {min_agreement:.1%}: the {confidence:.0%} lower bound of "
            f"{self.agreement:.1%} of {self.n} is {low:.1%} ({more}: a labelled --dataset where the model takes one)"
        )


def _accuracy(record: dict[str, Any]) -> float | None:
    acc = (record.get("metrics") or {}).get("accuracy") or {}
    value = acc.get("value")
    return float(value) if acc.get("available") and acc.get("meaningful") and isinstance(value, (int, float)) else None


def _labelled(record: dict[str, Any], reference: dict[str, Any]) -> Quality | None:
    mine, theirs = (record.get("result") or {}).get("predictions"), (reference.get("result") or {}).get("predictions")
    if not isinstance(mine, list) or not isinstance(theirs, list) or not mine:
        return None
    if len(mine) != len(theirs):
        return Quality(reason=f"its predictions cover {len(mine)} samples, full precision's {len(theirs)}")
    same = sum(1 for a, b in zip(mine, theirs, strict=True) if a == b)
    dataset = (record.get("spec") or {}).get("dataset", "the dataset")
    return Quality(same / len(mine), len(mine), f"samples of {dataset}", _accuracy(record), _accuracy(reference))


def _conversion(record: dict[str, Any]) -> Quality | None:
    parity = (record.get("artifact") or {}).get("parity") or {}
    if parity.get("gated", True) or not isinstance(parity.get("argmax_agreement"), (int, float)):
        return None
    n = parity.get("samples")
    conversion = (record.get("artifact") or {}).get("conversion", "the conversion")
    return Quality(float(parity["argmax_agreement"]), n, f"fixed inputs of {conversion} against the source model")


def _head(record: dict[str, Any], reference: dict[str, Any], batch_size: int) -> Quality | None:
    mine, theirs = (
        (record.get("result") or {}).get("predictions_head"),
        (reference.get("result") or {}).get("predictions_head"),
    )
    if not isinstance(mine, list) or not isinstance(theirs, list):
        return None
    n = min(len(mine), len(theirs), HEAD, SYNTHETIC_POOL * batch_size)
    if n == 0:
        return None
    same = sum(1 for a, b in zip(mine[:n], theirs[:n], strict=True) if a == b)
    return Quality(same / n, n, "synthetic inputs (the runs' first predictions)")


def _serving(record: dict[str, Any]) -> Quality:
    from controller.report.rows import parity_of

    share, _, why, basis = parity_of(record)
    if share is None:
        return Quality(reason=why or "not recorded")
    prompts = ((record.get("result") or {}).get("generation") or {}).get("load_parity", {}).get("prompts")
    what = "reference prompts' greedy tokens against transformers'" if basis == "tokens" else "reference prompts' text"
    return Quality(share, prompts, what)


def quality_of(candidate: Candidate, record: dict[str, Any] | None, reference: dict[str, Any] | None) -> Quality:
    """The quality of ``candidate`` from one of its ok records and its full-precision sibling's."""
    if record is None:
        return Quality(reason="no run of it finished")
    if record.get("mode") == "serving":
        return _serving(record)
    found = _labelled(record, reference) if reference is not None else None
    if found is not None and found.agreement is not None:
        return found
    conversion = _conversion(record)
    if conversion is not None:
        conversion.accuracy = _accuracy(record)
        conversion.reference_accuracy = _accuracy(reference) if reference else None
        return conversion
    if found is not None:
        return found  # the labelled comparison's reason
    if reference is None:
        return Quality(reason=f"its full-precision sibling {candidate.reference or '?'} has no finished run to compare")
    return _head(record, reference, candidate.batch_size) or Quality(reason="the runs returned no predictions")
