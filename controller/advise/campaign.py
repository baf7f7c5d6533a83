"""The space as an ordinary campaign file: one configuration per candidate, each with the repetitions
the search gave it, so ``campaign run`` on the file written beside the results reruns exactly what
advise ran (and ``report`` and ``compare`` read the folder like any campaign's)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from controller.advise import toml
from controller.advise.candidate import Candidate
from controller.advise.request import AdviseRequest
from controller.campaigns import Campaign, load_campaign_file

ADVISE_DIR = "advise"  # results/<campaign>/advise/: the campaign file, the answer, the plot
CAMPAIGN_FILE = "campaign.toml"


def _model_entry(model: str) -> str:
    """A model path written absolute (the file may be read from elsewhere); a name or hub id as is."""
    path = Path(model).expanduser()
    if model.startswith((".", "/", "~")) or path.exists():
        return str(path.resolve())
    return model


def campaign_text(req: AdviseRequest, candidates: list[Candidate], reps: dict[str, int], seed: int | None) -> str:
    """The campaign file of these candidates, each measured ``reps[name]`` times."""
    model = _model_entry(req.model)
    camp: dict[str, Any] = {
        "name": req.campaign,
        "description": f"advise: {req.model}, {len(candidates)} candidates"
        + (f", goal {req.slo_text}" if req.slo_text else ""),
        "mode": req.mode,
        "repetitions": 1,
        "runner": req.runner if req.runner in ("docker", "local") else "auto",
        "order": "interleaved",
        "seed": seed,
        "timeout_s": float(req.timeout_s),
        "memory": req.memory,
        "interval_s": float(req.interval_s),
        "quiet_wait_s": float(req.quiet_wait_s),
    }
    if req.mode == "batch":
        camp.update(
            model_size=req.model_size,
            weights=req.weights,
            dataset=req.dataset,
            dataset_path=req.dataset_path,
            limit=req.limit,
            samples=req.samples,
            duration_s=req.duration_s,
            warmup=req.warmup,
        )
    header = (
        "# Written by `python -m controller advise`: every candidate of its space, each with the runs the search\n"
        "# gave it. Rerun them with: python -m controller campaign run THIS_FILE --results FOLDER\n"
    )
    parts = [header, toml.table("campaign", camp)]
    matrix: dict[str, Any] = {"models": [model]}
    if req.mode == "batch":
        matrix["batch_sizes"] = [1]
    parts.append(toml.table("matrix", matrix))
    if req.mode == "batch" and req.input_shapes:
        parts.append(toml.table("input_shapes", {model: list(req.input_shapes)}))
    if req.mode == "serving":
        parts.append(toml.table("serving", dict(req.serving)))
    for c in candidates:
        conf: dict[str, Any] = {
            "name": c.name,
            "image": c.image,
            "engine": c.engine,
            "options": dict(c.options),
            "repetitions": reps.get(c.name, 1),
            "note": c.describe(),
        }
        if c.concurrency is None:
            conf["batch_sizes"] = [c.batch_size]
        else:
            conf["concurrency"] = c.concurrency
        parts.append(toml.table("matrix.configurations", conf, array=True))
    return "\n".join(parts)


def load_text(text: str, path: Path | None = None) -> Campaign:
    """The campaign of ``text``, read from ``path`` (written there) or from a scratch file."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return load_campaign_file(path)
    with tempfile.TemporaryDirectory(prefix="joulebench-advise-") as scratch:
        file = Path(scratch) / CAMPAIGN_FILE
        file.write_text(text)
        return load_campaign_file(file)


def advise_dir(req: AdviseRequest) -> Path:
    return req.results / req.campaign / ADVISE_DIR
