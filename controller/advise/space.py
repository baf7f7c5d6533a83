"""The space: every image and engine that can run the model on this host (``models inspect``'s verdicts
and ``campaign plan``'s readiness, so the answer agrees with both), crossed with the settings that
change energy there (threads, batch size or concurrency, the engine's knobs, precision), and what
was left out and why."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from controller.advise import knobs as K
from controller.advise.campaign import campaign_text, load_text
from controller.advise.candidate import Candidate, candidate_name
from controller.advise.request import AdviseRequest
from controller.errors import UserError
from controller.images import Manifest, load_manifests


@dataclass(frozen=True)
class Exclusion:
    what: str  # "tf-cpu", "onnx-cpu/onnxruntime int8", ...
    reason: str


@dataclass
class Space:
    request: AdviseRequest
    candidates: list[Candidate]
    exclusions: list[Exclusion]
    runner: str  # docker or local, as readiness chose
    runner_note: str
    dimensions: list[str] = field(default_factory=list)  # what is crossed, in words

    def candidate(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)


def _images(req: AdviseRequest, manifests: dict[str, Manifest]) -> list[str]:
    if req.images is None:
        return sorted(manifests)
    unknown = [i for i in req.images if i not in manifests]
    if unknown:
        raise UserError(f"--images: unknown image(s) {', '.join(unknown)}; images: {', '.join(sorted(manifests))}")
    return list(req.images)


def _batch_engines(
    req: AdviseRequest, images: list[str], manifests: dict[str, Manifest]
) -> tuple[list[tuple[str, str]], list[Exclusion]]:
    """(image, engine) pairs whose engine can run the model, by ``models inspect``'s verdicts."""
    from controller.models import image_verdicts
    from suite.sources import SourceError, parse_input_shapes, resolve_source

    try:
        source = resolve_source(req.model, parse_input_shapes(list(req.input_shapes)))
    except SourceError as exc:
        raise UserError(str(exc)) from None
    verdicts = image_verdicts(source, manifests)
    routes = source.routes()
    pairs, out = [], []
    for image in images:
        verdict = verdicts[image]
        for engine in manifests[image].engines:
            if req.engines is not None and engine not in req.engines:
                continue
            route = routes.get(engine)
            if route is not None and route.runnable:
                pairs.append((image, engine))
            else:
                how = str(verdict["engines"][engine]).removeprefix("no: ")
                out.append(Exclusion(f"{image}/{engine}", f"cannot run {source.label}: {how}"))
    return pairs, out


def _serving_engines(
    req: AdviseRequest, images: list[str], manifests: dict[str, Manifest]
) -> tuple[list[tuple[str, str]], list[Exclusion]]:
    from controller.serving.settings import EXPORT_FORMATS

    pairs, out = [], []
    for image in images:
        engines = [e for e in manifests[image].engines if req.engines is None or e in req.engines]
        served = [e for e in engines if e in EXPORT_FORMATS]
        if not served and req.images is not None:
            out.append(Exclusion(image, f"serves no language model (its engines: {', '.join(engines) or 'none'})"))
        pairs += [(image, e) for e in served]
    return pairs, out


