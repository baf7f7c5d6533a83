"""Blocks: the cells compared with each other, which therefore run on one node.

A campaign's ``block_by`` names the cell fields a block shares (default: model and batch size, so
all configurations of one model and batch size are measured on one machine). Blocks come in the
order of their first cell in the campaign's run order, and keep that order inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.campaigns.spec import Cell

_SHORT = {"batch_size": "b", "repetition": "r"}


def block_key(cell: Cell, block_by: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(cell, k) for k in block_by)


@dataclass
class Block:
    key: tuple[Any, ...]
    label: str
    cells: list[Cell]


def label(key: tuple[Any, ...], block_by: tuple[str, ...]) -> str:
    """``resnet50 b1`` for model and batch size; ``campaign`` for one block of everything."""
    parts = [f"{_SHORT.get(k, '')}{v}" for k, v in zip(block_by, key, strict=True)]
    return " ".join(parts) or "campaign"


def blocks(cells: list[Cell], block_by: tuple[str, ...]) -> list[Block]:
    """``cells`` (in run order) grouped by ``block_by``, each block in the order of its first cell."""
    out: dict[tuple[Any, ...], Block] = {}
    for cell in cells:
        key = block_key(cell, block_by)
        out.setdefault(key, Block(key, label(key, block_by), [])).cells.append(cell)
    return list(out.values())


def makespan(durations: list[float], nodes: int) -> float:
    """Wall time of blocks this long on ``nodes`` nodes, the longest block first to the least loaded
    node: what the dispatcher's queue (longest first, to the next free node) gives when every node is
    as fast."""
    loads = [0.0] * max(1, nodes)
    for d in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)
