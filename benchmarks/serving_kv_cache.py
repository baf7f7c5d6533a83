"""Tokens/s at 16 vs 128 new tokens per serving engine, with the KV cache and without (before).

"before" is the cache-less loop the exported engines ran until the export carried the cache: every
step re-runs the whole sequence (engine option ``kv_cache=false``, on the same export with an empty
cache each step; for torch, ``generate(use_cache=False)``, which torch serving never did). "after"
is each engine as it serves now. A cache-less loop slows down as the sequence grows (step n costs
n positions), so its tokens/s at 128 new tokens falls well below that at 16; with the cache it
holds. Greedy, ``ignore_eos`` (every request generates all its tokens), one thread per engine,
in this process (no HTTP); the median of ``--repeats`` requests per cell, the cells taking turns.

    python benchmarks/serving_kv_cache.py                     # tiny GPT-2 built here, every engine found
    python benchmarks/serving_kv_cache.py --embd 256 --layers 4 --engines onnxruntime,torch
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.protocol import Emitter, LmExportSpec, ServeSpec  # noqa: E402
from harness.serving.export import export_lm  # noqa: E402
from harness.serving.formats import EXPORT_FORMATS  # noqa: E402
from harness.serving.lm import LanguageModel  # noqa: E402
from harness.serving.registry import language_model  # noqa: E402
from suite.prompts import humaneval_prompts  # noqa: E402

LENGTHS = (16, 128)


def available(engine: str) -> bool:
    module = {"torch": "torch", "torchscript": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}[engine]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def measure(lms: dict[str, LanguageModel], prompt: str, repeats: int) -> dict[tuple[str, int], float]:
    """Median tokens/s per (kv_cache, length); the cells take turns, so a busy moment hits them alike."""
    rates: dict[tuple[str, int], list[float]] = {(kv, n): [] for kv in lms for n in LENGTHS}
    for _ in range(repeats):
        for kv, lm in lms.items():
            for n in LENGTHS:
                t0 = time.perf_counter()
                gen = lm.generate(prompt, n, ignore_eos=True)
                rates[(kv, n)].append(len(gen.token_ids) / (time.perf_counter() - t0))
    return {cell: statistics.median(r) for cell, r in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="torch,onnxruntime,openvino,torchscript")
    parser.add_argument("--embd", type=int, default=32, help="width of the GPT-2 built here (default 32)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from harness.serving.tiny import build_tiny_lm

    work = Path(tempfile.mkdtemp(prefix="joulebench-kv-bench-"))
    model = build_tiny_lm(work / "lm", n_embd=args.embd, n_layer=args.layers, n_head=max(2, args.embd // 64))
    prompt = humaneval_prompts(seed=0, limit=1)[0].text
    exports: dict[str, str] = {}
    rows = []
    for engine in args.engines.split(","):
        if not available(engine):
            print(f"{engine}: not installed here, skipped")
            continue
        fmt = EXPORT_FORMATS[engine]
        if fmt is not None and fmt not in exports:
            exports[fmt] = str(work / fmt)
            export_lm(LmExportSpec(fmt, str(model), exports[fmt], parity_prompts=[prompt]), Emitter(io.StringIO()))
        lms: dict[str, LanguageModel] = {}
        for kv in ("false", "true"):
            spec = ServeSpec(
                "bench", engine, "cpu", "lm", str(model), artifact_path=exports.get(fmt or ""),
                options={"kv_cache": kv, "threads": args.threads},
            )  # fmt: skip
            lms[kv] = language_model(spec)
            lms[kv].load()
            lms[kv].generate(prompt, 8, ignore_eos=True)  # warm
        got = measure(lms, prompt, args.repeats)
        row = [engine, *(got[(kv, n)] for kv in ("false", "true") for n in LENGTHS)]
        rows.append(row)
    print(
        f"\nmodel: GPT-2, {args.layers} layers x {args.embd} wide; {args.threads} thread(s); median of {args.repeats}"
    )
    head = ("engine", "before 16", "before 128", "ratio", "after 16", "after 128", "ratio")
    print("{:<12} {:>10} {:>11} {:>6}   {:>9} {:>10} {:>6}".format(*head))
    for engine, b16, b128, a16, a128 in rows:
        print(f"{engine:<12} {b16:10.1f} {b128:11.1f} {b128 / b16:6.2f}   {a16:9.1f} {a128:10.1f} {a128 / a16:6.2f}")
    print("tokens/s; ratio = tokens/s at 128 / at 16 (a cache-less loop falls with length; a cached one holds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
