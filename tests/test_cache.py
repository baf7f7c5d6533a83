"""The artifact cache is not trusted blindly: a damaged entry is made again, never used."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from controller.cache import ArtifactCache


def cache_with_entry(root: Path) -> tuple[ArtifactCache, str]:
    warnings: list[str] = []
    cache = ArtifactCache(root, container_writes=False, warn=warnings.append)
    cache.warnings = warnings  # type: ignore[attr-defined]
    staging = cache.stage("k1")
    (staging / "model.onnx").write_bytes(b"the converted model")
    (staging / "sub").mkdir()
    (staging / "sub" / "weights.bin").write_bytes(b"\x00" * 1000)
    entry = cache.commit(staging, "k1", {"artifact_file": "model.onnx"})
    assert not entry.reused and not staging.exists()
    return cache, "k1"


def test_an_unchanged_entry_is_reused_with_its_file_hashes(tmp_path):
    cache, key = cache_with_entry(tmp_path)
    entry = cache.lookup(key)
    assert entry is not None and entry.reused
    assert set(entry.meta["files"]) == {"model.onnx", "sub/weights.bin"}


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "model.onnx").write_bytes(b"another model"),  # replaced
        lambda folder: (folder / "model.onnx").write_bytes(b"the conv"),  # truncated
        lambda folder: (folder / "sub" / "weights.bin").unlink(),  # missing
        lambda folder: (folder / "meta.json").write_text('{"artifact_fi'),  # truncated meta
        lambda folder: (folder / "meta.json").unlink(),  # no meta
        lambda folder: (folder / "meta.json").write_text('{"artifact_file": "model.onnx"}'),  # no hashes (old)
    ],
    ids=["replaced", "truncated", "missing-file", "truncated-meta", "missing-meta", "meta-without-hashes"],
)
def test_a_damaged_entry_is_removed_with_a_warning_and_made_again(tmp_path, damage):
    cache, key = cache_with_entry(tmp_path)
    damage(tmp_path / key)
    assert cache.lookup(key) is None
    assert not (tmp_path / key).exists()
    assert len(cache.warnings) == 1 and "damaged" in cache.warnings[0]  # type: ignore[attr-defined]


def test_staging_folders_of_killed_conversions_are_cleaned_on_the_next_start(tmp_path):
    cache = ArtifactCache(tmp_path, container_writes=False)
    gone = subprocess.Popen(["true"])
    gone.wait()
    abandoned = tmp_path / f".staging-k2-{gone.pid}-abcd1234"
    abandoned.mkdir()
    (abandoned / "half.onnx").write_bytes(b"half")
    live = cache.stage("k3")  # this process's own, in use
    removed = cache.clean_abandoned()
    assert removed == [abandoned] and not abandoned.exists() and live.exists()


def test_a_run_on_a_damaged_artifact_converts_again_and_measures_the_right_model(cli, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    cli.cache = tmp_path / "cache"
    args = ["run", "--image", "onnx-cpu", "--model", "mobilenetv2", "--model-size", "tiny", "--runner", "local"]
    args += ["--samples", "4", "--warmup", "0"]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    (rec,) = cli.records()
    entry = cli.cache / rec["artifact"]["key"]
    # Another model's file in its place: the run must not measure it.
    other = cli(
        "run",
        "--image",
        "onnx-cpu",
        "--model",
        "resnet50",
        "--model-size",
        "tiny",
        "--runner",
        "local",
        "--samples",
        "4",
        "--warmup",
        "0",
        "--campaign",
        "other",
    )
    assert other.returncode == 0, other.stderr
    (other_rec,) = cli.records("other")
    other_file = cli.cache / other_rec["artifact"]["key"] / other_rec["artifact"]["artifact_file"]
    (entry / rec["artifact"]["artifact_file"]).write_bytes(other_file.read_bytes())
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert "damaged" in again.stderr and "changed since it was made" in again.stderr
    latest = sorted(cli.records(), key=lambda r: r["run_id"])[-1]
    assert latest["artifact"]["reused"] is False
    assert latest["result"]["predictions_digest"] == rec["result"]["predictions_digest"]
    meta = json.loads((entry / "meta.json").read_text())
    assert (
        meta["files"][rec["artifact"]["artifact_file"]]
        != other_rec["artifact"]["files"][other_rec["artifact"]["artifact_file"]]
    )
    assert os.access(entry / "meta.json", os.R_OK)


def test_the_cache_lives_where_the_user_keeps_caches(tmp_path, monkeypatch):
    from controller.artifacts import default_cache

    monkeypatch.delenv("JOULEBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache() == tmp_path / "xdg" / "joulebench" / "artifacts"
    monkeypatch.setenv("JOULEBENCH_CACHE", str(tmp_path / "mine"))  # joulebench's own setting wins
    assert default_cache() == tmp_path / "mine" / "artifacts"
    monkeypatch.delenv("JOULEBENCH_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache() == tmp_path / "home" / ".cache" / "joulebench" / "artifacts"
