"""Command line: ``python -m controller run|images ...``. Read this file first."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controller import interrupts
from controller.cache import CACHE_HELP
from controller.cli_advise import add_advise_parser
from controller.cli_args import (
    Parser,
    count,
    file_path,
    memory,
    need,
    path_or_name,
    positive,
    refuse_with,
    seconds,
    size,
)
from controller.cli_study import add_campaign_parser, add_compare_parser, add_models_parser, add_report_parser
from controller.errors import UserError
from controller.requests import (
    BatchSettings,
    MeterSettings,
    RunRequest,
    ServeSettings,
    Where,
    from_fields,
)
from controller.runners.choose import RUNNERS
from controller.serving.settings import SERVE_TIMEOUT_S, ServingSettings

EPILOG = """examples:
  python -m controller run --image onnx-cpu --model resnet50
  python -m controller run --image torch-cpu --model mobilenetv2 --batch-size 64 --duration 30
  python -m controller images build onnx-cpu --pip-config host --network host
  python -m controller campaign plan suite/campaigns/green-ai-runtimes-cpu.toml
  python -m controller campaign run suite/campaigns/ci-smoke.toml
  python -m controller report results/ci-smoke --format term
  python -m controller compare results/main results/candidate --threshold 5% --format markdown
  python -m controller serve --image onnx-cpu --model codeparrot-small --limit 20 --max-new-tokens 16
  python -m controller advise --model resnet50 --slo p99=200ms --budget 30m --plan
