"""The GPU images as far as a host without GPU or registry can check them: manifests, pinning,
build contexts, the refusal to build an unpinned base, the clear error on a host without a GPU,
and the image workflow that builds them where a registry is reachable."""

from __future__ import annotations

import shutil

import pytest
import yaml

from controller import images
from controller.errors import UserError
from harness.engines import ADAPTERS
from harness.serving.formats import OWN_SERVER_REQUEST
from tests.conftest import REPO, controller

GPU_IMAGES = ["torch-cuda", "tf-cuda", "mxnet-cuda", "onnx-cuda", "onnx-trt", "tensorrt", "vllm-cuda"]


@pytest.mark.parametrize("name", GPU_IMAGES)
def test_every_gpu_image_has_a_manifest_a_dockerfile_and_a_build_check(name):
    m = images.get_manifest(name)
    assert m.gpu and m.provider in ("cuda", "tensorrt")
    # an NGC tag (vLLM: its own image), pinned by digest on lock
    assert m.base.startswith(("nvcr.io/nvidia/", "vllm/vllm-openai:")) and ":" in m.base
    assert m.dockerfile.is_file() and (m.folder / "requirements.txt").is_file()
    assert (m.folder / "check.py").is_file()
    assert len(m.why) > 200  # why this base and these pins
    assert all(engine in ADAPTERS or engine in OWN_SERVER_REQUEST for engine in m.engines)
    assert m.python in ("3.10", "3.12") and m.platform.startswith("x86_64-manylinux_2_")  # the NGC base's
    context = images.build_context(m, None, None, lambda _: None)
    try:
        assert (context / "build" / "check.py").is_file()
        assert "python3 /opt/build/check.py" in (context / "Dockerfile").read_text()
        assert (context / "app" / "harness" / "engines" / "tensorrt_engine.py").is_file()
    finally:
        shutil.rmtree(context)


def test_an_unpinned_gpu_base_is_refused_with_the_way_to_pin_it():
    m = images.get_manifest("onnx-trt")
    assert not m.digest
    with pytest.raises(UserError, match=r"not pinned by digest .* images lock onnx-trt"):
        images.build_image(None, m)


def test_lock_writes_the_digest_into_the_manifest(tmp_path, monkeypatch):
    shutil.copytree(images.IMAGES_DIR, tmp_path / "images")
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path / "images")
    m = images.get_manifest("tensorrt")
    digest = "sha256:" + "ab" * 32
    images.write_digest(m, digest)
    pinned = images.get_manifest("tensorrt")
    assert pinned.digest == digest and pinned.pinned_base == f"{m.base}@{digest}"
    assert pinned.digest_verified  # `images lock` confirmed it in the registry
    assert pinned.why == m.why  # the rest of the manifest untouched
    with pytest.raises(UserError, match="not a registry digest"):
        images.write_digest(m, "latest")


def test_images_list_shows_gpu_images_as_unpinned():
    proc = controller("images", "list")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:] if line.strip()}
    for name in GPU_IMAGES:
        if not images.get_manifest(name).digest:
            assert "unpinned" in rows[name] or "yes" in rows[name]
    assert "torch-compile" in rows["torch-cuda"]


def test_a_gpu_image_on_a_host_without_gpu_fails_before_anything_runs(tmp_path):
    from controller import hostinfo
    from controller.meters import host_fingerprint

    if hostinfo.gpus(host_fingerprint())["available"]:
        pytest.skip("this host has a GPU: the refusal is for hosts without one")
    proc = controller(
        "run", "--image", "torch-cuda", "--engine", "torch-compile", "--model", "resnet50", "--results", str(tmp_path)
    )
    assert proc.returncode == 2
    assert "needs an NVIDIA GPU and this host has none" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.rglob("*.json"))  # nothing half-recorded


def test_the_image_workflow_builds_every_image():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "images.yml").read_text())
    jobs = workflow["jobs"]
    built = {image for job in ("cpu", "llm", "gpu") for image in jobs[job]["strategy"]["matrix"]["image"]}
    assert built == set(images.load_manifests())
    assert set(jobs["gpu"]["strategy"]["matrix"]["image"]) == set(GPU_IMAGES)
