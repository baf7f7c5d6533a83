"""The batch workload: the harness's measure loop over a model, in its image or locally.

Its steps in the pipeline (``controller/pipeline.py``): :meth:`BatchWorkload.plan` validates,
:meth:`~BatchWorkload.resolve` converts the model when the engine loads another format,
:meth:`~BatchWorkload.drive` starts ``python -m harness run`` and waits for its result.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from controller.accuracy import accuracy
from controller.artifacts import (
    ARTIFACT_MOUNT,
    WEIGHTS_MOUNT,
    Artifact,
    Conversion,
    conversion_for,
    ensure_artifact,
)
from controller.cache import ArtifactCache
from controller.errors import UserError
from controller.images import Manifest, get_manifest
from controller.meters import MeterSession
from controller.mounts import TRT_CACHE_MOUNT, dataset_mount, tensorrt_cache
from controller.progress import Progress, fold_line
from controller.record import Failure, FailureInfo, timing_metrics
from controller.requests import BatchSettings, RunRequest
from controller.resolve import is_own_model, own_model_flags, resolve
from controller.runners.base import Execution, Invocation, Mount, Runner, signals_deferred
from controller.workload import Identity, Outcome, Plan, RunParts, Summarize, attach_meters, harness_failure
from harness.options import OptionError, check_options
from harness.protocol import HarnessOutput, ProtocolError, RunSpec, parse_stream
from suite.models import WEIGHTS_KINDS, get_model
from suite.sources import ModelSource

# Native engines and the framework whose definition (and preprocessing) they run.
NATIVE_SOURCES = {"torch": "torch", "torch-compile": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet"}
CONVERSION_SOURCES = {"torch": "torch", "tf": "tensorflow", "mx": "mxnet"}
SYNTHETIC_SAMPLES = 64
RANDOM_WEIGHTS = "random (seeded, not trained: accuracy meaningless)"
# A batch whose inputs alone would take more than this share of the host's RAM is refused.
MAX_INPUT_RAM_SHARE = 0.5


def model_source(engine: str, conversion: str | None) -> str | None:
    """The framework whose model definition a run executes (natively or converted)."""
    if conversion is not None:
        return CONVERSION_SOURCES.get(conversion.split("2", 1)[0])
    return NATIVE_SOURCES.get(engine)


def wants_ir(engine: str, options: dict[str, Any]) -> bool:
    """Whether an OpenVINO run asked for OpenVINO IR (onnx2openvino) rather than reading ONNX."""
    return engine == "openvino" and str(options.get("model_format", "onnx")).lower() == "ir"


def int8_image() -> str:
    from controller.images import load_manifests
    from controller.models import conversion_images

    return conversion_images(load_manifests())["onnx2int8"]


def wants_int8(engine: str, options: dict[str, Any]) -> bool:
    """Whether an ONNX Runtime run asked for the model quantised to INT8 (onnx2int8) first."""
    return engine == "onnxruntime" and str(options.get("quantization", "none")).lower() == "int8"


def check_int8(engine: str, provider: str, options: dict[str, Any]) -> None:
    """Dynamic INT8 kernels (ConvInteger, MatMulInteger) are ONNX Runtime's CPU provider's: on another
    provider those nodes would run on the CPU behind the provider's back."""
    if wants_int8(engine, options) and provider != "cpu":
        raise UserError(
            f"--option quantization=int8 runs on ONNX Runtime's CPU provider (its dynamic INT8 kernels are CPU "
            f"ones); this image's provider is {provider}: use onnx-cpu, or leave quantization out"
        )


# The first bytes of the weights files the model definitions load: a PyTorch zip or pickle, Keras
# (.keras zip, .h5), MXNet .params (its NDArray-list magic); safetensors is checked by its header.
WEIGHTS_MAGIC = (b"PK\x03\x04", b"\x80", b"\x89HDF\r\n\x1a\n", (0x112).to_bytes(8, "little"))


def weights_problem(path: Path, task: str) -> str | None:
    """Why ``path`` cannot be a registered model's weights, by a look at it (what fits the model is
    known only once it is loaded); None when it may be."""
    if path.is_dir():
        if task != "text-classification":
            return "is a folder; this model loads a weights file (a folder is for a fine-tuned text model)"
        if not (path / "config.json").is_file():
            return "is a folder without config.json: save the fine-tuned model with save_pretrained or save_to_preset"
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not head:
        return "is empty"
    if head.startswith(WEIGHTS_MAGIC):
        return None
    header_len = int.from_bytes(head[:8], "little") if len(head) >= 9 else 0
    if 0 < header_len < path.stat().st_size and head[8:9] == b"{":
        return None  # safetensors: a little-endian header length, then its JSON header
    return (
        "is not a weights file joulebench can load (a PyTorch .pt/.pth state dict, safetensors, Keras .keras or "
        ".h5, or MXNet .params)"
    )


