"""What makes two runs comparable: host, GPU/driver, and the image's build or environment."""

from __future__ import annotations

import json
from typing import Any

import polars as pl


def extra_identity(record: dict[str, Any]) -> dict[str, Any]:
    """Identity columns of one record: runs that differ in these are not mixed without --mix."""
    runner = record.get("runner") or {}
    result = record.get("result") or {}
    host = record.get("host") or {}
    devices = (record.get("gpus") or {}).get("devices") or []
    if runner.get("kind") == "docker":
        env = f"{record.get('image')} {runner.get('image_id')}"
    else:
        versions = ",".join(f"{k}=={v}" for k, v in sorted((result.get("versions") or {}).items()))
        env = f"{record.get('image')} local:{host.get('python')}:{versions}"
    own = record.get("model_source") or {}
    node = record.get("cluster") or {}
    return {
        # What the image was installed from (Docker runs): its lock file and its base.
        "lock_sha256": runner.get("lock_sha256"),
        "base_digest": runner.get("base_digest") or runner.get("base_digest_reason"),
        # The machine of a cluster campaign's run (None off a cluster); the node (hostname#node-id),
        # its block, and the nodes that block left (a node loss split it across machines).
        "cluster_host": node.get("hostname") or node.get("node_id"),
        "cluster_node": f"{node.get('hostname')}#{str(node.get('node_id'))[:6]}" if node else None,
        "cluster_block": node.get("block"),
        "cluster_moved": "; ".join(node.get("moved_from") or []) or None,
        # A user's own model is its path (or hub id) and the sha256 of its files: one label, two
        # contents are two models.
        "model_identity": f"{own.get('location')} sha256 {str(own.get('sha256'))[:16]}" if own else record.get("model"),
        "fingerprint_id": host.get("fingerprint_id"),
        "gpu_identity": "; ".join(f"{d.get('name')} {d.get('uuid')} driver {d.get('driver')}" for d in devices)
        or "no GPU",
        "environment": env,
        "versions": json.dumps(result.get("versions") or {}, sort_keys=True),
        "gpu_names": ", ".join(sorted({str(d.get("name")) for d in devices})) or "-",
        "driver": ", ".join(sorted({str(d.get("driver")) for d in devices})) or "-",
    }


def identity_problems(ok: pl.DataFrame) -> list[str]:
    """Why these runs should not share a table: differing host, GPU/driver, or environment per image."""
    problems = host_problems(ok)
    gpus = ok["gpu_identity"].unique().to_list()
    if len(gpus) > 1:
        problems.append(f"{len(gpus)} different GPU/driver sets: {' | '.join(str(g) for g in gpus)}")
    for model, group in ok.group_by("model"):
        versions = sorted({str(v) for v in group["model_identity"].to_list()})
        if len(versions) > 1:
            problems.append(f"model {model[0]} in {len(versions)} different versions: {' | '.join(versions)}")
    for image, group in ok.group_by("image"):
        locks = sorted({str(v) for v in group["lock_sha256"].to_list() if v is not None})
        if len(locks) > 1:
            problems.append(f"image {image[0]} installed from {len(locks)} different lock files: {' | '.join(locks)}")
        envs = sorted(set(group["environment"].to_list()))
        if any(environments_differ(a, b) for i, a in enumerate(envs) for b in envs[i + 1 :]):
            problems.append(f"image {image[0]} in {len(envs)} different builds/environments: {' | '.join(envs)}")
    return problems


def host_problems(ok: pl.DataFrame) -> list[str]:
    """Runs from several hosts: a problem, except for a cluster campaign whose comparisons (the
    configurations of one model and batch size, a block) each stay on one machine."""
    hosts = ok.select("fingerprint_id", "host", "cpu_model").unique()
    if hosts.height <= 1:
        return []
    if ok["cluster_host"].null_count() == 0:
        spread = []
        for (model, batch), group in ok.group_by("model", "batch_size"):
            if group["fingerprint_id"].n_unique() > 1:
                spread.append(f"{model} batch {batch} on {', '.join(sorted(set(group['host'].to_list())))}")
        if not spread:
            return []
        return [f"comparisons measured on several machines of the cluster: {'; '.join(sorted(spread))}"]
    shown = "; ".join(f"{r['host']} ({r['cpu_model']}, fingerprint {r['fingerprint_id']})" for r in hosts.to_dicts())
    return [f"{hosts.height} different hosts: {shown}"]


def cluster_blocks(ok: pl.DataFrame) -> list[str]:
    """Where each block (model, batch size) of a cluster campaign was measured, for the report."""
    if "cluster_host" not in ok.columns or ok["cluster_host"].null_count() == ok.height:
        return []
    rows = ok.filter(pl.col("cluster_host").is_not_null()).group_by("model", "batch_size")
    lines = []
    for (model, batch), group in rows:
        lines.append(f"{model} batch {batch}: {', '.join(sorted(set(group['cluster_host'].to_list())))}")
    return sorted(lines)


def split_blocks(ok: pl.DataFrame) -> list[str]:
    """Blocks of a cluster campaign that a node loss moved after some of their runs: their comparisons
    span two (or more) machines."""
    if "cluster_moved" not in ok.columns:
        return []
    moved = ok.filter(pl.col("cluster_moved").is_not_null() & pl.col("cluster_block").is_not_null())
    lines = []
    for block in sorted(set(moved["cluster_block"].to_list())):
        nodes = sorted(set(ok.filter(pl.col("cluster_block") == block)["cluster_node"].to_list()))
        if len(nodes) > 1:
            lines.append(
                f"block {block} was split across machines by a node loss ({', '.join(nodes)}): its comparisons "
                f"span {len(nodes)} machines"
            )
    return lines


def environments_differ(a: str, b: str) -> bool:
    """Two runs' environments of one image differ: other Docker image ids; or, run locally, another
    Python or another version of a package both report (engines of one image report different
    package sets: torch alone for TorchScript, torch and transformers for serving on torch)."""
    if not (a.split(" ", 1)[-1].startswith("local:") and b.split(" ", 1)[-1].startswith("local:")):
        return a != b

    def parse(env: str) -> tuple[str, dict[str, str]]:
        _, python, versions = env.split(" ", 1)[1].split(":", 2)
        pairs = (item.split("==", 1) for item in versions.split(",") if "==" in item)
        return python, dict(pairs)

    (py_a, va), (py_b, vb) = parse(a), parse(b)
    return py_a != py_b or any(va[k] != vb[k] for k in va.keys() & vb.keys())
