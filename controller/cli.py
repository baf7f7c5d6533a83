"""Command line: ``python -m controller run|images ...``. Read this file first."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from controller.errors import UserError

EPILOG = """examples:
  python -m controller run --image onnx-cpu --model resnet50
  python -m controller run --image torch-cpu --model mobilenetv2 --batch-size 64 --duration 30
  python -m controller images build onnx-cpu --pip-config host --network host
  python -m controller campaign plan suite/campaigns/green-ai-runtimes-cpu.toml
  python -m controller campaign run suite/campaigns/ci-smoke.toml
  python -m controller report results/ci-smoke --format term
  python -m controller serve --image onnx-cpu --model codeparrot-small --limit 20 --max-new-tokens 16
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--option takes KEY=VALUE, got {pair!r}")
        options[key] = value
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m controller",
        description="joulebench: measure what deep-learning inference costs, per runtime engine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one benchmark and write its record")
    run.add_argument("--image", required=True, help="image (runtime stack + provider), e.g. onnx-cpu")
    run.add_argument("--model", required=True, help="model id, e.g. resnet50")
    run.add_argument("--engine", help="engine within the image (default: the image's first)")
    run.add_argument(
        "--source",
        help="framework whose definition a converted run starts from "
        "(default: the model's first, e.g. torch for torch2onnx)",
    )
    run.add_argument("--model-size", default="full", help="full (default) or tiny (tests, quick runs)")
    run.add_argument(
        "--weights",
        default="random",
        help="random (default; offline, seeded, labelled as such), pretrained, or a PATH",
    )
    run.add_argument(
        "--dataset",
        default="synthetic",
        help="synthetic (default; energy and time only), digits, imagenet-val or imdb (accuracy recorded)",
    )
    run.add_argument("--dataset-path", type=Path, help="the dataset's folder or file (imagenet-val, imdb)")
    run.add_argument("--limit", type=_positive_int, help="a seeded subset of N samples of the dataset")
    run.add_argument("--batch-size", type=_positive_int, default=1)
    amount = run.add_mutually_exclusive_group()
    amount.add_argument(
        "--samples",
        type=_positive_int,
        help="samples to measure (default: the whole labelled dataset or its --limit; 64 synthetic)",
    )
    amount.add_argument("--duration", type=float, help="seconds to measure instead of a count")
    run.add_argument("--warmup", type=int, default=5, help="warm-up batches (default 5)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="engine option, e.g. intra_op_threads=2 (recorded)",
    )
    run.add_argument(
        "--runner",
        choices=["auto", "docker", "local"],
        default="auto",
        help="auto (default): docker when an engine answers and the images exist or build, else local",
    )
    run.add_argument("--results", type=Path, default=Path("results"), help="results directory")
    run.add_argument("--campaign", default="default", help="campaign name (results subfolder)")
    run.add_argument("--timeout", type=float, default=1800.0, help="seconds before the run is killed")
    run.add_argument("--memory", help="container memory limit, e.g. 2g (docker runner)")
    run.add_argument("--cache", type=Path, help="artifact cache (default ~/.cache/joulebench/artifacts)")

    meters = run.add_argument_group("meters")
    meters.add_argument("--interval", type=float, default=0.01, help="sampling interval in s (default 0.01)")
    meters.add_argument("--keep-trace", action="store_true", help="keep raw traces as Parquet beside the record")
    meters.add_argument("--wall-url", help="wall-socket meter (NETIO PowerBOX JSON API), e.g. http://pdu")
    meters.add_argument("--wall-output", type=int, help="the meter's output (socket) id")
    meters.add_argument("--baseline", type=Path, help="idle baseline file (default: this host's)")
    meters.add_argument("--baseline-max-age", type=float, default=7.0, help="days before a baseline is stale")

    idle = sub.add_parser("idle", help="measure and store this host's idle power per domain")
    idle.add_argument("--duration", type=float, default=600.0, help="seconds to measure (default 600)")
    idle.add_argument("--interval", type=float, default=0.01)
    idle.add_argument("--output", type=Path, help="where to store it (default: this host's baseline file)")
    idle.add_argument("--wall-url")
    idle.add_argument("--wall-output", type=int)

    system = sub.add_parser("system", help="what can be measured on this host, and why not")
    system.add_argument("--image", action="append", default=[], help="exit 0 only if these images' needs are met")
    system.add_argument("--json", action="store_true")

    images = sub.add_parser("images", help="list or build the runtime images")
    isub = images.add_subparsers(dest="images_command", required=True, metavar="ACTION")
    ilist = isub.add_parser("list", help="name, engines, provider, GPU, built, image id")
    ilist.add_argument("--json", action="store_true")
    ibuild = isub.add_parser("build", help="build images from images/<name>/")
    ibuild.add_argument("names", nargs="+", metavar="NAME")
    ibuild.add_argument("--base-image", help="base image (default: the manifest's base)")
    ibuild.add_argument("--ca-bundle", type=Path, help="CA bundle for pip inside the build")
    ibuild.add_argument(
        "--pip-config",
        choices=["none", "host"],
        default="none",
        help="host: forward this host's pip indexes, find-links wheels and CA",
    )
    ibuild.add_argument("--network", help="build network mode, e.g. host (engines without a bridge)")
    ilock = isub.add_parser("lock", help="pin GPU images' bases by registry digest (needs the registry)")
    ilock.add_argument("names", nargs="+", metavar="NAME")
    add_campaign_parser(sub)
    add_report_parser(sub)
    add_serve_parser(sub)
    return parser


