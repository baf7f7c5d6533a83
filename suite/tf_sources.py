"""Model sources that TensorFlow loads: a Keras ``.keras`` file or a SavedModel folder (imported
only inside a TensorFlow environment). Inputs are fed in the layout the model declares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from suite.tf_models import WeightsUnavailable


def input_specs(source: dict[str, Any], batch: int | None) -> list[Any]:
    """One tf.TensorSpec per input, named as the source names it; ``batch`` None: a dynamic batch."""
    import tensorflow as tf

    return [tf.TensorSpec((batch, *s["shape"]), tf.as_dtype(s["dtype"]), name=s["name"]) for s in source["inputs"]]


def load_source(source: dict[str, Any]) -> tuple[Any, Callable[..., Any]]:
    """(the loaded object, kept alive by the caller; a call taking one input tensor or a dict of them,
    returning the first output)."""
    import tensorflow as tf

    path, kind = source["path"], source["kind"]
    try:
        if kind == "keras":
            import keras

            model = keras.saving.load_model(path, compile=False)
            return model, lambda x: _first(model(x, training=False))
        if kind == "savedmodel":
            loaded = tf.saved_model.load(path)
            fn = loaded.signatures[source.get("signature") or "serving_default"]
            first = sorted(fn.structured_outputs)[0]
            return loaded, lambda x: fn(**x)[first]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailable(f"TensorFlow cannot load {source['label']}: {first_line[:400]}") from None
    raise WeightsUnavailable(f"the tensorflow engine loads Keras files and SavedModels, not {kind} ({source['label']})")


def feed(source: dict[str, Any], batch: dict[str, Any]) -> Any:
    """What the call takes: a SavedModel signature its inputs by name; a Keras model one tensor, or a dict."""
    if source["kind"] == "keras" and len(source["inputs"]) == 1:
        return batch[source["inputs"][0]["name"]]
    return batch


def _first(output: Any) -> Any:
    while isinstance(output, (list, tuple, dict)):
        output = next(iter(output.values())) if isinstance(output, dict) else output[0]
    return output
