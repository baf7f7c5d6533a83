"""What checking a cache entry's files on reuse costs, beside loading the same model.

Every reuse of a conversion hashes its files (sha256) so that a replaced or truncated artifact is
never measured. This prints the check's time per reuse for entries of a few sizes (ResNet-50's
ONNX export is ~100 MB, MobileNetV2's ~14 MB) beside the time ONNX Runtime takes to load a model
of that size, measured side by side in one run.

    python benchmarks/cache_check.py [--sizes 14,100,400] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.cache import ArtifactCache  # noqa: E402


def entry_of(cache: ArtifactCache, key: str, megabytes: int) -> None:
    staging = cache.stage(key)
    with open(staging / "model.bin", "wb") as fh:
        for _ in range(megabytes):
            fh.write(os.urandom(1 << 20))
    cache.commit(staging, key, {"artifact_file": "model.bin"})


def onnx_load_s(megabytes: int, folder: Path) -> float | None:
    """Seconds for onnxruntime to load a model whose weights are ``megabytes`` (one initializer)."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnx import helper, numpy_helper
    except ImportError:
        return None
    n = megabytes * (1 << 20) // 4
    weight = numpy_helper.from_array(np.random.default_rng(0).random(n, dtype=np.float32), "w")
    node = helper.make_node("ReduceSum", ["w"], ["y"], keepdims=0)
    graph = helper.make_graph(
        [node], "g", [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [])], [weight]
    )
    path = folder / f"m{megabytes}.onnx"
    onnx.save(helper.make_model(graph), path)
    t0 = time.perf_counter()
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="14,100,400", help="entry sizes in MB")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = ArtifactCache(Path(tmp) / "cache", container_writes=False, warn=print)
        print(f"{'MB':>6} {'check ms (median)':>18} {'MB/s':>8} {'ORT load ms':>12} {'check / load':>13}")
        for mb in (int(s) for s in args.sizes.split(",")):
            entry_of(cache, f"k{mb}", mb)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                assert cache.lookup(f"k{mb}") is not None
                times.append(time.perf_counter() - t0)
            check = statistics.median(times)
            load = onnx_load_s(mb, Path(tmp))
            shown = f"{load * 1e3:12.0f} {check / load:13.2f}" if load else f"{'n/a':>12} {'n/a':>13}"
            print(f"{mb:6d} {check * 1e3:18.1f} {mb / check:8.0f} {shown}")


if __name__ == "__main__":
    main()