def _where_and_meters(args: argparse.Namespace) -> dict[str, Any]:
    """Options that `run` and `serve` share: where results go, limits, the meters' settings."""
    return {
        "results": args.results,
        "campaign": args.campaign,
        "memory": args.memory,
        "cache": args.cache,
        "interval_s": args.interval,
        "keep_trace": args.keep_trace,
        "wall_url": args.wall_url,
        "wall_output": args.wall_output,
        "baseline": args.baseline,
        "baseline_max_age_s": args.baseline_max_age * 86400,
    }


def cmd_run(args: argparse.Namespace) -> int:
    from controller import runs

    req = runs.RunRequest(
        image=args.image,
        model=args.model,
        engine=args.engine,
        source=args.source,
        model_size=args.model_size,
        weights=args.weights,
        dataset=args.dataset,
        dataset_path=args.dataset_path,
        limit=args.limit,
        batch_size=args.batch_size,
        samples=args.samples,
        duration_s=args.duration,
        warmup=args.warmup,
        seed=args.seed,
        options=_options(args.option),
        runner=args.runner,
        timeout_s=args.timeout,
        **_where_and_meters(args),
    )
    record, path = runs.execute(req, say=runs.stderr_say)
    print(runs.summary(record, path))
    return 0 if record["status"] == "ok" else 1


def cmd_images(args: argparse.Namespace) -> int:
    from controller import images

    manifests = images.load_manifests()
    if args.images_command == "list":
        try:
            from controller.runners.docker_runner import connect

            client = connect()
            note = None
        except UserError as exc:
            client, note = None, str(exc).split(".")[0]
        rows = images.describe(manifests, client)
        if args.json:
            print(images.to_json(rows))
            return 0
        print(f"{'NAME':<14} {'ENGINES':<32} {'PROVIDER':<9} {'GPU':<4} {'BUILT':<12} IMAGE ID")
        for r in rows:
            built = {None: "unknown", False: "no", True: "yes"}[r["built"]]
            if r["built"] and r["stale"]:
                built = "yes (stale)"
            if r["gpu"] and not r["pinned"] and not r["built"]:
                built = "unpinned"
            if r["unsupported"]:
                built = "unsupported"
            ident = (r["image_id"] or "-")[7:19] if r["image_id"] else "-"
            print(
                f"{r['name']:<14} {','.join(r['engines']):<32} {r['provider']:<9} "
                f"{'yes' if r['gpu'] else 'no':<4} {built:<12} {ident}"
            )
        if note:
            print(f"(built status unknown: {note})")
        if any(r["gpu"] and not r["pinned"] for r in rows):
            print("unpinned: a GPU image builds once its base is pinned (`images lock NAME` where the registry is)")
        return 0
    from controller.runners.docker_runner import connect

    if args.images_command == "lock":
        chosen = [images.get_manifest(name) for name in args.names]
        client = connect()
        for manifest in chosen:
            digest = images.lock_base(client, manifest)
            print(f"pinned {manifest.name}: {manifest.base}@{digest} (commit images/{manifest.name}/manifest.toml)")
        return 0

    for name in args.names:
        images.get_manifest(name)
    client = connect()
    pip_config = images.host_pip_config() if args.pip_config == "host" else None
    for name in args.names:
        image_id = images.build_image(
            client,
            manifests[name],
            base_image=args.base_image,
            ca_bundle=args.ca_bundle,
            pip_config=pip_config,
            network=args.network,
            say=lambda text: print(text, flush=True),
        )
        print(f"built {manifests[name].tag} {image_id}")
    return 0


def cmd_idle(args: argparse.Namespace) -> int:
    from controller.meters import measure_idle, save_baseline

    if args.duration <= 0:
        raise UserError(f"--duration must be positive, got {args.duration}")
    print(f"measuring idle power for {args.duration:g} s; keep this host idle ...", file=sys.stderr)
    baseline = measure_idle(
        args.duration, interval_s=args.interval, wall_url=args.wall_url, wall_output=args.wall_output
    )
    path = save_baseline(baseline, args.output)
    for domain, entry in sorted(baseline.domains.items()):
        shown = f"{entry['power_w']:.2f} W" if entry["available"] else f"unavailable: {entry['reason']}"
        print(f"{domain:<6} {shown}")
    print(f"stored {path}")
    return 0


