"""``python -m controller advise``: its arguments, turned into an :class:`AdviseRequest` (cli.py adds it)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from controller.errors import UserError

ADVISE_EPILOG = """what it does:
  The space is every image and engine that can run the model here (as `models inspect` and
  `campaign plan` say), crossed with threads, batch size (serving: concurrency), each engine's own
  knobs and the precisions it offers. Every candidate is screened (--screen runs each), then only
  those that may still be the answer or on the front get more runs, until the exact intervals of
  `compare` separate them, --max-repetitions is reached or the budget is spent. Every run is an
  ordinary campaign record in RESULTS/CAMPAIGN (report and compare read it); the campaign file it
  ran, the answer and the front's plot are in RESULTS/CAMPAIGN/advise/. Run the same command again
  to resume. Where energy cannot be measured it ranks on time only, and says so.
goals (--slo):
  batch:   p50, p90, p99, mean (latency per batch; ms or s), throughput (samples/s), e.g. p99=50ms
  serving: ttft, tpot, itl, e2el with _mean/_median/_p90/_p99 (bare: p99), throughput (tokens/s),
           goodput (requests/s meeting the ttft/tpot/e2el goals), e.g. ttft_p99=500ms,tpot=50ms
exit codes: 0 a recommendation; 1 none (nothing meets the goal, or nothing could run);
  2 a usage error; 130 interrupted (run the same command again to resume).
examples:
  python -m controller advise --model resnet50 --slo p99=200ms --budget 30m --plan
  python -m controller advise --model resnet50 --images onnx-cpu,openvino-cpu --batch-sizes 1,8
  python -m controller advise --model ./tiny-llama --images ortgenai-cpu,openvino-genai-cpu \\
      --slo ttft_p99=500ms,tpot=50ms --limit 8 --max-new-tokens 16
