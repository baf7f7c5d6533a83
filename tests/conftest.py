"""Shared fixtures: the real CLI as a subprocess, a shared artifact cache, Docker when present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# CI sets this after starting an engine and building the images: docker tests then fail, not skip.
REQUIRE_DOCKER = os.environ.get("JOULEBENCH_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def artifact_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole session, so each conversion runs once (as it would for a user)."""
    return tmp_path_factory.mktemp("artifacts")


class CLI:
    def __init__(self, results: Path, cache: Path) -> None:
        self.results = results
        self.cache = cache

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        full = [sys.executable, "-m", "controller", *args]
        if args and args[0] == "run":
            full += ["--results", str(self.results), "--cache", str(self.cache)]
        return subprocess.run(
            full,
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def records(self, campaign: str = "default") -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.results / campaign).glob("*.json"))]


@pytest.fixture
def cli(tmp_path: Path, artifact_cache: Path) -> CLI:
    return CLI(tmp_path / "results", artifact_cache)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A live Docker client with the CPU images built, or a loud skip (a failure in CI)."""
    from controller.errors import UserError
    from controller.images import get_manifest
    from controller.runners.docker_runner import connect

    def unavailable(why: str) -> None:
        if REQUIRE_DOCKER:
            pytest.fail(f"JOULEBENCH_REQUIRE_DOCKER=1 but {why}")
        pytest.skip(f"SKIPPING DOCKER TEST: {why}")

    try:
        client = connect()
    except UserError as exc:
        unavailable(str(exc))
    for name in ("onnx-cpu", "torch-cpu"):
        tag = get_manifest(name).tag
        if not client.images.list(name=tag):
            unavailable(f"image {tag} is not built (python -m controller images build {name})")
    return client


def containers_labelled(client: Any, label: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": label})
