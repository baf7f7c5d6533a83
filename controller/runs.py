"""One run, end to end: validate, resolve artifacts, pick a runner, execute, write the record."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller import hostinfo
from controller.accuracy import accuracy
from controller.accuracy import describe as describe_accuracy
from controller.artifacts import (
    ARTIFACT_MOUNT,
    CONTAINER_UID,
    WEIGHTS_MOUNT,
    Artifact,
    ConversionFailed,
    conversion_for,
    ensure_artifact,
)
from controller.errors import UserError
from controller.images import Manifest, get_manifest
from controller.meters import MeterSession, host_fingerprint, load_baseline
from controller.record import (
    SCHEMA_VERSION,
    new_run_id,
    record_path,
    timing_metrics,
    write_atomic,
)
from controller.runners.base import Execution, Invocation, Mount
from harness.protocol import (
    PROTOCOL_VERSION,
    HarnessOutput,
    ProtocolError,
    RunSpec,
    parse_line,
    parse_stream,
)
from suite.models import WEIGHTS_KINDS, get_model


@dataclass
class RunRequest:
    image: str
    model: str
    engine: str | None = None
    source: str | None = None  # framework whose model definition is converted (converted runs)
    model_size: str = "full"
    weights: str = "random"
    dataset: str = "synthetic"
    dataset_path: Path | None = None  # file or folder of a dataset that needs one (suite/datasets)
    limit: int | None = None  # a seeded subset of the dataset
    batch_size: int = 1
    samples: int | None = None
    duration_s: float | None = None
    warmup: int = 5
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    runner: str = "auto"
    results: Path = Path("results")
    campaign: str = "default"
    timeout_s: float = 1800.0
    memory: str | None = None
    cache: Path | None = None
    # Meters
    interval_s: float = 0.01
    keep_trace: bool = False
    wall_url: str | None = None
    wall_output: int | None = None
    baseline: Path | None = None  # idle baseline file (default: the one for this host)
    baseline_max_age_s: float = 7 * 86400
    # A campaign's cell identity (matrix coordinates + repetition), recorded for resume.
    cell: dict[str, Any] | None = None


def validate(req: RunRequest) -> tuple[Manifest, str, str, Path | None]:
    """(manifest, engine, weights kind, weights file) or UserError naming what is valid."""
    manifest = get_manifest(req.image)
    engine = req.engine or manifest.engines[0]
    if engine not in manifest.engines:
        raise UserError(
            f"image {req.image} does not serve engine {engine!r}; valid engines for it: {', '.join(manifest.engines)}"
        )
    if manifest.unsupported:
        raise UserError(f"image {req.image} cannot run here: {manifest.unsupported}")
    try:
        info = get_model(req.model)
        info.size(req.model_size)
    except KeyError as exc:
        raise UserError(str(exc).strip("'\"")) from None
    if req.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {req.batch_size}")
    if req.samples is not None and req.samples < 1:
        raise UserError(f"--samples must be at least 1, got {req.samples}")
    if req.duration_s is not None and req.duration_s <= 0:
        raise UserError(f"--duration must be positive, got {req.duration_s}")
    if req.warmup < 0:
        raise UserError(f"--warmup must be 0 or more, got {req.warmup}")
    if "model_format" in req.options:
        fmt = str(req.options["model_format"]).lower()
        if engine != "openvino" or fmt not in MODEL_FORMATS:
            raise UserError(
                f"--option model_format={req.options['model_format']} applies to the openvino engine only, "
                f"with one of {', '.join(MODEL_FORMATS)} (onnx: read the ONNX artifact; ir: convert it to OpenVINO IR)"
            )
    weights_file = None
    kind = req.weights
    if kind not in ("random", "pretrained"):
        weights_file = Path(req.weights).expanduser().resolve()
        if not (weights_file.is_file() or weights_file.is_dir()):
            raise UserError(
                f"--weights {req.weights!r} is neither {' nor '.join(WEIGHTS_KINDS[:2])} nor an existing file "
                "or model folder"
            )
        kind = "path"
    return manifest, engine, kind, weights_file


MODEL_FORMATS = ("onnx", "ir")


def wants_ir(engine: str, options: dict[str, Any]) -> bool:
    """Whether an OpenVINO run asked for OpenVINO IR (onnx2openvino) rather than reading ONNX."""
    return engine == "openvino" and str(options.get("model_format", "onnx")).lower() == "ir"


TRT_CACHE_MOUNT = "/trt-cache"


def tensorrt_cache(cache_root: Path, runner: Any) -> Path:
    """The host folder for TensorRT engine and timing caches, writable by the container's user."""
    folder = cache_root.parent / "tensorrt"
    if not folder.is_dir():
        folder.mkdir(parents=True, mode=0o755)
        if runner.kind == "docker" and os.getuid() == 0:
            os.chown(folder, CONTAINER_UID, CONTAINER_UID)
    return folder


