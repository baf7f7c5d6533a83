#!/usr/bin/env bash
# Proof of the GPU paths on a host with an NVIDIA GPU and no Docker (a lent H100/H200, say): the real
# NVML meter, an idle baseline, torch on CUDA (eager, TorchScript, torch.compile), ONNX Runtime's CUDA
# and TensorRT providers and native TensorRT where the installed packages have them, serving with
# torch and, where installed, vLLM's own server, all through the local runner, and the meter's cost. Everything it shows goes to $OUT (default ./gpu-proof):
# system.txt, one log per step, the run records (records.tar.gz) and summary.txt.
#
#   OUT=/tmp/proof bash tools/gpu-proof.sh
#
# Wheels the host lacks (nvidia-ml-py, psutil, docker, ...) can be carried in ./wheels (pip download
# them elsewhere); they are installed from there without an index.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-proof}
mkdir -p "$OUT"
RESULTS=$(mktemp -d)
step() { printf '\n=== %s\n' "$1" | tee -a "$OUT/summary.txt"; }

if [ -d wheels ]; then
  python3 -m pip install -q --no-index --find-links wheels wheels/*.whl >"$OUT/pip.log" 2>&1 || true
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >>"$OUT/pip.log" 2>&1 || true
python3 - <<'PY' | tee -a "$OUT/summary.txt"
import importlib
for name in ("torch", "onnxruntime", "tensorrt", "pynvml", "psutil", "docker"):
    try:
        mod = importlib.import_module(name)
        extra = mod.get_available_providers() if name == "onnxruntime" else ""
        print(f"{name:<12} {getattr(mod, '__version__', '?')} {extra}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name:<12} missing ({exc})")
PY

step "what this host can measure"
python3 -m controller system >"$OUT/system.txt" 2>&1
tail -n 25 "$OUT/system.txt" | tee -a "$OUT/summary.txt"

step "real NVML meter (tests marked gpu)"
python3 -m pytest -q -m gpu tests/meters -p no:cacheprovider 2>&1 | tail -n 5 | tee -a "$OUT/summary.txt"

step "idle baseline (60 s)"
python3 -m controller idle --duration 60 2>&1 | tail -n 6 | tee -a "$OUT/summary.txt"

step "meter cost at 10 ms, with NVML"
python3 benchmarks/meter_overhead.py --seconds 10 2>&1 | tail -n 8 | tee -a "$OUT/summary.txt"

run() {  # image engine batch [extra args...]
  local image=$1 engine=$2 batch=$3
  shift 3
  step "$image / $engine, ResNet-50 batch $batch $*"
  python3 -m controller run --image "$image" --engine "$engine" --model resnet50 --batch-size "$batch" \
    --samples $((batch * 32)) --warmup 3 --runner local --results "$RESULTS" --campaign gpu-proof "$@" \
    >"$OUT/run-$image-$engine-b$batch.log" 2>&1
  grep -E "^(run|artifact|samples|throughput|latency|setup|energy|resources|failed|error)" \
    "$OUT/run-$image-$engine-b$batch.log" | tee -a "$OUT/summary.txt"
}
for batch in 1 64; do
  run torch-cuda torch "$batch"
  run onnx-cuda onnxruntime "$batch"
done
run torch-cuda torchscript 64
run torch-cuda torch-compile 64
run onnx-trt onnxruntime 64
run tensorrt tensorrt 64
run onnx-cuda onnxruntime 64 --option io_binding=false

# Serving on the GPU: a tiny Llama built here, torch on CUDA through our server, then vLLM's own server
# where vLLM is installed (carry its wheels in ./wheels; it is not on the lent machines by default).
# Exports run in torch-cpu's environment, which with the local runner is this Python.
MODEL=$(mktemp -d)/tiny-llama
python3 -c "from harness.serving.tiny import build_tiny_lm; build_tiny_lm('$MODEL', n_embd=256, n_layer=4, n_head=4, arch='llama')" \
  >"$OUT/tiny-llama.log" 2>&1
serve() {  # image engine
  step "serving $1 / $2, tiny Llama, 16 prompts, concurrency 1,4"
  python3 -m controller serve --image "$1" --engine "$2" --model "$MODEL" --limit 16 --max-new-tokens 32 \
    --concurrency 1,4 --runner local --results "$RESULTS" --campaign gpu-proof >"$OUT/serve-$1-$2.log" 2>&1
  grep -E "^(run|artifact|load|requests|TTFT|TPOT|energy|failed|error)" "$OUT/serve-$1-$2.log" | tee -a "$OUT/summary.txt"
}
serve torch-cuda torch
if python3 -c "import vllm" 2>/dev/null; then
  serve vllm-cuda vllm
else
  step "vLLM: not installed on this host (pip install vllm, or its wheels in ./wheels): not proven"
fi

tar -C "$RESULTS" -czf "$OUT/records.tar.gz" .
echo "records: $OUT/records.tar.gz" | tee -a "$OUT/summary.txt"