"""


def _pairs(pairs: list[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; UserError on anything else or a key given twice."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} takes KEY=VALUE, got {pair!r}")
        if key.strip() in out:
            raise UserError(f"{flag} {key.strip()} is given twice")
        out[key.strip()] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m controller",
        description="joulebench: measure what deep-learning inference costs, per runtime engine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    run = sub.add_parser("run", help="run one benchmark and write its record")
    run.add_argument("--image", required=True, help="image (runtime stack + provider), e.g. onnx-cpu")
    run.add_argument(
        "--model",
        required=True,
        type=path_or_name,
        help="a registered model (resnet50; see `models list`), an ONNX/TorchScript/Keras/OpenVINO IR file, "
        "a transformers folder, or hf:ORG/NAME",
    )
    run.add_argument(
        "--input-shape",
        action="append",
        default=[],
        dest="input_shapes",
        metavar="NAME=DIMS",
        help="an input's shape without the batch axis, e.g. pixel_values=3x224x224 (your own model's dynamic axes)",
    )
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
        type=path_or_name,
        help="random (default; offline, seeded, labelled as such), pretrained, or a PATH",
    )
    run.add_argument(
        "--dataset",
        default="synthetic",
        help="synthetic (default; energy and time only), digits, imagenet-val or imdb (accuracy recorded)",
    )
    run.add_argument("--dataset-path", type=path_or_name, help="the dataset's folder or file (imagenet-val, imdb)")
    run.add_argument("--limit", type=count("limit"), help="a seeded subset of N samples of the dataset")
    run.add_argument("--batch-size", type=count("batch_size"), default=1)
    amount = run.add_mutually_exclusive_group()
    amount.add_argument(
        "--samples",
        type=count("samples"),
        help="samples to measure (default: the whole labelled dataset or its --limit; 64 synthetic)",
    )
    amount.add_argument(
        "--duration", dest="duration_s", type=seconds("duration_s"), help="seconds to measure instead of a count"
    )
    run.add_argument("--warmup", type=count("warmup"), default=5, help="warm-up batches (default 5)")
    run.add_argument("--seed", type=count("seed"), default=0)
    _add_options(run, "engine option, e.g. intra_op_threads=2 (recorded)")
    _add_where(run, timeout_s=Where.timeout_s)
    _add_meters(run)

    idle = sub.add_parser("idle", help="measure and store this host's idle power per domain")
    idle.add_argument("--duration", type=seconds("duration_s"), default=600.0, help="seconds to measure (default 600)")
    idle.add_argument("--interval", type=seconds("interval_s"), default=0.01)
    idle.add_argument("--output", type=file_path, help="where to store it (default: this host's baseline file)")
    idle.add_argument("--wall-url")
    idle.add_argument("--wall-output", type=count("wall_output"))

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
    ibuild.add_argument("--ca-bundle", type=file_path, help="CA bundle for pip inside the build")
    ibuild.add_argument(
        "--pip-config",
        choices=["none", "host"],
        default="none",
        help="host: forward this host's pip indexes, find-links wheels and CA",
    )
    ibuild.add_argument("--network", help="build network mode, e.g. host (engines without a bridge)")
    ibuild.add_argument(
        "--unpinned", action="store_true", help="build even if the base has no digest (the image and records say so)"
    )
    ilock = isub.add_parser("lock", help="pin images' bases by registry digest (needs the registry)")
    ilock.add_argument("names", nargs="+", metavar="NAME")
    irelock = isub.add_parser("relock", help="write images/<name>/requirements.lock (with hashes) using uv")
    irelock.add_argument("names", nargs="*", metavar="NAME")
    irelock.add_argument("--all", action="store_true", help="every image")
    irelock.add_argument(
        "--find-links",
        type=file_path,
        action="append",
        default=[],
        help="a wheel folder standing in for the manifest's indexes where they are unreachable (said in the lock)",
    )
    add_campaign_parser(sub)
    add_report_parser(sub)
    add_compare_parser(sub)
    add_serve_parser(sub)
    add_models_parser(sub)
    add_advise_parser(sub)
    return parser


def _add_options(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", dest="option_pairs", help=text)


def _add_where(p: argparse.ArgumentParser, timeout_s: float) -> None:
    """Where a run executes and writes, and its limits (Where's fields)."""
    p.add_argument(
        "--runner",
        choices=RUNNERS,
        help="auto (default): docker when an engine answers and the images exist or build, else local",
    )
    p.add_argument("--results", type=file_path, default=Where.results, help="results directory")
    p.add_argument("--campaign", default=Where.campaign, help="campaign name (results subfolder)")
    p.add_argument(
        "--timeout", dest="timeout_s", type=seconds("timeout_s"), default=timeout_s, help="seconds before it is killed"
    )
    p.add_argument("--memory", type=memory, help="container memory limit, e.g. 2g (docker runner)")
    p.add_argument(
        "--pids-limit",
        type=count("pids_limit"),
        help=f"container process/thread limit (docker runner; default {Where.pids_limit})",
    )
    p.add_argument(
        "--tmp-size", type=size, help=f"size of the container's /tmp (docker runner; default {Where.tmp_size})"
    )
    p.add_argument(
        "--shm-size", type=size, help=f"size of the container's /dev/shm (docker runner; default {Where.shm_size})"
    )
    p.add_argument("--cache", type=file_path, help=CACHE_HELP)


def _add_meters(p: argparse.ArgumentParser) -> None:
    meters = p.add_argument_group("meters")
    meters.add_argument(
        "--interval",
        dest="interval_s",
        type=seconds("interval_s"),
        default=MeterSettings.interval_s,
        help="sampling interval in s",
    )
    meters.add_argument("--keep-trace", action="store_true", help="keep raw traces as Parquet beside the record")
    meters.add_argument("--wall-url", help="wall-socket meter (NETIO PowerBOX JSON API), e.g. http://pdu")
    meters.add_argument("--wall-output", type=count("wall_output"), help="the meter's output (socket) id")
    meters.add_argument("--baseline", type=file_path, help="idle baseline file (default: this host's)")
    meters.add_argument(
        "--baseline-max-age",
        type=positive(3650, " of days"),
        default=MeterSettings.baseline_max_age_s / 86400,
        help="days before stale",
    )
    meters.add_argument(
        "--uncertainty-limit",
        dest="uncertainty_limit_pct",
        type=positive(100, " of percent"),
        default=MeterSettings.uncertainty_limit * 100,
        metavar="PCT",
        help="flag an energy figure whose bound exceeds PCT %% of it (default %(default)g)",
    )
    meters.add_argument(
        "--quiet-wait",
        dest="quiet_wait_s",
        type=seconds("quiet_wait_s"),
        default=MeterSettings.quiet_wait_s,
        help="seconds to wait for a quiet host (no other joulebench run, CPU idle) before measuring; "
        "a run measured under foreign load is flagged (default 0: check and record only)",
    )


def _request(args: argparse.Namespace, what: Any) -> RunRequest:
    meters = from_fields(
        MeterSettings,
        args,
        baseline_max_age_s=args.baseline_max_age * 86400,
        uncertainty_limit=args.uncertainty_limit_pct / 100,
    )
    return RunRequest(what, from_fields(Where, args), meters)


def _run_one(request: RunRequest) -> int:
    from controller import pipeline
    from controller.progress import Progress

    record, path = pipeline.run(request, Progress())
    print(pipeline.summarise(record, path))
    return 0 if record.status == "ok" else 1


def _check_limits(args: argparse.Namespace) -> None:
    """Container limits with the local runner would be silently ignored: refused, as --memory is."""
    given = [flag for flag, dest in _LIMITS if getattr(args, dest) is not None]
    if args.runner == "local" and given:
        them = "it" if len(given) == 1 else "them"
        raise UserError(
            f"{', '.join(given)} limit{'s' if len(given) == 1 else ''} containers; the local runner cannot apply "
            f"{them}: leave {them} out or use --runner docker"
        )


_LIMITS = (
    ("--memory", "memory"),
    ("--pids-limit", "pids_limit"),
    ("--tmp-size", "tmp_size"),
    ("--shm-size", "shm_size"),
)


def cmd_run(args: argparse.Namespace) -> int:
    _check_limits(args)
    what = from_fields(BatchSettings, args, options=_pairs(args.option_pairs, "--option"))
    return _run_one(_request(args, what))


def cmd_images(args: argparse.Namespace) -> int:
    from controller import commands

    action = {
        "list": commands.images_list,
        "lock": commands.images_lock,
        "relock": commands.images_relock,
        "build": commands.images_build,
    }
    return action[args.images_command](args)


# --- serving mode ------------------------------------------------------------------------------


def add_serve_parser(sub: Any) -> None:
    d = ServingSettings()
    serve = sub.add_parser(
        "serve",
        help="serve a code language model over HTTP, drive it with a load, measure (the second paper)",
        description="Start the model server (an OpenAI-compatible API, streamed) for one <engine, provider>, wait "
        "until it is ready, warm up, drive it with each load point and measure each window; one run record per "
        "load point. With --endpoint, measure a server already running on this host instead.",
    )
    serve.add_argument("--image", help="image (runtime stack + provider), e.g. onnx-cpu, torch-cpu")
    serve.add_argument("--engine", help="engine within the image, e.g. torchscript (default: the image's first)")
    serve.add_argument(
        "--model",
        required=True,
        type=path_or_name,
        help="a model folder (save_pretrained), a hub id, or a name from suite/slm_models.py",
    )
    serve.add_argument(
        "--prompts",
        default=d.prompts,
        type=path_or_name,
        help="prompt file: JSONL or text, one per line (default: HumanEval-derived)",
    )
    serve.add_argument("--limit", type=count("limit"), help="only the first N prompts")
    serve.add_argument(
        "--seed", type=count("seed"), default=d.seed, help="seed of the HumanEval-derived spans and arrivals"
    )
    serve.add_argument(
        "--max-new-tokens", type=count("max_new_tokens"), help=f"tokens per request (default {d.max_new_tokens})"
    )
    serve.add_argument(
        "--concurrency", help=f"closed loop: requests in flight (default {d.concurrency}); a sweep: 1,4,16"
    )
    serve.add_argument(
        "--request-rate", help="open loop: arrivals per second (Poisson; inf: all at once); a sweep: 1,2,4,inf"
    )
    serve.add_argument(
        "--burstiness",
        type=float,  # its range is checked with the load it shapes (serving.load)
        help="gamma shape of the arrival gaps of --request-rate (default 1: Poisson; <1 burstier)",
    )
    serve.add_argument("--slo", help="for goodput, e.g. ttft=500ms,tpot=50ms[,e2el=2s]")
    serve.add_argument(
        "--synthetic", help="synthetic prompts instead of HumanEval's: input=N,output=N[,range=R] (tokens; seeded)"
    )
    serve.add_argument(
        "--ignore-eos", action="store_true", default=None, help="generate max tokens even past end of sequence"
    )
    serve.add_argument(
        "--extra-input",
        dest="extra_inputs",
        action="append",
        metavar="KEY=VALUE",
        help="a request field sent with every request (VALUE as JSON: min_tokens=64, repeat_penalty=1.0); repeatable",
    )
    serve.add_argument(
        "--endpoint", help="an OpenAI-compatible server already running here, e.g. http://127.0.0.1:8000/v1"
    )
    serve.add_argument(
        "--endpoint-pid", type=count("endpoint_pid"), help="its process id, to measure its CPU time and RAM"
    )
    serve.add_argument(
        "--warmup-requests", type=count("warmup_requests"), default=d.warmup_requests, help="requests before the window"
    )
    serve.add_argument(
        "--warmup-s", type=seconds("warmup_s"), default=d.warmup_s, help="seconds the ready server idles first"
    )
    serve.add_argument(
        "--cooldown-s", type=seconds("cooldown_s"), default=d.cooldown_s, help="seconds it idles after the window"
    )
    serve.add_argument(
        "--request-timeout",
        dest="request_timeout_s",
        type=seconds("request_timeout_s"),
        default=d.request_timeout_s,
        help="s per request",
    )
    serve.add_argument(
        "--ready-timeout",
        dest="ready_timeout_s",
        type=seconds("ready_timeout_s"),
        help=f"s for the model to load (default {d.ready_timeout_s:g})",
    )
    _add_options(serve, "engine option, e.g. threads=2")
    _add_where(serve, timeout_s=SERVE_TIMEOUT_S)
    _add_meters(serve)


def _check_serve_options(args: argparse.Namespace) -> None:
    """serve's options that need another, or have no effect beside another: refused, never ignored."""
    need(
        args,
        [
            ("burstiness", "request_rate", "shapes the gaps between open-loop arrivals"),
            ("endpoint_pid", "endpoint", "names the process of the server at --endpoint"),
        ],
    )
    refuse_with(
        args,
        ["option_pairs", "runner", "cache", "memory", "pids_limit", "tmp_size", "shm_size", "ready_timeout_s"],
        args.endpoint is not None,
        "with --endpoint (the server is already running: nothing is started, converted or loaded)",
    )
    refuse_with(
        args, ["max_new_tokens"], args.synthetic is not None, "with --synthetic (its output=N is each answer's length)"
    )
    _check_limits(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from controller import pipeline
    from controller.progress import Progress
    from controller.serving.options import load_fields

    load = load_fields(  # the values first; then the options that need another, or mean nothing here
        concurrency=args.concurrency,
        request_rate=args.request_rate,
        burstiness=1.0 if args.burstiness is None else args.burstiness,
        seed=args.seed,
        slo=args.slo,
        synthetic=args.synthetic,
        image=args.image,
        endpoint=args.endpoint,
        extra_inputs=args.extra_inputs,
    )
    _check_serve_options(args)
    settings = from_fields(ServingSettings, args, **load)
    what = ServeSettings(
        args.image or "",
        args.model,
        args.engine,
        _pairs(args.option_pairs, "--option"),
        settings,
        endpoint=args.endpoint,
        endpoint_pid=args.endpoint_pid,
    )
    done = pipeline.run_all(_request(args, what), Progress())
    for record, path in done:
        print(pipeline.summarise(record, path))
    return 0 if all(record.status == "ok" for record, _ in done) else 1


def main(argv: list[str] | None = None) -> int:
    # SIGTERM and SIGHUP (a closed terminal or ssh session) take the same path as Ctrl-C: runners
    # clean up their containers and processes, and the run is recorded as interrupted, naming it.
    previous = interrupts.install()
    try:
        return _main(argv)
    finally:
        interrupts.restore(previous)


def _main(argv: list[str] | None) -> int:
    from controller import commands
    from controller.cli_advise import cmd_advise
    from controller.cli_study import cmd_campaign, cmd_compare, cmd_models, cmd_report

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a usage error (one line, already printed) or --help: its code, as any refusal's
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None) * 2
    handlers = {
        "run": cmd_run,
        "images": cmd_images,
        "idle": commands.idle,
        "system": commands.system,
        "campaign": cmd_campaign,
        "report": cmd_report,
        "compare": cmd_compare,
        "serve": cmd_serve,
        "models": cmd_models,
        "advise": cmd_advise,
    }
    try:
        return handlers[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: containers and processes of this run were removed", file=sys.stderr)
        return 130