class BatchWorkload:
    mode = "batch"

    def __init__(self, request: RunRequest) -> None:
        assert isinstance(request.what, BatchSettings)
        self.request = request
        self.what: BatchSettings = request.what
        self.last_phase: str | None = None
        self.parts = RunParts()
        self.engine = ""
        self.conversion: tuple[str, str] | None = None
        self.weights_kind = self.what.weights
        self.weights_file: Path | None = None
        self.dataset_path: Path | None = None
        self.artifact: Artifact | None = None
        self.output = HarnessOutput()
        self.source: ModelSource | None = None  # a user's own model (None: a registered one)
        self.steps: list[tuple[str, str]] = []

    # -- validate ----------------------------------------------------------------------------

    def plan(self, check_data: bool = True) -> Plan:
        w = self.what
        manifest, self.engine = resolve(w)
        if is_own_model(w.model):
            return self._plan_own(manifest, check_data)
        engine = self.engine
        try:
            info = get_model(w.model)
            size = info.size(w.model_size)
        except KeyError as exc:
            raise UserError(str(exc).strip("'\"")) from None
        if w.input_shapes:
            shape = "x".join(map(str, size.input_shape))
            raise UserError(
                f"--input-shape sizes the dynamic axes of your own model; {w.model} is registered and its "
                f"{w.model_size} size takes {shape}: leave --input-shape out (or choose --model-size)"
            )
        try:
            check_options(engine, w.options)
        except OptionError as exc:
            raise UserError(str(exc)) from None
        check_int8(engine, manifest.provider, w.options)
        self._check_weights()
        size_samples = self._check_dataset() if check_data else None
        if w.samples is None and w.duration_s is None:
            # A labelled dataset is measured once through; synthetic inputs 64 samples.
            w.samples = size_samples or SYNTHETIC_SAMPLES
        self.conversion = conversion_for(engine, w.model, w.source)
        source = model_source(engine, self.conversion[0] if self.conversion else None)
        if self.conversion is None and source is not None and source not in info.sources:
            raise UserError(
                f"{w.model} has no {source} definition, so engine {engine} cannot run it; "
                f"it is defined for: {', '.join(info.sources)}"
            )
        self._check_batch_memory(size.input_shape)
        images = [w.image] + ([self.conversion[1]] if self.conversion else [])
        if wants_int8(engine, w.options):
            images.append(int8_image())
        identity = Identity(
            model=w.model,
            model_size=w.model_size,
            weights=self.weights_kind,
            conversion=self.conversion[0] if self.conversion else None,
            weights_label=RANDOM_WEIGHTS if self.weights_kind == "random" else None,
        )
        return Plan(manifest, engine, images, identity)

    def _plan_own(self, manifest: Manifest, check_data: bool) -> Plan:
        """A user's own model (a file, a folder, a hub id): what it is, and how the engine gets it."""
        from controller.models import plan_source

        w = self.what
        # Whether the engine can run the model at all (torch cannot run an ONNX file), then the flags.
        self.source, self.steps = plan_source(
            w.model, w.input_shapes, self.engine, w.image, w.options, w.batch_size, w.dataset
        )
        own_model_flags(w)
        try:
            check_options(self.engine, w.options)
        except OptionError as exc:
            raise UserError(str(exc)) from None
        check_int8(self.engine, manifest.provider, w.options)
        size_samples = self._check_dataset(task=self.source.task) if check_data else None
        if w.samples is None and w.duration_s is None:
            w.samples = size_samples or SYNTHETIC_SAMPLES
        self.weights_kind = "path"
        identity = Identity(
            model=self.source.label,
            model_size="full",
            weights="path",
            conversion="+".join(c for c, _ in self.steps) or None,
            model_source=self.source.identity(),
        )
        return Plan(manifest, self.engine, [w.image] + [image for _, image in self.steps], identity)

    def _check_weights(self) -> None:
        w = self.what
        if w.weights in ("random", "pretrained"):
            return
        path = Path(w.weights).expanduser().resolve()
        if not (path.is_file() or path.is_dir()):
            raise UserError(
                f"--weights {w.weights!r} is neither {' nor '.join(WEIGHTS_KINDS[:2])} nor an existing file "
                "or model folder"
            )
        problem = weights_problem(path, get_model(w.model).task)
        if problem:
            raise UserError(f"--weights {w.weights} {problem}")
        self.weights_kind, self.weights_file = "path", path

    def _check_dataset(self, task: str | None = None) -> int | None:
        """The samples the dataset yields, or UserError saying what was expected."""
        from suite.datasets import DatasetError, check, get_dataset

        w = self.what
        path = Path(w.dataset_path).expanduser().resolve() if w.dataset_path is not None else None
        try:
            info = get_dataset(w.dataset)
            task = get_model(w.model).task if self.source is None else task
            if info.task is not None and task is not None and info.task != task:
                raise UserError(f"dataset {w.dataset} serves {info.task} models; {w.model} is a {task} model")
            size = check(w.dataset, path, w.limit, w.seed)
        except DatasetError as exc:
            raise UserError(str(exc)) from None
        self.dataset_path = path
        if self.source is not None:
            return size  # the source's own inputs were checked against the dataset
        if w.dataset == "digits":
            from suite.datasets.digits import SHAPE

            shape = get_model(w.model).size(w.model_size).input_shape
            if tuple(shape) != SHAPE:
                raise UserError(
                    f"dataset digits gives 1x8x8 images; {w.model} ({w.model_size}) takes "
                    f"{'x'.join(map(str, shape))}: use digits-cnn, or another dataset"
                )
        self.dataset_path = path
        return size

    def _check_batch_memory(self, input_shape: tuple[int, ...]) -> None:
        from controller.hostinfo import ram_bytes

        ram = ram_bytes()
        need = self.what.batch_size * 4
        for dim in input_shape:
            need *= dim
        if ram and need > MAX_INPUT_RAM_SHARE * ram:
            raise UserError(
                f"--batch-size {self.what.batch_size}: one batch of inputs alone needs {need / 2**30:.1f} GiB "
                f"and this host has {ram / 2**30:.1f} GiB of RAM; choose a smaller batch"
            )

    # -- resolve artifacts -------------------------------------------------------------------

    def resolve(self, runner: Runner, cache: ArtifactCache, progress: Progress) -> None:
        self.cache_root = cache.root
        if self.source is not None and self.steps:
            from controller.models import source_artifact

            w = self.what
            with progress.step(f"conversion {'+'.join(c for c, _ in self.steps)} of {self.source.label}"):
                artifact = source_artifact(
                    runner,
                    cache,
                    self.source,
                    self.steps,
                    w.seed,
                    self.request.where.timeout_s,
                    progress.note,
                    progress.detail,
                )
            self._keep(artifact)
            return
        if self.conversion is None:
            return
        w = self.what
        timeout = self.request.where.timeout_s
        conv = Conversion(
            self.conversion[0], self.conversion[1], w.model, w.model_size, self.weights_kind, self.weights_file, w.seed
        )
        with progress.step(f"conversion {conv.name} of {w.model}"):
            artifact = ensure_artifact(runner, cache, conv, timeout, progress.note, progress.detail)
            if wants_ir(self.engine, w.options):
                # Second step of the chain: the ONNX artifact to OpenVINO IR, in the OpenVINO image.
                ir = Conversion(
                    "onnx2openvino", w.image, w.model, w.model_size, self.weights_kind, None, w.seed, artifact
                )
                artifact = ensure_artifact(runner, cache, ir, timeout, progress.note, progress.detail)
            if wants_int8(self.engine, w.options):
                # The ONNX artifact quantised by ONNX Runtime (in the image that converts onnx2int8).
                int8 = Conversion(
                    "onnx2int8", int8_image(), w.model, w.model_size, self.weights_kind, None, w.seed, artifact
                )
                artifact = ensure_artifact(runner, cache, int8, timeout, progress.note, progress.detail)
        self._keep(artifact)

    def _keep(self, artifact: Artifact | None) -> None:
        self.artifact = artifact
        if artifact is not None:
            self.parts.artifact = {
                "key": artifact.key,
                "path": artifact.relpath,
                "reused": artifact.reused,
                **artifact.meta,
            }

    # -- drive -------------------------------------------------------------------------------

    def drive(self, runner: Runner, meters: MeterSession, run_id: str, progress: Progress) -> list[Outcome]:
        spec, mounts = self._spec(runner, run_id)
        self.parts.spec = asdict(spec)
        where = self.request.where
        inv = Invocation(
            image=self.what.image,
            argv=["run", "--spec", spec.to_json()],
            timeout_s=where.timeout_s,
            mounts=mounts,
            gpu=get_manifest(self.what.image).gpu,
            memory=where.memory,
            pids_limit=where.pids_limit,
            tmp_size=where.tmp_size,
            shm_size=where.shm_size,
            labels={"joulebench.campaign": where.campaign, "joulebench.run": run_id},
            on_line=lambda line: self._line(line, progress),
        )
        progress.note(f"running {self.what.model} on {self.what.image}/{self.engine} ({runner.kind}) ...")
        t0 = time.monotonic()
        started = None
        try:
            started = runner.start(inv)
            attach_meters(meters, started.workload)
            execution = started.wait()
            meters.stop()  # before the container (and its cgroup) is removed
        finally:
            if started is not None:
                with signals_deferred():
                    started.cleanup()
        self.parts.elapsed_s = time.monotonic() - t0
        return [self._outcome(execution)]

    def _line(self, line: str, progress: Progress) -> None:
        """Each stdout line as it arrives: the harness's phases and progress shown live."""
        try:
            before = len(self.output.events)
            fold_line(line, self.output, progress.detail)
        except ProtocolError:
            return  # the final parse reports it
        if len(self.output.events) > before:
            event = self.output.events[-1]
            if event["edge"] == "start":
                self.last_phase = event["phase"]
                progress.phase(event["phase"])

    def _spec(self, runner: Runner, run_id: str) -> tuple[RunSpec, list[Mount]]:
        w = self.what
        mounts: list[Mount] = []
        artifact = self.artifact
        artifact_root = None
        if artifact is not None:
            # Only this run's artifact is mounted (read-only): the container sees nothing else of
            # the cache, and the cache's parents need not be readable by the container's user.
            mounts.append(Mount(str(self.cache_root / artifact.key), f"{ARTIFACT_MOUNT}/{artifact.key}"))
            artifact_root = runner.path_for(Mount(str(self.cache_root), ARTIFACT_MOUNT))
        weights_in = None
        # A converted run needs the weights no more, except a model folder's tokenizer for text data.
        if self.weights_file is not None and (artifact is None or self.weights_file.is_dir()):
            mounts.append(Mount(str(self.weights_file), f"{WEIGHTS_MOUNT}/{self.weights_file.name}"))
            weights_in = runner.path_for(mounts[-1])
        dataset_in = None
        if self.dataset_path is not None:
            dm = dataset_mount(self.dataset_path)
            mounts.append(dm)
            inside = runner.path_for(dm)
            dataset_in = inside if dm.host == str(self.dataset_path) else f"{inside}/{self.dataset_path.name}"
        model_fields = None
        if self.source is not None:
            from controller.artifacts import mount_source

            model_fields = mount_source(runner, self.source, mounts)
        options = dict(w.options)
        manifest = get_manifest(w.image)
        if manifest.provider == "tensorrt":
            # TensorRT engines are built for one GPU and TensorRT version: keep them on a writable
            # volume so that each is built once (the build is timed as the run's compile step).
            tm = Mount(str(tensorrt_cache(self.cache_root.parent, runner)), TRT_CACHE_MOUNT, read_only=False)
            mounts.append(tm)
            options.setdefault("trt_cache_dir", runner.path_for(tm))
        spec = RunSpec(
            run_id=run_id,
            engine=self.engine,
            provider=manifest.provider,
            model=self.source.label if self.source else w.model,
            model_size=w.model_size,
            weights="random" if self.source else self.weights_kind,
            dataset=w.dataset,
            dataset_path=dataset_in,
            limit=w.limit,
            source=None if self.source else model_source(self.engine, self.conversion[0] if self.conversion else None),
            batch_size=w.batch_size,
            samples=w.samples,
            duration_s=w.duration_s if w.samples is None else None,
            warmup=w.warmup,
            seed=w.seed,
            artifact=artifact.relpath if artifact else None,
            artifact_root=artifact_root,
            weights_path=weights_in,
            options=options,
            model_source=model_fields,
        )
        return spec, mounts

    def _outcome(self, execution: Execution) -> Outcome:
        outcome = Outcome(runner=execution.runner)
        try:
            out = parse_stream(execution.stdout)
        except ProtocolError as exc:
            outcome.failure = self._failure(execution, Failure.PROTOCOL, f"protocol: {exc}")
            return outcome
        outcome.events = out.events
        where = self.request.where
        code, reason = harness_failure(execution, out.error, out.result is None, where.timeout_s, where.memory)
        if code is not None:
            outcome.failure = self._failure(execution, code, reason or "", out.events)
            return outcome
        outcome.result = out.result
        outcome.window = out.window_ns("measure")
        return outcome

    def _failure(
        self, execution: Execution, code: str, reason: str, events: list[dict[str, Any]] | None = None
    ) -> FailureInfo:
        # The harness's whole output names the phase it died in, even where the live reader lagged;
        # before its first phase (imports: a framework's can run out of memory) it was starting up.
        started = [e["phase"] for e in events or [] if e.get("edge") == "start" and e.get("phase")]
        phase = started[-1] if started else self.last_phase or "start-up"
        return FailureInfo(code, reason.replace("{phase}", phase), phase, execution.exit_code, execution.log_tail())

    def metrics(self, outcome: Outcome, measurements: dict[str, Any] | None, summarize: Summarize) -> dict[str, Any]:
        assert outcome.result is not None
        metrics = timing_metrics(outcome.result, outcome.window)
        metrics["accuracy"] = accuracy(outcome.result, self.weights_kind)
        return metrics
