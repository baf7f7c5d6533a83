"""Every command the README and docs/ show stays true: the cheap ones run for real, on committed
fixtures where they read records; the expensive ones (a real run, serve, campaign run, an idle
baseline, an image build) must be accepted by the command line's parser. Every file, link and
anchor they name exists, every campaign file they show loads, and the serving figures' table is
the one the code prints."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

from controller.cli import build_parser, main
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
RECORDS = REPO / "tests" / "fixtures" / "records"

# What each command is: run for real (cheap, reads or prints), or parsed only (it would measure,
# build or wait for minutes). A command is the module, its subcommand and, for `images` and
# `campaign`, its action.
RUN = {"system", "models list", "models inspect", "images list", "campaign plan", "report", "compare"}
PARSE = {"run", "serve", "idle", "campaign run", "images build", "images lock", "images relock", "advise"}


def page_name(path: Path) -> str:
    return str(path.relative_to(REPO))


def blocks(path: Path) -> list[tuple[str, str]]:
    return FENCE.findall(path.read_text())


def shell_commands(path: Path) -> Iterator[list[str]]:
    """The ``python -m controller...`` commands of a page's shell blocks, as argv after ``-m``."""
    for lang, body in blocks(path):
        if lang not in ("", "sh", "bash", "console"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                if part.strip().startswith("python -m controller"):
                    yield [a for a in (unbracket(a) for a in shlex.split(part, comments=True)[2:]) if a]


def unbracket(arg: str) -> str:
    """``[--option`` and ``quant=f16|f32]``, a page's optional part and its choices: the first one."""
    if arg.startswith("[-"):
        arg = arg[1:]
    if arg.endswith("]") and arg.count("]") > arg.count("["):
        arg = arg[:-1]
    return arg.split("|")[0] if "|" in arg and not any(c in arg for c in "{[\"'") else arg


def pytest_commands() -> list[tuple[str, list[str]]]:
    """The ``python -m pytest ...`` commands of the pages' shell blocks, as argv after ``pytest``."""
    found = []
    for page in PAGES:
        for lang, body in blocks(page):
            if lang in ("", "sh", "bash", "console"):
                for line in body.splitlines():
                    for part in line.split("&&"):
                        if part.strip().startswith("python -m pytest"):
                            found.append((page_name(page), shlex.split(part, comments=True)[3:]))
    return found


def all_commands() -> list[tuple[str, list[str]]]:
    """The pages' commands, and the examples ``python -m controller --help`` prints."""
    from controller.cli import EPILOG

    examples = [shlex.split(line)[2:] for line in EPILOG.splitlines() if line.strip().startswith("python -m")]
    return [(page_name(p), argv) for p in PAGES for argv in shell_commands(p)] + [("--help", a) for a in examples]


def distinct_commands() -> dict[str, tuple[str, list[str]]]:
    """Each command once (the first page that shows it), results folders taken as one: ``report
    results/ci-smoke`` in the README and ``report results/my-try`` in a page run as one report."""
    out: dict[str, tuple[str, list[str]]] = {}
    for page, argv in all_commands():
        key = shlex.join(re.sub(r"^results/[\w.-]+$", "results/NAME", a) for a in argv)
        out.setdefault(key, (page, argv))
    return out


def kind(argv: list[str]) -> str:
    """``campaign plan``, ``report``, ``run``, ... (the module itself for ``controller.x``)."""
    if argv[0] != "controller":
        return argv[0]
    words = [a for a in argv[1:] if not a.startswith("-")]
    command = words[0] if words else "--help"
    if command in ("images", "campaign", "models") and len(words) > 1:
        return f"{command} {words[1]}"
    return command


def test_the_pages_show_commands_and_each_is_run_or_parsed():
    commands = all_commands()
    shown = {kind(argv) for _, argv in commands}
    assert {"run", "serve", "campaign plan", "campaign run", "report", "compare", "models inspect"} <= shown
    assert {"idle", "system", "images build"} <= shown
    for page, argv in commands:
        what = kind(argv)
        known = what in RUN | PARSE | {"controller.serving.definitions", "controller.cluster.local"}
        assert known, f"{page}: {shlex.join(argv)}: a command this test neither runs nor parses ({what})"


def on_fixtures(argv: list[str], tmp: Path, onnx_file: Path) -> list[str]:
    """The command as it runs here: ``results/NAME`` a copy of committed records (a candidate: the
    same campaign regressed), ``./model.onnx`` the tiny model."""
    out = []
    for arg in argv[1:]:
        arg = arg.replace("./model.onnx", str(onnx_file))
        name = arg.removeprefix("results/")
        if arg.startswith("results/") and "/" not in name:
            source = "fixture-energy-regressed" if name == "candidate" else "fixture-energy"
            arg = str(tmp / name)
            if not (tmp / name).exists():
                shutil.copytree(RECORDS / source, tmp / name)
        out.append(arg)
    return out


@pytest.mark.parametrize(
    "page,argv",
    [pytest.param(page, argv, id=f"{page}: {shlex.join(argv[1:])}") for page, argv in distinct_commands().values()],
)
def test_each_command_runs_or_parses(page, argv, tmp_path, onnx_file, monkeypatch, capsys):
    what = kind(argv)
    if what == "controller.serving.definitions":
        return  # its table is checked against the page below
    if what == "controller.cluster.local":
        from controller.cluster import local

        with pytest.raises(SystemExit) as help_exit:
            local.main(["--help"])
        usage = capsys.readouterr().out
        assert help_exit.value.code == 0
        assert all(opt in usage for opt in argv[1:] if opt.startswith("--")), f"{page}: {argv} not in {usage}"
        return
    args = on_fixtures(argv, tmp_path, onnx_file)
    measures = what in PARSE and not (what == "advise" and "--plan" in args)  # advise --plan runs nothing
    if measures or "--cluster" in args or "--help" in args:
        if "--help" in args:
            with pytest.raises(SystemExit) as help_exit:
                build_parser().parse_args(args)
            assert help_exit.value.code == 0
        else:
            build_parser().parse_args(args)  # a usage error exits 2 and fails the test
        return
    monkeypatch.chdir(REPO)  # the pages' paths are the repository's
    code = main(args)
    out, err = capsys.readouterr()
    # compare's verdicts are exit codes (1: a regression, as the fixtures hold; 3: undecided).
    allowed = (0, 1, 3) if what == "compare" else (0,)
    assert code in allowed and "Traceback" not in err, f"{page}: {shlex.join(argv)} -> {code}\n{out}\n{err}"


def repo_paths(text: str) -> set[str]:
    """Files (``suite/campaigns/ci-smoke.toml``) and folders (``tools/cluster/``) a page names."""
    found = re.findall(r"(?<![\w/.-])((?:suite|tools|benchmarks|images|tests|docs|\.github|\.ci)/[\w./-]*)", text)
    paths = {p.rstrip(".") for p in found}
    return {p for p in paths if p.endswith("/") or "." in p.rsplit("/", 1)[-1]}


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_every_file_link_and_anchor_a_page_names_exists(page):
    text = page.read_text()
    missing = sorted(p for p in repo_paths(text) if not (REPO / p).exists())
    assert not missing, f"{page_name(page)} names files a clone lacks: {missing}"
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", text):
        if target.startswith(("http://", "https://")):
            continue
        linked = (page.parent / target).resolve() if target else page
        assert REPO in linked.parents, f"{page_name(page)} links outside the repository: {target}"
        assert linked.exists(), f"{page_name(page)} links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{page_name(page)} links to {target}#{anchor}: no such heading"


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_campaign_file_a_page_shows_loads_and_every_toml_fragment_parses(tmp_path):
    from controller.campaigns import load_campaign_file

    shown = 0
    for page in PAGES:
        for lang, body in blocks(page):
            if lang != "toml":
                continue
            data = tomllib.loads(body)
            if "matrix" in data:
                (tmp_path / "shown.toml").write_text(body)
                load_campaign_file(tmp_path / "shown.toml")
                shown += 1
    assert shown >= 1


def test_the_serving_figures_table_is_the_one_the_code_prints():
    from controller.serving.definitions import markdown_table

    page = (REPO / "docs" / "serving.md").read_text()
    assert markdown_table() in page, "regenerate it: python -m controller.serving.definitions"


def test_the_python_a_page_shows_imports_what_it_names():
    for page in PAGES:
        for lang, body in blocks(page):
            if lang == "python":
                for module, names in re.findall(r"^from ([\w.]+) import ([\w, ]+)$", body, re.M):
                    imported = __import__(module, fromlist=["_"])
                    assert all(hasattr(imported, n.strip()) for n in names.split(",")), (page, module, names)


def collect(argv: list[str]) -> subprocess.Popen[str]:
    """``python -m pytest ARGV``, collecting only, in this process's stead (-n 0: no workers)."""
    full = [sys.executable, "-m", "pytest", *argv, "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
    return subprocess.Popen(full, cwd=REPO, text=True, **pipes)


@pytest.mark.slow  # each collects the whole suite: ~10 s of CPU apiece
def test_each_pytest_command_a_page_shows_selects_tests_and_the_fast_lane_leaves_the_slow_ones_out():
    shown = {shlex.join(argv): (page, argv) for page, argv in reversed(pytest_commands())}
    assert "" in shown and "-m 'not slow'" in shown, shown
    procs = {key: collect(argv) for key, (_, argv) in shown.items()}
    counts = {}
    for key, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        # Exit code 5 is pytest's "no tests ran": a marker or name that selects nothing.
        assert proc.returncode == 0, f"{shown[key][0]}: python -m pytest {key} -> {proc.returncode}\n{out[-2000:]}"
        m = re.search(r"^(\d+)(?:/(\d+))? tests? collected", out, re.M)
        assert m and int(m[1]) > 0, f"{shown[key][0]}: python -m pytest {key} selects no test\n{out[-2000:]}"
        counts[key] = (int(m[1]), int(m[2] or m[1]))
    everything, total = counts[""]
    fast, _ = counts["-m 'not slow'"]
    assert everything == total and 0 < fast < total
