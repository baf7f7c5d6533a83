"""The commands of a study beside single runs: campaign, report, compare, models (cli.py adds them)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from controller.cache import CACHE_HELP
from controller.cli_args import file_path, path_or_name
from controller.errors import UserError


def add_campaign_parser(sub: Any) -> None:
    campaign = sub.add_parser("campaign", help="plan or run a matrix of runs described in a TOML file")
    csub = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    for name, text in (
        ("plan", "print the matrix, the images, what is not runnable here and why, and a duration estimate"),
        ("run", "run what is left of the campaign (resumes: cells recorded ok are skipped)"),
    ):
        p = csub.add_parser(name, help=text)
        p.add_argument("file", type=file_path, metavar="FILE", help="campaign file, e.g. suite/campaigns/ci-smoke.toml")
        p.add_argument("--results", type=file_path, default=Path("results"), help="results directory")
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
        p.add_argument(
            "--cluster",
            metavar="ADDRESS",
            help="on a Ray cluster whose measuring nodes offer one joulebench_host each: HEAD:6379 on a machine "
            "of the cluster, ray://HEAD:10001 from elsewhere, or auto (tools/cluster/README.md)",
        )
        if name == "plan":
            p.add_argument("--json", action="store_true", help="runnable or not, per configuration and model")
        else:
            p.add_argument("--retry-failed", action="store_true", help="run cells whose earlier run failed again")
            p.add_argument("--cache", type=file_path, help=CACHE_HELP)
            p.add_argument(
                "--quiet-wait",
                dest="quiet_wait_s",
                type=float,
                help="seconds each run waits at most for a quiet host (no other joulebench run, CPUs idle) before "
                "measuring; then it runs, flagged foreign_load (default: the file's quiet_wait_s, else 60)",
            )
            p.add_argument(
                "--build-images",
                action="store_true",
                help="with --cluster: nodes with Docker build the images they lack before the campaign starts "
                "(and nodes that join, before they get a block)",
            )
            p.add_argument(
                "--node-wait",
                type=float,
                metavar="SECONDS",
                help="with --cluster: how long blocks that no live node can run wait for a node to join and pass "
                "its readiness check (a replacement VM) before they are left for a later resume (default 600)",
            )


def add_report_parser(sub: Any) -> None:
    report = sub.add_parser("report", help="tables, statistics and plots of a campaign's records")
    report.add_argument("folder", type=file_path, metavar="FOLDER", help="a campaign's records, e.g. results/ci-smoke")
    report.add_argument(
        "--format",
        choices=["files", "term"],
        default="files",
        help="files (default): write FOLDER/report/ (Markdown, LaTeX, CSV, HTML); term: print the tables",
    )
    report.add_argument("--output", type=file_path, help="where to write (default FOLDER/report)")
    report.add_argument("--mix", action="store_true", help="allow runs of differing host/GPU/driver/image in one table")
    report.add_argument(
        "--duplicates",
        default="refuse",
        metavar="POLICY",
        help="two ok records of one campaign cell: refuse (default), all (both count), latest (keep the latest)",
    )
    add_carbon_arguments(report)


def add_carbon_arguments(parser: Any) -> None:
    carbon = parser.add_argument_group("carbon (a derived estimate; energy stays the primary figure)")
    carbon.add_argument("--grid-intensity", metavar="G", help="grid carbon intensity in gCO2e/kWh")
    carbon.add_argument("--country", metavar="ISO", help="the bundled annual average of a country (ISO alpha-3: FRA)")
    carbon.add_argument("--pue", metavar="P", help="power usage effectiveness (default 1.0)")


COMPARE_EPILOG = """verdicts, per cell and metric, from the interval of the change B / A - 1 against the threshold:
  regression (above +threshold), improvement (below -threshold), equivalent (within +-threshold),
  inconclusive (otherwise), insufficient data (too few runs for any interval), not comparable.
  The interval is the exact distribution-free one from inverting the Mann-Whitney test on log values
  (Hodges-Lehmann): honest coverage at 4-10 runs a side, and one outlying run moves it little.
  Default alpha 0.05 (95 % intervals): at 99 % five runs a side give the whole range of the pairwise
  ratios, so one overlapping run would hide any regression; at 95 % three runs a side are too few.
  Energy intervals include the energy figures' own bounds. Undecided results say how many runs a
  side would decide them at the spread seen.
exit codes: 0 every result equivalent or improved; 1 a regression (or, with --require-energy,
  energy that cannot be judged); 2 a usage error; 3 a result not decided (inconclusive, insufficient
  data, not comparable), unless --allow-undecided.