def cmd_system(args: argparse.Namespace) -> int:
    import json

    from controller.images import get_manifest
    from controller.meters import check_system

    checks = check_system()
    needs_gpu = any(get_manifest(name).gpu for name in args.image)
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        for c in checks:
            mark = {True: "ok ", False: "NO ", None: " ? "}[c.ok]
            print(f"[{mark}] {c.name:<32} {c.detail}")
            if c.hint and c.ok is False:
                print(f"      {'':<32} -> {c.hint}")
    required = ["rapl_zones", "rapl_permissions"] + (["nvml", "gpu_energy_counter"] if needs_gpu else [])
    missing = [c.name for c in checks if c.ok is False and c.name.split("[")[0] in required]
    if args.image and missing:
        print(f"not measurable for {', '.join(args.image)}: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM takes the same path as Ctrl-C: runners clean up their containers and processes.
    raise KeyboardInterrupt


# --- campaigns and the report ------------------------------------------------------------------


def add_campaign_parser(sub: Any) -> None:
    campaign = sub.add_parser("campaign", help="plan or run a matrix of runs described in a TOML file")
    csub = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    for name, text in (
        ("plan", "print the matrix, the images, what is not runnable here and why, and a duration estimate"),
        ("run", "run what is left of the campaign (resumes: cells recorded ok are skipped)"),
    ):
        p = csub.add_parser(name, help=text)
        p.add_argument("file", type=Path, metavar="FILE", help="campaign file, e.g. suite/campaigns/ci-smoke.toml")
        p.add_argument("--results", type=Path, default=Path("results"), help="results directory")
        p.add_argument("--runner", choices=["auto", "docker", "local"], help="override the campaign file's runner")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            dest="overrides",
            help="override a key of the file, VALUE in TOML syntax: --set campaign.repetitions=2 "
            "--set 'matrix.models=[\"./my-model\"]' (recorded beside the results)",
        )
        if name == "plan":
            p.add_argument("--json", action="store_true", help="runnable or not, per configuration and model")
        else:
            p.add_argument("--retry-failed", action="store_true", help="run cells whose earlier run failed again")
            p.add_argument("--cache", type=Path, help="artifact cache (default ~/.cache/joulebench/artifacts)")


def add_report_parser(sub: Any) -> None:
    report = sub.add_parser("report", help="tables, statistics and plots of a campaign's records")
    report.add_argument("folder", type=Path, metavar="FOLDER", help="a campaign's records, e.g. results/ci-smoke")
    report.add_argument(
        "--format",
        choices=["files", "term"],
        default="files",
        help="files (default): write FOLDER/report/ (Markdown, LaTeX, CSV, HTML); term: print the tables",
    )
    report.add_argument("--output", type=Path, help="where to write (default FOLDER/report)")
    report.add_argument("--mix", action="store_true", help="allow runs of differing host/GPU/driver/image in one table")


def cmd_campaign(args: argparse.Namespace) -> int:
    from controller.campaigns import load_campaign_file
    from controller.campaigns.execute import resolve_seed, run_campaign
    from controller.campaigns.plan import assess, render_plan, to_json

    campaign = load_campaign_file(args.file, args.overrides)
    if args.campaign_command == "plan":
        assessment = assess(campaign, args.runner)
        if args.json:
            print(to_json(assessment))
        else:
            print(render_plan(assessment, args.results, resolve_seed(args.results, campaign)))
        return 0
    return run_campaign(campaign, args.results, retry_failed=args.retry_failed, cache=args.cache, runner=args.runner)


def cmd_report(args: argparse.Namespace) -> int:
    from controller.report import build_report

    return build_report(args.folder, fmt=args.format, output=args.output, mix=args.mix)


# --- serving mode ------------------------------------------------------------------------------


