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
# A campaign's runs check for a quiet host and flag foreign load, but do not wait for it (a user's
# default is 60 s): the suite's parallel workers are each other's foreign load, and every campaign
# would wait its minute. The subprocesses the tests start inherit it; a test of the wait sets its own.
os.environ.setdefault("JOULEBENCH_QUIET_WAIT_S", "0")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A docker test is end to end (a container, an image's harness): ``-m "not slow"`` leaves it
    out with the other slow ones, so the fast lane is the same on a host with Docker and one without.
    In parallel workers (``--dist loadgroup``) a file's tests share a worker, so its module fixtures
    are made once, and the docker tests all share one: beside test_faults.py's docker tests, a run of
    test_docker.py had its container killed at start-up (signal 9 from outside; cause not found yet)."""
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group("docker"))
        else:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


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


def containers_labelled(client: Any, *labels: str) -> list[Any]:
    """Containers that carry every one of ``labels`` (``key=value``). On an engine shared with other
    controllers a test names its own: a unique campaign, or :func:`own_label`; one removed by
    another controller while listed is not an error."""
    return client.containers.list(all=True, filters={"label": list(labels)}, ignore_removed=True)


def own_label() -> str:
    """The label of containers that this test process's controller started (an in-process ``main``)."""
    import socket

    from controller.runners.docker_runner import OWNER_LABEL

    return f"{OWNER_LABEL}={socket.gethostname()}:{os.getpid()}"


def controller(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m controller ARGS`` from the repository root, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def digits_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits-cnn trained on the digits training split (a few seconds), saved as a state_dict."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from suite.datasets import digits
    from suite.torch_models import build

    train_x, train_y, _, _ = digits.split()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build("digits-cnn", "full", "random", seed=0).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    for _ in range(15):
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    path = tmp_path_factory.mktemp("weights") / "digits-cnn.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's own model: a tiny ONNX classifier of 3x8x8 images, its batch axis dynamic."""
    np = pytest.importorskip("numpy")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((10, 3 * 8 * 8), np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["pixel_values"], ["f"]),
            helper.make_node("Gemm", ["f", "W"], ["logits"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("own") / "classifier.onnx"
    onnx.save(model, str(path))
    return path