def _levels(req: AdviseRequest, engine_knobs: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for knob, default in engine_knobs.items():
        if knob in req.fix:
            out[knob] = (req.fix[knob],)
        else:
            out[knob] = req.vary.get(knob, default)
    return out


def _accepts(engine: str, key: str, serving: bool) -> bool:
    from harness.options import ENGINE_OPTIONS, SERVING_ENGINE_OPTIONS, SERVING_OPTIONS

    known = {**SERVING_OPTIONS, **SERVING_ENGINE_OPTIONS.get(engine, {})} if serving else ENGINE_OPTIONS.get(engine, {})
    return key in known and not known[key].internal


def expand(
    req: AdviseRequest, image: str, engine: str, manifest: Manifest, flags: set[str], single_engine: bool
) -> tuple[list[Candidate], list[Exclusion]]:
    """One image and engine crossed with threads, its knobs, its precisions and the batch sizes or
    concurrencies."""
    serving = req.mode == "serving"
    provider = manifest.provider
    thread_key = K.thread_option(engine, provider, serving)
    threads: tuple[int | None, ...] = req.thread_levels if thread_key else (None,)
    knob_levels = _levels(req, K.engine_knobs(engine, provider, serving))
    fixed = {k: v for k, v in req.fix.items() if k not in knob_levels and _accepts(engine, k, serving)}
    fixed |= {
        k: v[0] for k, v in req.vary.items() if k not in knob_levels and len(v) == 1 and _accepts(engine, k, serving)
    }
    extra = {k: v for k, v in req.vary.items() if k not in knob_levels and len(v) > 1 and _accepts(engine, k, serving)}
    knob_levels |= extra
    out: list[Candidate] = []
    dropped: list[Exclusion] = []
    offered = K.precisions(engine, provider, serving, flags)
    full = offered[0]
    amounts = [(None, c) for c in req.concurrency] if serving else [(b, None) for b in req.batch_sizes]
    for precision in offered:
        what = f"{image}/{engine} {precision.name}"
        if req.precisions is not None and precision.name not in req.precisions:
            continue
        if precision.needs:
            dropped.append(Exclusion(what, precision.needs))
            continue
        for t, combo in itertools.product(threads, itertools.product(*knob_levels.values())):
            chosen = dict(zip(knob_levels, combo, strict=True))
            for batch, conc in amounts:
                amount = f"c{conc}" if conc is not None else f"b{batch}"

                def name(
                    p: K.Precision, t: int | None = t, chosen: dict[str, str] = chosen, amount: str = amount
                ) -> str:
                    return candidate_name(image, engine, single_engine, t, chosen, p.name, amount)

                options: dict[str, Any] = {**fixed, **chosen, **precision.options}
                if thread_key and t is not None:
                    options[thread_key] = t
                out.append(
                    Candidate(
                        name=name(precision),
                        image=image,
                        engine=engine,
                        provider=provider,
                        precision=precision.name,
                        reduced=precision.reduced,
                        options=options,
                        threads=t,
                        knobs=chosen,
                        batch_size=batch or 1,
                        concurrency=conc,
                        reference=name(full) if precision.reduced else None,
                    )
                )
    if not thread_key:
        dropped.append(Exclusion(f"{image}/{engine} threads", _no_threads(engine, provider)))
    return out, dropped


def _no_threads(engine: str, provider: str) -> str:
    if provider not in ("cpu", "openvino"):
        return f"not varied: the {provider} provider's work is on the GPU"
    return f"not varied: joulebench sets no thread count for {engine} (it runs with the engine's default)"


def _check_keys(req: AdviseRequest, candidates: list[Candidate]) -> None:
    used = {k for c in candidates for k in c.options}
    unused = [k for k in [*req.vary, *req.fix] if k not in used]
    if unused and candidates:
        raise UserError(
            f"--vary/--fix {', '.join(unused)}: no engine of the space takes "
            f"{'it' if len(unused) == 1 else 'them'} (harness/options.py lists each engine's options)"
        )


def _assess(req: AdviseRequest, candidates: list[Candidate]) -> tuple[dict[str, list[str]], str, str]:
    """Readiness of each candidate on this host (images built, packages, GPU, datasets): name -> reasons."""
    from controller.campaigns.readiness import assess

    if not candidates:
        return {}, req.runner, ""
    campaign = load_text(campaign_text(req, candidates, {}, seed=0))
    assessment = assess(campaign, None if req.runner == "auto" else req.runner)
    reasons = {combo.configuration.name: list(assessment.problems) + combo.reasons for combo in assessment.combos}
    return reasons, assessment.runner, assessment.runner_note


def build_space(req: AdviseRequest) -> Space:
    """Every candidate that can run here, and every exclusion with its reason (nothing runs)."""
    manifests = load_manifests()
    images = _images(req, manifests)
    pairs, exclusions = (_serving_engines if req.mode == "serving" else _batch_engines)(req, images, manifests)
    flags = K.cpu_flags()
    # Readiness per image and engine first (a GPU image here is one line, not one per setting).
    probes = {}
    for image, engine in pairs:
        first, _ = expand(req, image, engine, manifests[image], flags, single_engine=False)
        if first:
            probes[(image, engine)] = first[0]
    host_reasons, runner, note = _assess(req, list(probes.values()))
    candidates: list[Candidate] = []
    for (image, engine), probe in probes.items():
        why = host_reasons.get(probe.name) or []
        if why:
            exclusions.append(Exclusion(f"{image}/{engine}", "; ".join(why)))
            continue
        single = len(manifests[image].engines) == 1
        found, dropped = expand(req, image, engine, manifests[image], flags, single)
        candidates += found
        exclusions += dropped
    _check_keys(req, candidates)
    # Settings can bring their own needs (an INT8 conversion's image, an option an image refuses).
    reasons, runner, note = _assess(req, candidates) if candidates else ({}, runner, note)
    kept = []
    for c in candidates:
        if reasons.get(c.name):
            exclusions.append(Exclusion(c.describe(), "; ".join(reasons[c.name])))
        else:
            kept.append(c)
    exclusions += _never_offered(req, pairs, manifests)
    space = Space(req, kept, exclusions, runner, note)
    space.dimensions = dimensions(req, kept)
    return space


def _never_offered(req: AdviseRequest, pairs: list[tuple[str, str]], manifests: dict[str, Manifest]) -> list[Exclusion]:
    out = []
    for image, engine in pairs:
        why = K.NOT_OFFERED.get((engine, manifests[image].provider))
        if why:
            out.append(Exclusion(f"{image}/{engine} fp16", why))
    if any(manifests[i].gpu for i, _ in pairs) or req.mode == "batch":
        out.append(
            Exclusion(
                "GPU power limit",
                "not in the space: joulebench does not set NVML power limits (it would change the host for every "
                "later run); on a GPU host, measure one per campaign with nvidia-smi -pl set beforehand",
            )
        )
    return out


def dimensions(req: AdviseRequest, candidates: list[Candidate]) -> list[str]:
    """What the space crosses, in words, for the plan."""
    lines = []
    runtimes = list(dict.fromkeys(c.runtime for c in candidates))
    lines.append(f"runtimes: {', '.join(runtimes) or 'none'}")
    threads = sorted({c.threads for c in candidates if c.threads is not None})
    if threads:
        lines.append(f"threads: {', '.join(map(str, threads))}")
    if req.mode == "serving":
        lines.append(f"concurrency: {', '.join(map(str, req.concurrency))}")
    else:
        lines.append(f"batch sizes: {', '.join(map(str, req.batch_sizes))}")
    knob_values: dict[str, list[str]] = {}
    for c in candidates:
        for k, v in c.knobs.items():
            knob_values.setdefault(k, [])
            if v not in knob_values[k]:
                knob_values[k].append(v)
    lines += [f"{k}: {', '.join(v)}" for k, v in knob_values.items()]
    by_runtime: dict[str, list[str]] = {}
    for c in candidates:
        by_runtime.setdefault(c.runtime, [])
        if c.precision not in by_runtime[c.runtime]:
            by_runtime[c.runtime].append(c.precision)
    lines.append("precision: " + "; ".join(f"{r} {', '.join(p)}" for r, p in by_runtime.items()))
    return lines


def grouped(exclusions: list[Exclusion]) -> list[str]:
    """One line per reason, naming everything it left out (a GPU image's engines share one)."""
    by: dict[str, list[str]] = {}
    for e in exclusions:
        by.setdefault(e.reason, []).append(e.what)
    return [f"  {', '.join(whats)}: {reason}" for reason, whats in by.items()]


def fixed_options(candidates: list[Candidate]) -> dict[str, Any]:
    """Options every candidate shares (shown once in the plan)."""
    if not candidates:
        return {}
    common = dict(candidates[0].options)
    for c in candidates[1:]:
        common = {k: v for k, v in common.items() if c.options.get(k) == v}
    return common