"""


def add_advise_parser(sub: Any) -> None:
    from controller.advise.request import DEFAULT_BUDGET_S, MODES
    from controller.cli_args import count, file_path, memory, path_or_name, seconds
    from controller.runners.choose import RUNNERS

    p = sub.add_parser(
        "advise",
        help="which runtime, settings and precision for this model at this goal for the least energy",
        epilog=ADVISE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        type=path_or_name,
        required=True,
        help="as run and serve take it: a registered name, a file, a folder, hf:ORG/NAME",
    )
    p.add_argument(
        "--slo", help="the goal, e.g. p99=50ms or throughput=100 (batch); ttft_p99=500ms,tpot=50ms (serving)"
    )
    p.add_argument(
        "--budget", default=f"{DEFAULT_BUDGET_S / 60:g}m", help="wall-clock budget, e.g. 30m, 2h (default 30m)"
    )
    p.add_argument(
        "--plan", action="store_true", help="show the space, what is left out and why, and the cost; run nothing"
    )
    p.add_argument("--mode", default="auto", choices=MODES, help="auto (default): serving for causal language models")
    space = p.add_argument_group("the space")
    space.add_argument(
        "--images", help="only these images, comma-separated (default: every one that can run the model)"
    )
    space.add_argument("--engines", help="only these engines, comma-separated")
    space.add_argument("--threads", help="thread counts, e.g. 1,2,4 (default: 1 and every logical core)")
    space.add_argument("--batch-sizes", help="batch sizes (batch mode; default 1,8)")
    space.add_argument("--concurrency", help="requests in flight (serving; default 1,4)")
    space.add_argument("--precisions", help="only these precisions, e.g. fp32,int8 (default: every one offered here)")
    space.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2", help="an engine option's levels")
    space.add_argument("--fix", action="append", default=[], metavar="KEY=VALUE", help="hold an engine option")
    search = p.add_argument_group("the search")
    search.add_argument(
        "--screen",
        type=count("repetitions"),
        default=2,
        help="runs of every candidate before any is dropped (default 2)",
    )
    search.add_argument(
        "--max-repetitions", type=count("repetitions"), default=10, help="most runs of one candidate (default 10)"
    )
    search.add_argument("--alpha", type=float, default=0.05, help="1 - the intervals' level (default 0.05)")
    search.add_argument(
        "--min-agreement", default="99%", help="reduced precision's least top-1 agreement (default 99%%)"
    )
    search.add_argument(
        "--max-accuracy-drop",
        default="1%",
        help="with a labelled --dataset: most accuracy lost to precision (default 1%%)",
    )
    search.add_argument("--campaign", help="the results subfolder (default advise-MODEL)")
    search.add_argument("--cluster", metavar="ADDRESS", help="run on a Ray cluster (as campaign run --cluster)")
    search.add_argument("--retry-failed", action="store_true", help="run candidates' failed runs again on resume")
    runs = p.add_argument_group("each run (as run and serve take them)")
    runs.add_argument("--input-shape", action="append", default=[], dest="input_shapes", metavar="NAME=DIMS")
    runs.add_argument("--model-size", default="full", help="full (default) or tiny")
    runs.add_argument("--weights", default="random", help="random (default), pretrained, or a PATH")
    runs.add_argument("--dataset", default="synthetic", help="synthetic (default), digits, imagenet-val, imdb")
    runs.add_argument("--dataset-path", type=path_or_name)
    runs.add_argument(
        "--limit", type=count("limit"), help="a seeded subset of the dataset (batch); prompts per run (serving)"
    )
    amount = runs.add_mutually_exclusive_group()
    amount.add_argument("--samples", type=count("samples"), help="samples per run (batch; default 64 synthetic)")
    amount.add_argument(
        "--duration", dest="duration_s", type=seconds("duration_s"), help="seconds per run instead (batch)"
    )
    runs.add_argument("--warmup", type=count("warmup"), default=5, help="warm-up batches (batch)")
    runs.add_argument(
        "--prompts", type=path_or_name, default="humaneval", help="serving: the prompt file (default HumanEval-derived)"
    )
    runs.add_argument(
        "--max-new-tokens", type=count("max_new_tokens"), default=32, help="serving: tokens per request (default 32)"
    )
    runs.add_argument("--synthetic", help="serving: synthetic prompts, input=N,output=N[,range=R]")
    runs.add_argument("--ignore-eos", action="store_true", default=None, help="serving: generate max tokens")
    runs.add_argument(
        "--warmup-requests",
        type=count("warmup_requests"),
        default=1,
        help="serving: requests before the window (default 1)",
    )
    runs.add_argument("--runner", choices=RUNNERS, default="auto")
    runs.add_argument("--results", type=file_path, default=Path("results"))
    runs.add_argument(
        "--timeout", dest="timeout_s", type=seconds("timeout_s"), default=1800.0, help="seconds before a run is killed"
    )
    runs.add_argument("--memory", type=memory, help="container memory limit (docker runner)")
    runs.add_argument("--cache", type=file_path, help="artifact cache")
    runs.add_argument(
        "--quiet-wait",
        dest="quiet_wait_s",
        type=seconds("quiet_wait_s"),
        default=60.0,
        help="seconds a run waits for a quiet host (no other joulebench run, CPU idle) before measuring, as in "
        "campaigns (default 60; 0: check and flag only)",
    )
    runs.add_argument(
        "--interval", dest="interval_s", type=seconds("interval_s"), default=0.01, help="meters' sampling interval (s)"
    )


def _label(model: str) -> str:
    name = Path(model.removeprefix("hf:")).name if "/" in model or model.startswith((".", "~")) else model
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-.") or "model"


def request_from(args: argparse.Namespace) -> Any:
    from controller.advise.request import (
        AdviseRequest,
        detect_mode,
        goals_for,
        parse_duration,
        parse_ints,
        parse_names,
        parse_vary,
        share,
    )
    from controller.advise.slo import request_slo

    if args.memory and args.runner == "local":
        raise UserError(
            "--memory limits containers; the local runner cannot apply it: drop --memory or use --runner docker"
        )
    if args.screen > args.max_repetitions:
        raise UserError(f"--screen {args.screen} exceeds --max-repetitions {args.max_repetitions}")
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha must lie between 0 and 1, got {args.alpha}")
    mode = detect_mode(args.model, args.mode)
    goals = goals_for(args.slo, mode)
    fix = {k: v[0] for k, v in parse_vary(args.fix, "--fix").items()}
    serving: dict[str, Any] = {}
    if mode == "serving":
        serving = {
            "prompts": args.prompts,
            "limit": args.limit,
            "max_new_tokens": args.max_new_tokens,
            "warmup_requests": args.warmup_requests,
            "warmup_s": 0.0,
            "cooldown_s": 0.0,
            "request_timeout_s": min(600.0, args.timeout_s),
            "synthetic": args.synthetic,
            "ignore_eos": args.ignore_eos,
            "slo": request_slo(goals),
        }
        serving = {k: v for k, v in serving.items() if v is not None}
    return AdviseRequest(
        model=args.model,
        mode=mode,
        goals=goals,
        slo_text=args.slo,
        budget_s=parse_duration(args.budget),
        images=parse_names(args.images),
        engines=parse_names(args.engines),
        threads=parse_ints(args.threads, "--threads") or (),
        batch_sizes=parse_ints(args.batch_sizes, "--batch-sizes") or (1, 8),
        concurrency=parse_ints(args.concurrency, "--concurrency") or (1, 4),
        precisions=parse_names(args.precisions),
        vary=parse_vary(args.vary, "--vary"),
        fix=fix,
        screen=args.screen,
        max_repetitions=args.max_repetitions,
        alpha=args.alpha,
        min_agreement=share(args.min_agreement, "--min-agreement"),
        max_accuracy_drop=share(args.max_accuracy_drop, "--max-accuracy-drop"),
        campaign=args.campaign or f"advise-{_label(args.model)}",
        results=args.results,
        runner=args.runner,
        cluster=args.cluster,
        cache=args.cache,
        timeout_s=args.timeout_s,
        memory=args.memory,
        interval_s=args.interval_s,
        retry_failed=args.retry_failed,
        quiet_wait_s=args.quiet_wait_s,
        input_shapes=tuple(args.input_shapes),
        model_size=args.model_size,
        weights=args.weights,
        dataset=args.dataset,
        dataset_path=str(Path(args.dataset_path).expanduser().resolve()) if args.dataset_path else None,
        limit=args.limit if mode == "batch" else None,
        samples=args.samples,
        duration_s=args.duration_s,
        warmup=args.warmup,
        serving=serving,
    )


def cmd_advise(args: argparse.Namespace) -> int:
    from controller.advise import run_advise
    from controller.requests import check_campaign_name

    req = request_from(args)
    check_campaign_name(req.campaign)
    return run_advise(req, plan_only=args.plan)
