"""Owner-only model files (transformers 5 writes model.safetensors 0600) reach an unprivileged container
through a readable view staged once, without changing the user's files or running the container as root."""

import os
import stat
from pathlib import Path

from controller.runners.base import Mount
from controller.runners.readable import readable_mounts


def model_folder(root: Path) -> Path:
    folder = root / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights" * 1000)
    (folder / "model.safetensors").chmod(0o600)  # as save_pretrained writes it
    (folder / "sub").mkdir(mode=0o700)
    (folder / "sub" / "tokenizer.json").write_text("{}")
    return folder


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_owner_only_file_is_mounted_as_a_readable_copy_and_the_rest_as_links(tmp_path):
    folder = model_folder(tmp_path)
    said: list[str] = []
    mounts, refused = readable_mounts([Mount(str(folder), "/model/my-model")], tmp_path / "views", said.append)
    assert refused == []
    (mount,) = mounts
    view = Path(mount.host)
    assert mount.target == "/model/my-model" and mount.read_only and view.name == "my-model"
    assert (view / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert mode(view / "model.safetensors") == 0o444 and mode(view / "sub") == 0o755
    assert (view / "config.json").stat().st_ino == (folder / "config.json").stat().st_ino  # a link, not a copy
    assert mode(folder / "model.safetensors") == 0o600 and mode(folder / "sub") == 0o700  # the user's: as they were
    assert said == [
        f"{folder}: sub, model.safetensors readable by its owner only: staging a readable copy for the container "
        f"(7 KiB, once, in {tmp_path / 'views'}) ..."
    ]


def test_the_view_is_made_once_and_again_when_the_model_changes(tmp_path):
    folder = model_folder(tmp_path)
    said: list[str] = []
    first = readable_mounts([Mount(str(folder), "/m")], tmp_path / "views", said.append)[0][0].host
    again = readable_mounts([Mount(str(folder), "/m")], tmp_path / "views", said.append)[0][0].host
    assert again == first and len(said) == 1  # reused: nothing copied, nothing said
    (folder / "model.safetensors").write_bytes(b"retrained")
    changed = readable_mounts([Mount(str(folder), "/m")], tmp_path / "views", said.append)[0][0].host
    assert changed != first and Path(changed, "model.safetensors").read_bytes() == b"retrained"
    assert not Path(first).exists()  # the stale view is gone
    assert len(said) == 2


def test_readable_and_writable_mounts_are_left_alone(tmp_path):
    open_file = tmp_path / "model.onnx"
    open_file.write_bytes(b"onnx")
    out_dir = tmp_path / "out"
    out_dir.mkdir(mode=0o700)
    mounts = [Mount(str(open_file), "/model/model.onnx"), Mount(str(out_dir), "/out", read_only=False)]
    assert readable_mounts(mounts, tmp_path / "views", print) == (mounts, [])
    assert not (tmp_path / "views").exists()


def test_a_folder_of_too_many_files_is_refused_not_copied(tmp_path, monkeypatch):
    monkeypatch.setattr("controller.runners.readable.MAX_STAGED_FILES", 3)
    data = tmp_path / "dataset"
    data.mkdir()
    for k in range(5):
        (data / f"{k}.jpg").write_bytes(b"x")
    (data / "0.jpg").chmod(0o600)
    mounts = [Mount(str(data), "/data")]
    out, refused = readable_mounts(mounts, tmp_path / "views", print)
    assert out == mounts and str(data / "0.jpg") in refused
    assert os.access(data / "0.jpg", os.R_OK)