"""


def add_compare_parser(sub: Any) -> None:
    compare = sub.add_parser(
        "compare",
        help="energy-regression gate: campaign B against campaign A, per cell (exit 1 on a regression, 3 undecided)",
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("a", type=file_path, metavar="A", help="the reference campaign's records, e.g. results/main")
    compare.add_argument("b", type=file_path, metavar="B", help="the candidate's records, e.g. results/candidate")
    # Strings, checked by controller.compare.options: a wrong value is one line and exit 2.
    compare.add_argument("--metric", default="energy,time", help="energy, time or both (default energy,time)")
    compare.add_argument("--threshold", default="5%", help="smallest change that counts, e.g. 5%% (default)")
    compare.add_argument(
        "--alpha", default="0.05", help="1 - the intervals' level (default 0.05: 95 %% intervals; see below)"
    )
    compare.add_argument("--format", default="term", help="term (default), markdown (a PR comment) or json")
    compare.add_argument(
        "--require-energy",
        action="store_true",
        help="energy unavailable or flagged on either side fails the gate (exit 1), even with --allow-undecided",
    )
    compare.add_argument(
        "--allow-undecided",
        action="store_true",
        help="exit 0 when nothing regressed although some results are undecided (they are still listed)",
    )
    compare.add_argument("--duplicates", default="refuse", metavar="POLICY", help="as for report: refuse, all, latest")
    add_carbon_arguments(compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from controller.compare import run_compare
    from controller.compare.options import parse_options

    opts = parse_options(
        metric=args.metric,
        threshold=args.threshold,
        alpha=args.alpha,
        fmt=args.format,
        require_energy=args.require_energy,
        allow_undecided=args.allow_undecided,
        duplicates=args.duplicates,
        grid_intensity=args.grid_intensity,
        country=args.country,
        pue=args.pue,
    )
    return run_compare(args.a, args.b, opts)


def cmd_campaign(args: argparse.Namespace) -> int:
    from controller.campaigns import load_campaign_file
    from controller.campaigns.execute import run_campaign
    from controller.campaigns.history import resolve_seed
    from controller.campaigns.plan import render_plan, to_json
    from controller.campaigns.readiness import assess
    from controller.requests import check_quiet_wait

    _check_campaign_paths(args)
    campaign = load_campaign_file(args.file, args.overrides)
    if args.campaign_command == "plan" and args.cluster:
        from controller.cluster import plan_on_cluster

        return plan_on_cluster(campaign, args.results, args.cluster, args.runner, args.json)
    if args.campaign_command == "plan":
        assessment = assess(campaign, args.runner)
        if args.json:
            print(to_json(assessment))
        else:
            print(render_plan(assessment, args.results, resolve_seed(args.results, campaign)))
        return 0
    if args.build_images and not args.cluster:
        raise UserError("--build-images goes with --cluster (here, build with: python -m controller images build NAME)")
    if args.quiet_wait_s is not None:
        check_quiet_wait(args.quiet_wait_s, "--quiet-wait")
    if args.node_wait is not None and (not args.cluster or args.node_wait < 0):
        raise UserError(f"--node-wait {args.node_wait:g} needs --cluster and a number of seconds >= 0")
    return run_campaign(
        campaign,
        args.results,
        retry_failed=args.retry_failed,
        cache=args.cache,
        runner=args.runner,
        cluster=args.cluster,
        build_images=args.build_images,
        quiet_wait_s=args.quiet_wait_s,
        node_wait_s=args.node_wait,
    )


def _check_campaign_paths(args: argparse.Namespace) -> None:
    """Where a campaign writes, checked before its file is even read: a run writes into --results and
    --cache; a plan only reads --results, which must then be a folder if it exists."""
    from controller.cache import check_writable_folder

    if args.campaign_command == "run":
        check_writable_folder(args.results, "the results folder (--results)")
        if args.cache is not None:
            check_writable_folder(args.cache, "the artifact cache (--cache)")
    elif args.results.exists() and not args.results.is_dir():
        raise UserError(f"the results folder (--results) {args.results} is a file, not a folder; name a folder")


def cmd_report(args: argparse.Namespace) -> int:
    from controller.carbon import carbon_factor
    from controller.report import build_report

    carbon = carbon_factor(args.grid_intensity, args.country, args.pue)
    _check_report_output(args)
    return build_report(
        args.folder, fmt=args.format, output=args.output, mix=args.mix, duplicates=args.duplicates, carbon=carbon
    )


def _check_report_output(args: argparse.Namespace) -> None:
    """Where the report goes, checked before its records are read: a report is minutes of work for a
    big campaign, and its files must not fail to write at the end."""
    from controller.cache import check_writable_folder

    if args.format == "term":
        if args.output is not None:
            raise UserError("--output is where --format files writes; --format term prints: leave --output out")
        return
    if args.output is not None:
        check_writable_folder(args.output, "the report folder (--output)")
    elif args.folder.is_dir():
        check_writable_folder(args.folder / "report", "the report folder (FOLDER/report; choose another with --output)")


def add_models_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="registered models, or what a model file, folder or hub id is and runs on")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    mlist = msub.add_parser("list", help="registered models and the images each runs on")
    mlist.add_argument("--json", action="store_true")
    minspect = msub.add_parser(
        "inspect", help="inputs, outputs, dtypes, dynamic axes, parameters, size, and which images can run it"
    )
    minspect.add_argument(
        "model", metavar="MODEL", type=path_or_name, help="an ONNX/TorchScript/Keras/IR file, a folder, hf:ORG/NAME"
    )
    minspect.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=DIMS",
        help="size of an input's dynamic axes after the batch, e.g. pixel_values=3x224x224 or input_ids=128",
    )
    minspect.add_argument("--json", action="store_true")


def cmd_models(args: argparse.Namespace) -> int:
    from controller import models

    if args.models_command == "list":
        return models.main("list", None, [], args.json)
    return models.main("inspect", args.model, args.input_shape, args.json)
