"""The README's set-up stays what a new user can follow: two commands, the CPU torch before anything
that would pull PyPI's CUDA build, and the test command CI runs."""

from __future__ import annotations

import re

from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def setup_commands() -> list[str]:
    section = README.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```\n(.*?)```", section, re.S)]


def test_a_fresh_machine_needs_two_commands_and_the_first_takes_torch_from_the_cpu_index():
    first, tests = setup_commands()  # exactly two
    steps = [s.strip() for s in first.split("&&")]
    assert steps[0] == "python -m pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert steps[-1] == "python -m controller run --image onnx-cpu --model resnet50"
    assert all("[local" not in s for s in steps)  # the main job's own extra, not every engine's
    assert tests == 'python -m pip install -e ".[local,test]" && python -m pytest'


def test_ci_runs_the_readmes_test_command():
    (_, tests) = setup_commands()
    ci = (REPO / ".ci" / "run").read_text().rstrip().splitlines()
    assert ci[-2] == f"# README: {tests}"
    assert ci[-1].replace("install -q ", "install ") == tests  # pip's quiet flag keeps the CI log short


def test_the_campaign_files_the_readme_names_exist_and_it_links_nothing_outside_the_repository():
    for name in set(re.findall(r"suite/campaigns/([\w.-]+\.toml)", README)):
        assert (REPO / "suite" / "campaigns" / name).is_file(), name
    assert "../" not in README  # a clone has nothing beside it
