"""bert-imdb in every framework: KerasHub's BERT on TensorFlow and GluonNLP's on MXNet, natively and
converted to ONNX (tf2onnx, mx2onnx) on ONNX Runtime, on token inputs and on a small aclImdb folder
written here; and the artifact cache's key for a model folder.

The framework tests run in the tf-cpu and mxnet-cpu images (skipped loudly without them; a failure
under JOULEBENCH_REQUIRE_DOCKER=1).
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from tests.test_engines_cpu import need_image, run_ok

TINY = ["--model", "bert-imdb", "--model-size", "tiny", "--runner", "docker", "--warmup", "1", "--batch-size", "4"]
# (native image, --source of its conversion, what the record's definition names)
FRAMEWORKS = {
    "tensorflow": ("tf-cpu", "keras-hub=="),
    "mxnet": ("mxnet-cpu", "gluonnlp==0.10.0"),
}


def write_acl(root: Path, n: int, seed: int) -> Path:
    """n short reviews in the aclImdb layout (test/pos, test/neg), half of each label."""
    rng = random.Random(seed)
    for i in range(n):
        label = i % 2
        word = rng.choice(["great", "moving", "superb"] if label else ["awful", "dull", "clumsy"])
        folder = root / "aclImdb" / "test" / ("pos" if label else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}_{9 if label else 1}.txt").write_text(f"The film was {word}, the plot too.")
    return root


# --- the artifact cache's key for a model folder ------------------------------------------------


def test_a_model_folder_digest_changes_when_any_of_its_files_changes(tmp_path):
    from controller.artifacts import file_sha256

    folder = tmp_path / "bert-finetuned"
    (folder / "assets").mkdir(parents=True)
    (folder / "config.json").write_text('{"num_layers": 2}')
    (folder / "model.weights.h5").write_bytes(b"\x00" * 64)
    (folder / "assets" / "vocabulary.txt").write_text("[PAD]\n[UNK]\n")
    first = file_sha256(folder)
    assert file_sha256(folder) == first  # stable

    digests = {first}
    (folder / "model.weights.h5").write_bytes(b"\x00" * 63 + b"\x01")  # fine-tuned further
    digests.add(file_sha256(folder))
    (folder / "assets" / "vocabulary.txt").write_text("[PAD]\n[UNK]\n[CLS]\n")  # a nested file
    digests.add(file_sha256(folder))
    (folder / "tokenizer.json").write_text("{}")  # a file added
    digests.add(file_sha256(folder))
    (folder / "tokenizer.json").rename(folder / "tokenizer2.json")  # renamed, same content
    digests.add(file_sha256(folder))
    assert len(digests) == 5

    # The same files elsewhere: the same key (the folder's own path is not part of it).
    copy = tmp_path / "copy"
    for path in sorted(folder.rglob("*")):
        target = copy / path.relative_to(folder)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    assert file_sha256(copy) == file_sha256(folder)


# --- docker: the tf-cpu and mxnet-cpu images ---------------------------------------------------


@pytest.mark.docker
@pytest.mark.parametrize("source", sorted(FRAMEWORKS))
def test_bert_runs_imdb_natively_and_converted_to_onnx_with_the_same_predictions(cli, docker_client, tmp_path, source):
    image, definition = FRAMEWORKS[source]
    need_image(docker_client, image)
    root = write_acl(tmp_path / "imdb", 10, 0)
    # max_length 16: the artifact (exported on 32-token inputs) takes any sequence length.
    data = ["--dataset", "imdb", "--dataset-path", str(root), "--option", "max_length=16"]
    campaign = f"{source}-{uuid.uuid4().hex[:6]}"
    native = run_ok(cli, "--image", image, *TINY, *data, campaign=campaign)
    onnx = run_ok(cli, "--image", "onnx-cpu", "--source", source, *TINY, *data, campaign=campaign)

    assert native["engine"] == source and native["artifact"] is None
    versions = native["result"]["versions"]
    assert versions["keras-hub"] == "0.32.0" if source == "tensorflow" else versions["gluonnlp"] == "0.10.0"
    for rec in (native, onnx):
        acc = rec["metrics"]["accuracy"]
        # Random weights: accuracy is computed from the predictions, and labelled meaningless.
        assert acc["n"] == 10 and 0.0 <= acc["value"] <= 1.0 and not acc["meaningful"]
        assert sorted(rec["result"]["labels"]) == [0] * 5 + [1] * 5
        assert "WordPiece" in rec["result"]["dataset_info"]["preprocessing"]
        assert "max length 16" in rec["result"]["dataset_info"]["preprocessing"]
    artifact = onnx["artifact"]
    parity = artifact["parity"]
    print(
        f"\n{artifact['conversion']} of tiny bert-imdb: max abs diff {parity['max_abs_diff']:.3g}, "
        f"max rel diff {parity['max_rel_diff']:.3g}, argmax agreement {parity['argmax_agreement']:.0%}"
    )
    assert artifact["conversion"] == ("tf2onnx" if source == "tensorflow" else "mx2onnx")
    assert artifact["converted_by"]["kind"] == "docker" and definition in artifact["definition"]
    assert parity["ok"] and parity["max_abs_diff"] <= parity["atol"] and parity["argmax_agreement"] == 1.0
    # The artifact takes the harness's token inputs, like torch2onnx's; the record says how they map.
    assert "input_ids" in artifact["input_mapping"] and "attention_mask" in artifact["input_mapping"]
    assert onnx["result"]["predictions"] == native["result"]["predictions"]


@pytest.mark.docker
@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("tensorflow", "could not download the KerasHub preset bert_base_en_uncased"),
        ("mxnet", "could not download the pretrained weights of bert-imdb"),
    ],
)
def test_pretrained_bert_offline_fails_with_the_reason(cli, docker_client, source, reason):
    image, _ = FRAMEWORKS[source]
    need_image(docker_client, image)
    # Benchmark containers have no network: the framework's own download fails, and the record says so.
    proc = cli(
        "run",
        "--image",
        image,
        "--model",
        "bert-imdb",
        "--weights",
        "pretrained",
        "--runner",
        "docker",
        "--samples",
        "2",
        "--warmup",
        "0",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (failed,) = cli.records()
    assert failed["status"] == "failed" and reason in failed["failure"]["reason"]
    assert "--weights" in failed["failure"]["reason"]  # what to do instead
    assert "Traceback" not in failed["failure"]["reason"]
