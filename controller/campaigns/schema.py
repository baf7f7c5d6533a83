"""Every key a campaign file takes, with the kind of value it takes: checked in one pass when the
file is read, so a wrong type or an absurd count is one line naming the key, never a traceback or
a campaign that starts and hangs. What the values mean together is ``file.py``'s job
(with ``matrix.py`` and ``run_inputs.py``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from controller.errors import UserError
from controller.inputs import COUNTS, MAX_NAME, SECONDS, BadValue, Positive, memory_bytes, path_text
from controller.serving.settings import ServingSettings

Check = Callable[[Any], Any]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise BadValue("a string", value)
    return value


def word(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadValue("a non-empty string", value)
    return value


def name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value) or len(value) > MAX_NAME or value in (".", ".."):
        raise BadValue(f"a name of letters, digits, '.', '_', '+' or '-' (at most {MAX_NAME})", value)
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadValue("true or false", value)
    return value


def choice(*valid: str) -> Check:
    def check(value: Any) -> str:
        if value not in valid:
            raise BadValue(f"one of {', '.join(valid)}", value)
        return str(value)

    return check


def string_like(example: str) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise BadValue(f"a string as serve takes it (e.g. {example!r})", value)
        return value

    return check


def options(value: Any) -> dict[str, Any]:
    """Engine options: a table of scalars (the engine checks names and values)."""
    if not isinstance(value, dict) or not all(
        isinstance(v, (str, int, float, bool)) and not isinstance(v, dict) for v in value.values()
    ):
        raise BadValue("a table of KEY = value (strings, numbers, true/false), e.g. { intra_op_threads = 2 }", value)
    return value


def list_of(item: Check, what: str, unique: bool = False, empty: bool = False) -> Check:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list) or not (value or empty):
            raise BadValue(f"a {'' if empty else 'non-empty '}list of {what}", value)
        out = []
        for k, v in enumerate(value):
            try:
                out.append(item(v))
            except BadValue as exc:
                raise BadValue(f"a list of {what} (item {k + 1}: {exc.expected})", value) from None
        if unique and len(set(out)) != len(out):
            twice = sorted({v for v in out if out.count(v) > 1})
            raise BadValue(f"a list of {what}, each once ({', '.join(map(str, twice))} given twice)", value)
        return out

    return check


def table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadValue("a table", value)
    return value


def memory(value: Any) -> str:
    if not isinstance(value, str):
        raise BadValue("a size as a string, e.g. \"2g\"", value)
    memory_bytes(value)
    return value


UNCERTAINTY_LIMIT = Positive(100, " of percent")  # an energy bound above this share of the figure is flagged
MODEL_IDS = list_of(path_text, "model ids (strings)", unique=True)
BATCH_SIZES = list_of(COUNTS["batch_size"], f"batch sizes ({COUNTS['batch_size'].expected()})", unique=True)

SCHEMA: dict[str, dict[str, Check]] = {
    "campaign": {
        "name": name,
        "description": text,
        "mode": choice("batch", "serving"),
        "repetitions": COUNTS["repetitions"],
        "model_size": word,
        "weights": path_text,
        "dataset": word,
        "dataset_path": path_text,
        "limit": COUNTS["limit"],
        "samples": COUNTS["samples"],
        "duration_s": SECONDS["duration_s"],
        "warmup": COUNTS["warmup"],
        "seed": COUNTS["seed"],
        "runner": choice("auto", "docker", "local"),
        "order": choice("interleaved", "grouped"),
        "timeout_s": SECONDS["timeout_s"],
        "memory": memory,
        "interval_s": SECONDS["interval_s"],
        "keep_trace": boolean,
        "options": options,
        "block_by": list_of(word, "cell fields", unique=True, empty=True),  # []: the whole campaign on one node
        "retries": COUNTS["retries"],
        "quiet_wait_s": SECONDS["quiet_wait_s"],
        "uncertainty_limit": UNCERTAINTY_LIMIT,
    },
    "idle": {
        "policy": choice("stored", "measure-if-missing", "measure", "require"),
        "duration_s": SECONDS["duration_s"],
        "max_age_days": Positive(3650, " of days"),
    },
    "cooldown": {
        "mode": choice("none", "fixed", "gpu-temperature"),
        "seconds": SECONDS["cooldown_s"],
        "max_s": SECONDS["timeout_s"],
        "tolerance_c": Positive(100, " of degrees Celsius"),
        "poll_s": SECONDS["timeout_s"],
    },
    "matrix": {"models": MODEL_IDS, "batch_sizes": BATCH_SIZES, "configurations": list_of(table, "tables")},
    "configuration": {
        "name": name,
        "image": word,
        "engine": word,
        "source": word,
        "options": options,
        "models": MODEL_IDS,
        "batch_sizes": BATCH_SIZES,
        "note": text,
        "repetitions": COUNTS["repetitions"],  # this configuration's own (advise measures some more often)
        "concurrency": COUNTS["concurrency"],  # serving: requests in flight for this configuration
    },
    "datasets": {"dataset": word, "dataset_path": path_text, "limit": COUNTS["limit"]},
    "serving": {
        "prompts": path_text,
        "limit": COUNTS["limit"],
        "seed": COUNTS["seed"],
        "max_new_tokens": COUNTS["max_new_tokens"],
        "concurrency": COUNTS["concurrency"],
        "warmup_requests": COUNTS["warmup_requests"],
        "warmup_s": SECONDS["warmup_s"],
        "cooldown_s": SECONDS["cooldown_s"],
        "request_timeout_s": SECONDS["request_timeout_s"],
        "ready_timeout_s": SECONDS["ready_timeout_s"],
        "slo": string_like("ttft=500ms,tpot=50ms"),
        "synthetic": string_like("input=128,output=64"),
        "ignore_eos": boolean,
        "extra_inputs": table,  # request fields; controller/serving/options.py checks their names
        "load": lambda value: value,  # refused with what to do instead, by run_inputs.py
    },
}
# Every field of ServingSettings is a [serving] key; a field added there must be added here.
assert set(SCHEMA["serving"]) == {f.name for f in fields(ServingSettings)}, "[serving] keys out of step"


def check_table(raw: Any, kind: str, where: str, path: Path) -> dict[str, Any]:
    """``raw`` as a table of known keys whose values are of their kind; UserError names the first that is not."""
    known = SCHEMA[kind]
    if not isinstance(raw, dict):
        raise UserError(f"{path}: {where} must be a table")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        shown = ", ".join(repr(k) if not k.strip() else k for k in unknown)
        raise UserError(f"{path}: unknown key(s) {shown} in {where}; valid keys: {', '.join(sorted(known))}")
    for key, value in raw.items():
        try:
            known[key](value)
        except BadValue as exc:
            raise UserError(f"{path}: {where} {key} must be {exc.expected}, got {_shown(value)}") from None
    return raw


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
