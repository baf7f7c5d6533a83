"""Image manifests and what a build forwards from the host (CA bundle, indexes, local wheels)."""

from pathlib import Path

from controller.images import build_context, load_manifests, write_pip_dir


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
        assert (ctx / "build" / "requirements.txt").read_text().count("onnxruntime") == 1
        assert (ctx / "build" / "pip" / "pip.conf").read_text().strip().startswith("[global]")
        assert not (ctx / "build" / "pip" / "ca.pem").exists()
        assert not list(Path(ctx).rglob("__pycache__"))
    finally:
        import shutil

        shutil.rmtree(ctx)