def add_serve_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve a code language model over HTTP, replay prompts, measure (the second paper)",
        description="Start the model server (FastAPI on uvicorn) for one <engine, provider>, wait until it is "
        "ready, warm up, replay the prompt set and measure that window; writes one run record.",
    )
    serve.add_argument("--image", help="image (runtime stack + provider), e.g. onnx-cpu, torch-cpu")
    serve.add_argument("--engine", help="engine within the image, e.g. torchscript (default: the image's first)")
    serve.add_argument(
        "--model", required=True, help="a model folder (save_pretrained), a hub id, or a name from suite/slm_models.py"
    )
    serve.add_argument(
        "--prompts", type=Path, help="prompt file: JSONL or text, one per line (default: HumanEval-derived)"
    )
    serve.add_argument("--limit", type=_positive_int, help="only the first N prompts")
    serve.add_argument("--seed", type=int, default=0, help="seed of the HumanEval-derived spans (default 0)")
    serve.add_argument(
        "--max-new-tokens", type=_positive_int, default=32, help="tokens generated per request (default 32)"
    )
    serve.add_argument("--concurrency", help="closed loop: requests in flight (default 1: sequential); a sweep: 1,4,16")
    serve.add_argument(
        "--request-rate", help="open loop: arrivals per second (Poisson; inf: all at once); a sweep: 1,2,4,inf"
    )
    serve.add_argument(
        "--burstiness", type=float, default=1.0, help="gamma shape of the arrival gaps (1: Poisson; <1 burstier)"
    )
    serve.add_argument("--slo", help="for goodput, e.g. ttft=500ms,tpot=50ms[,e2el=2s]")
    serve.add_argument(
        "--synthetic", help="synthetic prompts instead of HumanEval's: input=N,output=N[,range=R] (tokens; seeded)"
    )
    serve.add_argument(
        "--ignore-eos", action="store_true", default=None, help="generate max tokens even past end of sequence"
    )
    serve.add_argument(
        "--endpoint", help="an OpenAI-compatible server already running here, e.g. http://127.0.0.1:8000/v1"
    )
    serve.add_argument("--endpoint-pid", type=int, help="its process id, to measure its CPU time and RAM")
    serve.add_argument("--warmup-requests", type=int, default=2, help="requests before the window (default 2)")
    serve.add_argument(
        "--warmup-s", type=float, default=0.0, help="seconds the ready server idles before warm-up (paper: 300)"
    )
    serve.add_argument(
        "--cooldown-s", type=float, default=0.0, help="seconds the server idles after the window (paper: 300)"
    )
    serve.add_argument(
        "--request-timeout", type=float, default=120.0, help="seconds one request may take (default 120)"
    )
    serve.add_argument(
        "--ready-timeout", type=float, default=600.0, help="seconds to wait for the model to load (default 600)"
    )
    serve.add_argument(
        "--timeout", type=float, default=7200.0, help="seconds before the server is killed (default 7200)"
    )
    serve.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="engine option, e.g. threads=2"
    )
    serve.add_argument("--runner", choices=["auto", "docker", "local"], default="auto")
    serve.add_argument("--results", type=Path, default=Path("results"), help="results directory")
    serve.add_argument("--campaign", default="default", help="campaign name (results subfolder)")
    serve.add_argument("--memory", help="container memory limit, e.g. 8g (docker runner)")
    serve.add_argument("--cache", type=Path, help="artifact cache (default ~/.cache/joulebench/artifacts)")
    serve.add_argument("--interval", type=float, default=0.01, help="meter sampling interval in s (default 0.01)")
    serve.add_argument("--keep-trace", action="store_true", help="keep raw traces as Parquet beside the record")
    serve.add_argument("--wall-url", help="wall-socket meter (NETIO PowerBOX JSON API)")
    serve.add_argument("--wall-output", type=int, help="the meter's output (socket) id")
    serve.add_argument("--baseline", type=Path, help="idle baseline file (default: this host's)")
    serve.add_argument("--baseline-max-age", type=float, default=7.0, help="days before a baseline is stale")


def cmd_serve(args: argparse.Namespace) -> int:
    from controller import serving
    from controller.runs import stderr_say
    from controller.serving.options import load_fields

    load = load_fields(
        concurrency=args.concurrency,
        request_rate=args.request_rate,
        burstiness=args.burstiness,
        seed=args.seed,
        slo=args.slo,
        synthetic=args.synthetic,
        image=args.image,
        endpoint=args.endpoint,
    )
    req = serving.ServeRequest(
        image=args.image or "",
        model=args.model,
        engine=args.engine,
        prompts=args.prompts,
        limit=args.limit,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        warmup_requests=args.warmup_requests,
        warmup_s=args.warmup_s,
        cooldown_s=args.cooldown_s,
        request_timeout_s=args.request_timeout,
        ready_timeout_s=args.ready_timeout,
        timeout_s=args.timeout,
        options=_options(args.option),
        runner=args.runner,
        ignore_eos=args.ignore_eos,
        endpoint=args.endpoint,
        endpoint_pid=args.endpoint_pid,
        **load,
        **_where_and_meters(args),
    )
    done = serving.execute_all(req, say=stderr_say)
    for record, path in done:
        print(serving.summary(record, path))
    return 0 if all(record["status"] == "ok" for record, _ in done) else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    handlers = {
        "run": cmd_run,
        "images": cmd_images,
        "idle": cmd_idle,
        "system": cmd_system,
        "campaign": cmd_campaign,
        "report": cmd_report,
        "serve": cmd_serve,
    }
    try:
        return handlers[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: containers and processes of this run were removed", file=sys.stderr)
        return 130