# Native engines and the framework whose definition (and preprocessing) they run.
NATIVE_SOURCES = {"torch": "torch", "torch-compile": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet"}
CONVERSION_SOURCES = {"torch": "torch", "tf": "tensorflow", "mx": "mxnet"}


def model_source(engine: str, conversion: str | None) -> str | None:
    """The framework whose model definition a run executes (natively or converted)."""
    if conversion is not None:
        return CONVERSION_SOURCES.get(conversion.split("2", 1)[0])
    return NATIVE_SOURCES.get(engine)


def validate_dataset(req: RunRequest) -> tuple[Path | None, int | None]:
    """(resolved dataset path, samples it yields) or UserError saying what was expected."""
    from suite.datasets import DatasetError, check, get_dataset

    path = Path(req.dataset_path).expanduser().resolve() if req.dataset_path is not None else None
    try:
        info = get_dataset(req.dataset)
        model = get_model(req.model)
        if info.task is not None and info.task != model.task:
            raise UserError(f"dataset {req.dataset} serves {info.task} models; {req.model} is a {model.task} model")
        size = check(req.dataset, path, req.limit, req.seed)
    except DatasetError as exc:
        raise UserError(str(exc)) from None
    return path, size


def dataset_mount(path: Path) -> Mount:
    """Read-only mount of a dataset: a folder or a table as is; a file list with its folder (its
    relative paths point there)."""
    from suite.datasets import DATASET_MOUNT

    if path.is_file() and path.suffix.lower() not in (".csv", ".parquet"):
        return Mount(str(path.parent), f"{DATASET_MOUNT}/{path.parent.name or 'root'}")
    return Mount(str(path), f"{DATASET_MOUNT}/{path.name}")


def choose_runner(kind: str, images: list[str], say: Callable[[str], None]) -> Any:
    """The runner asked for; ``auto``: Docker when an engine answers and the images exist or build."""
    from controller.runners.local import LocalRunner

    if kind == "local":
        return LocalRunner()
    from controller.runners.docker_runner import DockerRunner, connect

    if kind == "docker":
        runner = DockerRunner()
        for image in images:
            runner.image(image)
        return runner
    if kind != "auto":
        raise UserError(f"unknown runner {kind!r}; valid runners: auto, docker, local")
    try:
        client = connect()
    except UserError:
        say("runner: local (no Docker engine answers)")
        return LocalRunner()
    runner = DockerRunner(client)
    for image in images:
        try:
            runner.image(image)
        except UserError:
            if not _build_for_auto(client, image, say):
                return LocalRunner()
    say("runner: docker")
    return runner


def warn_stale(runner: Any, images: list[str], say: Callable[[str], None]) -> None:
    if runner.kind != "docker":
        return
    for image in images:
        if runner.describe(image)["image_stale"]:
            say(
                f"warning: image {image} was built from other harness/suite sources than this "
                f"checkout's; rebuild it: python -m controller images build {image}"
            )


def _build_for_auto(client: Any, image: str, say: Callable[[str], None]) -> bool:
    """Build a missing image with this host's pip settings; False (and why) when that fails."""
    import docker.errors

    from controller.images import build_image, host_pip_config

    manifest = get_manifest(image)
    say(f"image {manifest.tag} is not built: building it now (first use; this takes minutes) ...")
    try:
        build_image(client, manifest, pip_config=host_pip_config(), say=lambda _: None)
    except (UserError, docker.errors.DockerException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        say(f"runner: local (building {image} failed: {first}; see `python -m controller images build --help`)")
        return False
    return True


class PhaseDisplay:
    """Shows the harness's phases live on stderr as they arrive."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.output = HarnessOutput()
        self.last_phase: str | None = None

    def __call__(self, line: str) -> None:
        try:
            before = len(self.output.events)
            parse_line(line, self.output, required={})
        except ProtocolError:
            return  # the final parse reports it
        if len(self.output.events) > before:
            event = self.output.events[-1]
            if event["edge"] == "start":
                self.last_phase = event["phase"]
                self.say(f"  {event['phase']} ...")


def execute(req: RunRequest, say: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """Run once and write the record; returns (record, path). Failed runs are records too."""
    from controller.artifacts import default_cache

    manifest, engine, weights_kind, weights_file = validate(req)
    dataset_path, dataset_size = validate_dataset(req)
    if req.samples is None and req.duration_s is None:
        # A labelled dataset is measured once through; synthetic inputs 64 samples.
        req.samples = dataset_size or 64
    conversion = conversion_for(engine, req.model, req.source)
    source = model_source(engine, conversion[0] if conversion else None)
    if conversion is None and source is not None and source not in get_model(req.model).sources:
        raise UserError(
            f"{req.model} has no {source} definition, so engine {engine} cannot run it; "
            f"it is defined for: {', '.join(get_model(req.model).sources)}"
        )
    fingerprint = host_fingerprint()
    if manifest.gpu and not hostinfo.gpus(fingerprint)["available"]:
        raise UserError(
            f"image {req.image} ({engine} on {manifest.provider}) needs an NVIDIA GPU and this host has none "
            f"that NVML can see ({hostinfo.gpus(fingerprint)['reason']}); run it on a GPU host, or use a CPU "
            "image (python -m controller images list)"
        )
    images = [req.image] + ([conversion[1]] if conversion else [])
    runner = choose_runner(req.runner, images, say)
    warn_stale(runner, images, say)
    cache = req.cache or default_cache()
    run_id = new_run_id()
    started = datetime.now(timezone.utc).isoformat()
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "run_id": run_id,
        "campaign": req.campaign,
        "cell": req.cell,
        "started_at": started,
        "image": req.image,
        "engine": engine,
        "provider": manifest.provider,
        "model": req.model,
        "model_size": req.model_size,
        "conversion": conversion[0] if conversion else None,
        "weights": weights_kind,
        "weights_label": ("random (seeded, not trained: accuracy meaningless)" if weights_kind == "random" else None),
    }
    record["host"] = hostinfo.host(fingerprint)
    record["gpus"] = hostinfo.gpus(fingerprint)
    path = record_path(req.results, req.campaign, run_id)

    artifact: Artifact | None = None
    try:
        if conversion is not None:
            artifact = ensure_artifact(
                runner,
                cache,
                conversion[0],
                conversion[1],
                req.model,
                req.model_size,
                weights_kind,
                weights_file,
                req.seed,
                req.timeout_s,
                say,
            )
        if artifact is not None and wants_ir(engine, req.options):
            # Second step of the chain: the ONNX artifact to OpenVINO IR, in the OpenVINO image.
            artifact = ensure_artifact(
                runner,
                cache,
                "onnx2openvino",
                req.image,
                req.model,
                req.model_size,
                weights_kind,
                None,
                req.seed,
                req.timeout_s,
                say,
                source=artifact,
            )
    except ConversionFailed as exc:
        record |= {
            "runner": runner.describe(req.image),
            "status": "failed",
            "failure": {
                "phase": "convert",
                "reason": exc.reason,
                "exit_code": None,
                "log_tail": exc.log_tail,
            },
        }
        write_atomic(path, record)
        return record, path

    mounts = []
    cache_mount = Mount(str(cache), ARTIFACT_MOUNT)
    if artifact is not None:
        # Only this run's artifact is mounted (read-only): the container sees nothing else of
        # the cache, and the cache's parents need not be readable by the container's user.
        mounts.append(Mount(str(cache / artifact.key), f"{ARTIFACT_MOUNT}/{artifact.key}"))
    weights_in = None
    # A converted run needs the weights no more, except a model folder's tokenizer for text data.
    if weights_file is not None and (artifact is None or weights_file.is_dir()):
        wm = Mount(str(weights_file), f"{WEIGHTS_MOUNT}/{weights_file.name}")
        mounts.append(wm)
        weights_in = runner.path_for(wm)
    dataset_in = None
    if dataset_path is not None:
        dm = dataset_mount(dataset_path)
        mounts.append(dm)
        inside = runner.path_for(dm)
        dataset_in = inside if dm.host == str(dataset_path) else f"{inside}/{dataset_path.name}"
    options = dict(req.options)
    if manifest.provider == "tensorrt":
        # TensorRT engines are built for one GPU and TensorRT version: keep them on a writable
        # volume so that each is built once (the build is timed as the run's compile step).
        tm = Mount(str(tensorrt_cache(cache, runner)), TRT_CACHE_MOUNT, read_only=False)
        mounts.append(tm)
        options.setdefault("trt_cache_dir", runner.path_for(tm))
    spec = RunSpec(
        run_id=run_id,
        engine=engine,
        provider=manifest.provider,
        model=req.model,
        model_size=req.model_size,
        weights=weights_kind,
        dataset=req.dataset,
        dataset_path=dataset_in,
        limit=req.limit,
        source=source,
        batch_size=req.batch_size,
        samples=req.samples,
        duration_s=req.duration_s if req.samples is None else None,
        warmup=req.warmup,
        seed=req.seed,
        artifact=artifact.relpath if artifact else None,
        artifact_root=runner.path_for(cache_mount) if artifact else None,
        weights_path=weights_in,
        options=options,
    )
    record["spec"] = asdict(spec)
    record["artifact"] = (
        {"key": artifact.key, "path": artifact.relpath, "reused": artifact.reused, **artifact.meta}
        if artifact
        else None
    )
    display = PhaseDisplay(say)
    baseline = load_baseline(req.baseline, fingerprint=fingerprint, max_age_s=req.baseline_max_age_s)
    meters = MeterSession(
        req.interval_s,
        gpu_uuids=None if manifest.gpu else [],  # a CPU image's run is not charged for GPUs
        wall_url=req.wall_url,
        wall_output=req.wall_output,
        baseline=baseline,
        keep_trace=req.keep_trace,
    )
    if not baseline.usable:
        say(f"idle baseline {baseline.status}: {baseline.reason} (energies are gross only)")
    say(f"running {req.model} on {req.image}/{engine} ({runner.kind}) ...")
    t0 = time.monotonic()
    meters.start()
    try:
        execution = runner.execute(
            Invocation(
                image=req.image,
                argv=["run", "--spec", spec.to_json()],
                timeout_s=req.timeout_s,
                mounts=mounts,
                gpu=manifest.gpu,
                memory=req.memory,
                labels={"joulebench.campaign": req.campaign, "joulebench.run": run_id},
                on_line=display,
                on_start=lambda started: _attach(meters, started),
                on_exit=meters.stop,
            )
        )
    except KeyboardInterrupt:
        record |= {
            "runner": runner.describe(req.image),
            "status": "failed",
            "failure": {
                "phase": display.last_phase,
                "reason": "interrupted by the user",
                "exit_code": None,
                "log_tail": [],
            },
        }
        write_atomic(path, record)
        raise
    finally:
        meters.stop()
    record["runner"] = execution.runner
    record["elapsed_s"] = time.monotonic() - t0
    finish(record, execution, display.last_phase, req)
    window = display.output.window_ns("measure")
    if record["status"] == "ok" and window is not None:
        record["measurements"] = meters.summarize(*window)
        if req.keep_trace:
            trace = path.with_suffix(".trace.parquet")
            meters.write_trace(trace)
            record["trace_path"] = trace.name
    write_atomic(path, record)
    return record, path


def _attach(meters: MeterSession, started: dict[str, Any]) -> None:
    if "container" in started:
        meters.attach_container(started["container"])
    else:
        meters.attach_process(started["pid"])


def finish(record: dict[str, Any], execution: Execution, last_phase: str | None, req: RunRequest) -> None:
    """Fill status, harness output and metrics from what the runner returned."""
    tail = execution.log_tail()
    try:
        out = parse_stream(execution.stdout)
    except ProtocolError as exc:
        record |= {
            "status": "failed",
            "failure": {
                "phase": last_phase,
                "reason": f"protocol: {exc}",
                "exit_code": execution.exit_code,
                "log_tail": tail,
            },
        }
        return
    record["events"] = out.events
    reason = None
    if execution.start_error:
        reason = f"the harness could not start: {execution.start_error}"
    elif execution.timed_out:
        reason = f"timed out after {req.timeout_s:g} s (in phase {last_phase or 'start-up'})"
    elif execution.oom_killed:
        limit = f" (limit {req.memory})" if req.memory else ""
        reason = f"killed: out of memory{limit} in phase {last_phase or 'start-up'}"
    elif out.error is not None:
        reason = f"{out.error.get('error_type', 'error')}: {out.error['message']}"
    elif execution.exit_code != 0:
        reason = f"harness exited with code {execution.exit_code}"
    elif out.result is None:
        reason = "harness exited without a result"
    if reason is not None:
        record |= {
            "status": "failed",
            "failure": {
                "phase": last_phase,
                "reason": reason,
                "exit_code": execution.exit_code,
                "log_tail": tail,
            },
        }
        return
    assert out.result is not None
    record["status"] = "ok"
    record["result"] = out.result
    record["metrics"] = timing_metrics(out.result, out.window_ns("measure"))
    record["metrics"]["accuracy"] = accuracy(out.result, record.get("weights", "random"))


def summary(record: dict[str, Any], path: Path) -> str:
    """The one-screen summary printed after a run."""
    runner = record.get("runner", {})
    where = runner.get("kind", "?")
    if where == "docker":
        where += f" ({runner.get('image_id', '')[:19]})"
    spec = record.get("spec", {})
    lines = [
        f"run        {record['run_id']}  [{record.get('status', '?').upper()}]",
        f"image      {record['image']}   engine {record['engine']}   provider {record['provider']}",
        f"model      {record['model']} ({record['model_size']})   "
        f"weights {record['weights_label'] or record['weights']}",
        f"batch      {spec.get('batch_size', '?')}   runner {where}",
    ]
    art = record.get("artifact")
    if art:
        parity = art.get("parity", {})
        lines.append(
            f"artifact   {art['conversion']} {'(cached)' if art['reused'] else '(new)'}  "
            f"parity max abs diff {parity.get('max_abs_diff', float('nan')):.2g}"
        )
    if record.get("status") == "ok":
        m = record["metrics"]
        lines += [
            f"samples    {m['samples']} in {m['batches']} batches over {m['window_s']:.3f} s",
            f"throughput {m['throughput_sps']:.2f} samples/s",
            f"latency    p50 {m['latency_ms_p50']:.2f} ms   p90 {m['latency_ms_p90']:.2f} ms   "
            f"p99 {m['latency_ms_p99']:.2f} ms   (per batch)",
        ]
        result = record.get("result", {})
        if result.get("load_s") is not None:
            setup = f"setup      load {result['load_s']:.2f} s"
            if result.get("compile_s") is not None:
                setup += f", compile {result['compile_s']:.2f} s ({result.get('compile_step')})"
            lines.append(setup + "   (outside the window)")
        shown = describe_accuracy(m.get("accuracy"))
        if shown:
            lines.append(shown)
        lines += energy_lines(record.get("measurements"))
    else:
        failure = record.get("failure", {})
        lines.append(f"failed     {failure.get('reason')}")
        for line in failure.get("log_tail", [])[-8:]:
            lines.append(f"  | {line}")
    lines.append(f"record     {path}")
    return "\n".join(lines)


ENERGY_SHOWN = ("total_energy_j", "cpu_energy_j", "dram_energy_j", "gpu_energy_j", "wall_energy_j")


def energy_lines(measurements: dict[str, Any] | None) -> list[str]:
    """Energy and resource figures for the summary; unavailable ones say why, never 0."""
    if not measurements:
        return ["energy     not measured (no measure window)"]
    metrics = measurements["metrics"]
    lines = []
    for name in ENERGY_SHOWN:
        m = metrics.get(name)
        if m is None:
            continue
        label = name.removesuffix("_energy_j")
        if m["available"]:
            net = m.get("net_j")
            extra = f", net of idle {net:.3f} J" if net is not None else ", gross (no idle subtracted)"
            covers = f" covers {'+'.join(m['covers'])}" if m.get("covers") else ""
            lines.append(f"energy     {label:<6} {m['value']:.3f} J{extra}{covers}")
        elif name == "total_energy_j":
            lines.append(f"energy     {label:<6} unavailable: {m['reason'].split(':')[0]}")
        elif name in ("cpu_energy_j", "gpu_energy_j"):
            lines.append(f"energy     {label:<6} unavailable: {m['reason']}")
    cpu, ram = metrics.get("cpu_percent"), metrics.get("ram_peak_bytes")
    if cpu and cpu["available"] and ram and ram["available"]:
        lines.append(f"resources  CPU {cpu['value']:.0f} % of a core, RAM peak {ram['value'] / 2**20:.0f} MiB")
    for flag in measurements.get("flags", []):
        lines.append(f"warning    {flag['message']}")
    return lines


def stderr_say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
