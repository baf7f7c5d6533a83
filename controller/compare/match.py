"""Which runs of campaign A and campaign B measure the same thing.

Cells are matched on what runs (mode, model, model size, image, engine, provider, conversion,
batch size). A matched pair is comparable only when it also ran on the same kind of host (CPU
model, GPUs) and did the same work (samples or prompts, dataset, weights); engine options may
differ (that is what a change under test often is) and are said. A cell measured for a requested
duration on either side does as many samples as fit in it, so its sample count is no part of its
identity: such cells are judged per sample. The configuration's name plays
no part: a campaign copied under another name still matches; except where each side runs a cell
under several configurations of the same names (the candidates of ``advise``, which differ in
engine options only): those are matched configuration by configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from controller.report.cells import groups, model_label

KEY = ("serving", "model", "model_size", "image", "engine", "provider", "conversion", "batch_size")
HOST_KIND = ("cpu_model", "gpu_names")
WORK = ("samples", "prompts", "dataset", "weights")


@dataclass
class Pair:
    key: tuple[Any, ...]
    label: str
    a: pl.DataFrame | None
    b: pl.DataFrame | None
    problem: str = ""  # why the pair is not comparable, whatever the numbers
    notes: list[str] = field(default_factory=list)


def label_of(key: tuple[Any, ...], runs: pl.DataFrame) -> str:
    serving, model, size, image, engine, provider, conversion, batch = key[: len(KEY)]
    confs = "/".join(sorted(set(runs["configuration"].to_list())))
    where = "serving" if serving else f"b{batch}"
    via = f" {conversion}" if conversion else ""
    return f"{model_label(model, size)} {where} {image}:{engine}/{provider}{via} [{confs}]"


def _values(frame: pl.DataFrame, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return sorted({tuple(r) for r in frame.select(*columns).iter_rows()}, key=str)


def _describe(values: list[tuple[Any, ...]], columns: tuple[str, ...]) -> str:
    return " | ".join(
        ", ".join(f"{c} {v}" for c, v in zip(columns, vals, strict=True) if v is not None) for vals in values
    )


def _options(frame: pl.DataFrame) -> str:
    found = sorted(set(frame["options"].to_list()))
    return " | ".join(", ".join(f"{k}={v}" for k, v in json.loads(o or "{}").items()) or "defaults" for o in found)


def check(pair: Pair) -> None:
    """Fill in why a matched pair is not comparable, and what differs without preventing it."""
    if pair.a is None or pair.b is None:
        pair.problem = f"only in {'A' if pair.b is None else 'B'}: no such cell on the other side"
        return
    for side, frame in (("A", pair.a), ("B", pair.b)):
        if frame["configuration"].n_unique() > 1:
            pair.problem = (
                f"{frame['configuration'].n_unique()} configurations of side {side} run the same cell "
                f"({', '.join(sorted(set(frame['configuration'].to_list())))}): compare them one at a time"
            )
            return
    timed = bool(pair.a["duration_mode"].any() or pair.b["duration_mode"].any())
    work = tuple(c for c in WORK if not (timed and c == "samples"))
    for what, columns in (("host kind", HOST_KIND), ("work", work)):
        va, vb = _values(pair.a, columns), _values(pair.b, columns)
        if va != vb:
            pair.problem = f"{what} differs: A {_describe(va, columns)}; B {_describe(vb, columns)}"
            return
    oa, ob = _options(pair.a), _options(pair.b)
    if oa != ob:
        pair.notes.append(f"engine options differ: A {oa}; B {ob}")


def _by_configuration(
    key: tuple[Any, ...], fa: pl.DataFrame | None, fb: pl.DataFrame | None
) -> list[tuple[tuple[Any, ...], pl.DataFrame | None, pl.DataFrame | None]]:
    """A cell that several configurations of each side run under the same names (``advise``'s
    candidates, which differ in engine options only) is matched configuration by configuration."""
    if fa is None or fb is None:
        return [(key, fa, fb)]
    names_a, names_b = set(fa["configuration"].to_list()), set(fb["configuration"].to_list())
    if len(names_a) < 2 or names_a != names_b:
        return [(key, fa, fb)]
    return [
        ((*key, name), fa.filter(pl.col("configuration") == name), fb.filter(pl.col("configuration") == name))
        for name in sorted(names_a)
    ]


def pairs(a: pl.DataFrame, b: pl.DataFrame) -> list[Pair]:
    """Every cell of either side, matched where the other side has it, in a stable order."""
    by_a = dict(groups(a, list(KEY)))
    by_b = dict(groups(b, list(KEY)))
    out = []
    for cell in sorted(set(by_a) | set(by_b), key=lambda k: tuple(str(x) for x in k)):
        for key, fa, fb in _by_configuration(cell, by_a.get(cell), by_b.get(cell)):
            frame = fa if fa is not None else fb
            assert frame is not None
            pair = Pair(key, label_of(key, frame), fa, fb)
            check(pair)
            out.append(pair)
    return out
