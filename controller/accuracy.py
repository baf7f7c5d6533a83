"""Top-1 accuracy from the predicted and true labels the harness returns (no framework needed)."""

from __future__ import annotations

from typing import Any

RANDOM_WARNING = "random (seeded, untrained) weights: this accuracy is meaningless"


def accuracy(result: dict[str, Any], weights: str) -> dict[str, Any]:
    """The ``metrics.accuracy`` entry of a record: a value with n, or unavailable with the reason.

    ``value`` is a fraction (0..1) of the distinct samples measured whose top-1 prediction equals
    their label; ``meaningful`` is False (with a warning) when the weights were random.
    """
    dataset = result.get("dataset", "synthetic")
    predictions, labels = result.get("predictions"), result.get("labels")
    if predictions is None and labels is None:
        reason = (
            "not applicable: synthetic inputs"
            if dataset == "synthetic"
            else f"not computed: the harness returned no labels for dataset {dataset}"
        )
        return {"available": False, "reason": reason, "dataset": dataset}
    if (
        not isinstance(predictions, list)
        or not isinstance(labels, list)
        or len(predictions) != len(labels)
        or not all(isinstance(v, int) for v in predictions + labels)
    ):
        return {
            "available": False,
            "reason": "not computed: the harness returned predictions and labels of differing length or type",
            "dataset": dataset,
        }
    if not labels:
        return {"available": False, "reason": "not computed: no labelled sample was measured", "dataset": dataset}
    correct = sum(1 for p, t in zip(predictions, labels, strict=True) if p == t)
    entry: dict[str, Any] = {
        "available": True,
        "value": correct / len(labels),
        "unit": "fraction",
        "kind": "top-1",
        "n": len(labels),
        "correct": correct,
        "dataset": dataset,
        "meaningful": weights != "random",
    }
    if weights == "random":
        entry["warning"] = RANDOM_WARNING
    return entry


def describe(entry: dict[str, Any] | None) -> str | None:
    """One summary line, or None when the record has no accuracy entry."""
    if not entry:
        return None
    if not entry.get("available"):
        return f"accuracy   {entry.get('reason')}"
    line = f"accuracy   {entry['value']:.2%} top-1 on {entry['n']} samples of {entry['dataset']}"
    if entry.get("warning"):
        line += f"  (warning: {entry['warning']})"
    return line
