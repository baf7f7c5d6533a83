"""TensorRT, the native engine: an ONNX artifact built into a TensorRT engine for this GPU.

The engine build is the run's compile step (timed apart from load and from the window). Built
engines are cached under ``trt_cache_dir`` (the controller mounts a writable volume there), keyed
by the ONNX file's sha256, the TensorRT version, the GPU's name and compute capability, the
batch size and the precision, since an engine is only valid for those. Inputs are copied to the
device before the window and each prepared batch has its own output buffer, so the window holds
``execute_async_v3`` and a stream synchronisation, nothing else.

Device memory goes through NVIDIA's ``cuda-python`` runtime bindings (what TensorRT's own samples
use); the image installs them next to the TensorRT that its NGC base ships.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from harness.engines.base import Engine, EngineError, model_file, option_flag

try:  # cuda-python >= 12.6 moved the runtime bindings under cuda.bindings
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - older cuda-python
    from cuda import cudart  # type: ignore[no-redef]

import tensorrt as trt


def _check(result: Any) -> Any:
    """cuda-python returns (error, value...) tuples: raise on an error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = cudart.cudaGetErrorName(err)[1].decode()
        raise EngineError(f"CUDA runtime error {name}")
    return values[0] if len(values) == 1 else tuple(values)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TensorRtEngine(Engine):
    name = "tensorrt"
    packages = ("tensorrt", "cuda-python", "numpy")

    def load(self) -> None:
        if self.spec.provider != "cuda":
            raise EngineError(f"tensorrt runs on provider cuda, not {self.spec.provider!r}")
        self.onnx_path = model_file(self.spec, "tensorrt", "an ONNX file")
        if _check(cudart.cudaGetDeviceCount()) < 1:
            raise EngineError("tensorrt: no CUDA device visible in this container")
        props = _check(cudart.cudaGetDeviceProperties(0))
        self.gpu = f"{props.name.decode(errors='replace').strip()} sm{props.major}{props.minor}"
        self.fp16 = option_flag(self.spec.options, "trt_fp16", False)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.stream = _check(cudart.cudaStreamCreate())
        self.cache_dir = str(self.spec.options.get("trt_cache_dir", "/trt-cache"))
        self.cache_hit: bool | None = None
        self._prepared: list[_Bound] = []
        self.compile_step = f"TensorRT engine build ({'fp16' if self.fp16 else 'fp32'}, batch {self.spec.batch_size})"

    # --- build or reuse the engine (compile step) ------------------------------------------

    def _cache_file(self) -> str:
        parts = [_sha256(self.onnx_path), trt.__version__, self.gpu, str(self.spec.batch_size), str(self.fp16)]
        if self.spec.model_source is not None:  # the engine is built for these input shapes too
            parts.append(str([(s["name"], s["shape"]) for s in self.spec.model_source["inputs"]]))
        key = "|".join(parts)
        return os.path.join(self.cache_dir, hashlib.sha256(key.encode()).hexdigest()[:32] + ".engine")

    def _build(self) -> bytes:
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, self.logger)
        with open(self.onnx_path, "rb") as fh:
            # The path lets the parser find external data files beside the model.
            if not parser.parse(fh.read(), path=self.onnx_path):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise EngineError(f"TensorRT could not parse the ONNX artifact: {errors[:500]}")
        config = builder.create_builder_config()
        if self.fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        # A model source's inputs have concrete shapes for every dynamic axis (suite/sources.py).
        given = {s["name"]: s["shape"] for s in (self.spec.model_source or {}).get("inputs", [])}
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = [self.spec.batch_size if d < 0 and j == 0 else d for j, d in enumerate(tensor.shape)]
            if tensor.name in given:
                shape = [self.spec.batch_size, *given[tensor.name]]
            if any(d < 0 for d in shape):
                raise EngineError(f"input {tensor.name} has dynamic dimensions beyond the batch: {tensor.shape}")
            profile.set_shape(tensor.name, shape, shape, shape)
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise EngineError("TensorRT failed to build an engine (see the log above)")
        return bytes(plan)

    def compile(self, example: Any) -> None:
        path = self._cache_file()
        plan = None
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                plan = fh.read()
            self.cache_hit = True
        if plan is None:
            plan = self._build()
            self.cache_hit = False
            if os.access(self.cache_dir, os.W_OK):
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "wb") as fh:
                    fh.write(plan)
                os.replace(tmp, path)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineError(f"TensorRT could not deserialize the engine {path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.engine.get_tensor_mode
        self.inputs = [n for n in names if mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if mode(n) == trt.TensorIOMode.OUTPUT]
        for name in self.inputs:
            # The profile pinned the batch: its "opt" shape is the one shape this engine runs.
            self.context.set_input_shape(name, tuple(self.engine.get_tensor_profile_shape(name, 0)[1]))
        out = self.outputs[0]
        self.out_shape = tuple(self.context.get_tensor_shape(out))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(out)))
        # Copy every prepared batch to the device now, outside any timed phase.
        for bound in self._prepared:
            self._bind(bound)
        self.infer(example)

    # --- the window -----------------------------------------------------------------------------

    def prepare(self, batch: Any) -> Any:
        # The engine (and so the input types and output shape) exists only after compile, which
        # binds every prepared batch to device memory before warm-up.
        bound = _Bound(batch)
        self._prepared.append(bound)
        return bound

    def _bind(self, bound: _Bound) -> None:
        named = bound.host if isinstance(bound.host, dict) else {self.inputs[0]: bound.host}
        for name in self.inputs:
            array = np.ascontiguousarray(named[name], dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            ptr = _check(cudart.cudaMalloc(array.nbytes))
            to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            _check(cudart.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, to_device))
            bound.device[name] = ptr
        size = int(np.prod(self.out_shape)) * self.out_dtype.itemsize
        bound.output = _check(cudart.cudaMalloc(size))
        bound.out_bytes = size

    def infer(self, prepared: Any) -> Any:
        for name, ptr in prepared.device.items():
            self.context.set_tensor_address(name, ptr)
        self.context.set_tensor_address(self.outputs[0], prepared.output)
        if not self.context.execute_async_v3(self.stream):
            raise EngineError("TensorRT execute_async_v3 failed")
        _check(cudart.cudaStreamSynchronize(self.stream))
        return prepared

    def to_numpy(self, output: Any) -> Any:
        host = np.empty(self.out_shape, self.out_dtype)
        _check(
            cudart.cudaMemcpy(
                host.ctypes.data, output.output, output.out_bytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            )
        )
        return host

    def providers_active(self) -> list[str]:
        return [f"TensorRT {trt.__version__} on {self.gpu}"]

    def options_used(self) -> dict[str, Any]:
        writable = os.access(self.cache_dir, os.W_OK)
        return {
            "trt_fp16": self.fp16,
            # An unwritable cache is not silent: the engine is then rebuilt on every run.
            "engine_cache": self.cache_dir if writable else f"none: {self.cache_dir} is not writable",
            "engine_cache_hit": self.cache_hit,
        }


class _Bound:
    """One prepared batch: its host arrays, and once bound, its device inputs and output buffer."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.device: dict[str, int] = {}
        self.output: int | None = None
        self.out_bytes = 0


ENGINES = {"tensorrt": TensorRtEngine}
