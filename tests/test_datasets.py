"""Datasets and accuracy: an honest offline accuracy check across engines, and the loaders on
small trees in their real formats, written here."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest

from suite.datasets import DatasetError, check, subset

RUN = ["--runner", "local", "--warmup", "1", "--batch-size", "16"]


# --- the honest accuracy test: a CNN trained here, run on every engine -------------------------


def run_digits(cli, image: str, weights: Path, *extra: str) -> dict:
    proc = cli(
        "run", "--image", image, "--model", "digits-cnn", "--weights", str(weights), "--dataset", "digits", *RUN, *extra
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accuracy" in proc.stdout and "top-1 on 450 samples of digits" in proc.stdout
    return cli.records()[-1]


@pytest.mark.slow
def test_trained_digits_cnn_has_the_same_accuracy_on_torch_onnxruntime_and_openvino(cli, digits_weights):
    runs = {"torch": run_digits(cli, "torch-cpu", digits_weights)}
    runs["onnxruntime"] = run_digits(cli, "onnx-cpu", digits_weights)
    try:
        import openvino  # noqa: F401

        from harness.engines import openvino_engine  # noqa: F401
    except ImportError as exc:
        print(f"\nSKIPPING THE OPENVINO LEG: {exc}")
    else:
        runs["openvino"] = run_digits(cli, "openvino-cpu", digits_weights)
    figures = {}
    for engine, rec in runs.items():
        acc = rec["metrics"]["accuracy"]
        assert rec["status"] == "ok" and rec["engine"] == engine
        assert acc["available"] and acc["meaningful"] and "warning" not in acc
        # The whole test split, once: 450 images in 29 batches of 16, the last filled up.
        assert acc["n"] == 450 and rec["metrics"]["samples"] == 29 * 16
        assert rec["result"]["dataset_info"]["size"] == 450
        figures[engine] = acc["value"]
    print(f"\ndigits-cnn top-1 per engine: {figures}")
    assert figures["torch"] > 0.8, "well above chance (0.1)"
    # Conversion must not change what the model predicts: the same accuracy on each engine.
    assert len(set(figures.values())) == 1, figures
    if "onnxruntime" in runs:
        assert runs["onnxruntime"]["conversion"] == "torch2onnx"
        same = runs["onnxruntime"]["result"]["predictions"] == runs["torch"]["result"]["predictions"]
        assert same and runs["onnxruntime"]["result"]["labels"] == runs["torch"]["result"]["labels"]


def test_random_weights_record_a_warning_and_synthetic_inputs_no_accuracy(cli):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    proc = cli("run", "--image", "torch-cpu", "--model", "digits-cnn", "--dataset", "digits", "--limit", "40", *RUN)
    assert proc.returncode == 0, proc.stderr
    assert "meaningless" in proc.stdout
    acc = cli.records()[-1]["metrics"]["accuracy"]
    assert acc["n"] == 40 and not acc["meaningful"] and "meaningless" in acc["warning"]
    proc = cli("run", "--image", "torch-cpu", "--model", "digits-cnn", "--samples", "8", *RUN)
    assert proc.returncode == 0, proc.stderr
    rec = cli.records()[-1]
    assert rec["metrics"]["samples"] == 16  # one batch of 16 for 8 samples (synthetic default stays 64)
    assert rec["metrics"]["accuracy"] == {
        "available": False,
        "reason": "not applicable: synthetic inputs",
        "dataset": "synthetic",
    }


@pytest.mark.slow
def test_limit_and_samples_pick_a_seeded_subset(cli):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    runs = []
    for seed in ("0", "0", "1"):
        args = ("--dataset", "digits", "--limit", "50", "--seed", seed, "--batch-size", "8")
        proc = cli("run", "--image", "torch-cpu", "--model", "digits-cnn", "--runner", "local", *args)
        assert proc.returncode == 0, proc.stderr
        runs.append(cli.records()[-1]["result"])
    assert [len(r["labels"]) for r in runs] == [50, 50, 50]
    assert runs[0]["labels"] == runs[1]["labels"]  # same seed, same images
    assert runs[0]["labels"] != runs[2]["labels"]  # another seed, another subset
    proc = cli("run", "--image", "torch-cpu", "--model", "digits-cnn", *RUN, "--dataset", "digits", "--samples", "20")
    assert proc.returncode == 0, proc.stderr
    rec = cli.records()[-1]
    assert rec["metrics"]["accuracy"]["n"] == 32  # two batches of 16: accuracy over what was measured


# --- errors a user can hit -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model", "digits-cnn", "--dataset", "cifar"], "valid datasets: synthetic, digits, imagenet-val, imdb"),
        (["--model", "resnet50", "--dataset", "imagenet-val"], "needs --dataset-path"),
        (["--model", "resnet50", "--dataset", "imagenet-val", "--dataset-path", "/nonexistent/val"], "does not exist"),
        (["--model", "resnet50", "--dataset", "imdb", "--dataset-path", "."], "text-classification models"),
        (["--model", "digits-cnn", "--dataset", "synthetic", "--limit", "3"], "--limit applies to labelled"),
    ],
)
def test_dataset_errors_name_what_was_expected(cli, args, expected):
    proc = cli("run", "--image", "torch-cpu", "--runner", "local", *args)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_model_that_does_not_fit_the_dataset_is_refused_before_anything_runs(cli):
    pytest.importorskip("sklearn")
    proc = cli(
        "run", "--image", "torch-cpu", "--model", "resnet50", "--model-size", "tiny", "--dataset", "digits", *RUN
    )
    assert proc.returncode == 2
    assert "digits gives 1x8x8 images" in proc.stderr and "digits-cnn" in proc.stderr
    assert cli.records() == []  # nothing converted, nothing measured


# --- imagenet-val: a tiny tree in the real layout, and a file list ------------------------------

WNIDS = ["n01440764", "n01443537", "n01484850"]


def write_imagenet(root: Path, per_class: int = 3) -> Path:
    """val/<wnid>/ILSVRC2012_val_*.JPEG, a class's images a solid colour each (label = class)."""
    from PIL import Image

    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]
    number = 0
    for wnid, colour in zip(WNIDS, colours, strict=True):
        folder = root / "val" / wnid
        folder.mkdir(parents=True)
        for i in range(per_class):
            number += 1
            size = (40 + 7 * i, 30 + 5 * i)  # not square, not the model's size: resize + crop happen
            Image.new("RGB", size, colour).save(folder / f"ILSVRC2012_val_{number:08d}.JPEG", quality=95)
    return root


def test_imagenet_folder_layout_labels_by_sorted_wnid(tmp_path):
    from suite.datasets import imagenet

    root = write_imagenet(tmp_path / "imagenet")
    for path in (root, root / "val"):
        items = imagenet.find(path)
        assert [label for _, label in items] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert all(Path(f).parent.name == WNIDS[label] for f, label in items)
    assert check("imagenet-val", root) == 9 and check("imagenet-val", root, limit=4) == 4


def test_imagenet_torch_preprocessing_is_resize_crop_normalise(tmp_path):
    from suite.datasets import imagenet

    items = imagenet.find(write_imagenet(tmp_path / "imagenet"))
    images = imagenet.load(items, (3, 64, 64), "torch")
    assert images.shape == (9, 3, 64, 64) and images.dtype == np.float32
    # A solid red image: channel 0 is (250/255 - mean) / std everywhere, JPEG noise aside.
    red = images[0]
    expected = [(v / 255 - m) / s for v, m, s in zip((250, 10, 10), imagenet.MEAN, imagenet.STD, strict=True)]
    assert np.allclose(red.mean(axis=(1, 2)), expected, atol=0.1)
    keras = imagenet.load(items[:1], (3, 64, 64), imagenet.preprocess_style("tensorflow", "resnet50"))
    # keras' caffe mode: BGR order, mean subtracted, no scaling: blue channel first, about 10 - 103.9.
    assert abs(keras[0, 0].mean() - (10 - 103.939)) < 8 and abs(keras[0, 2].mean() - (250 - 123.68)) < 8
    tf_mode = imagenet.load(items[:1], (3, 64, 64), imagenet.preprocess_style("tensorflow", "mobilenetv2"))
    assert tf_mode.min() >= -1.0 and tf_mode.max() <= 1.0


def test_imagenet_file_list_with_relative_paths_and_ilsvrc_spacing(tmp_path):
    from suite.datasets import imagenet

    root = write_imagenet(tmp_path / "imagenet")
    files = sorted((root / "val").rglob("*.JPEG"))
    listing = root / "labels.csv"
    listing.write_text("path,label\n" + "".join(f"{f.relative_to(root)},{7 + i % 2}\n" for i, f in enumerate(files)))
    items = imagenet.find(listing)
    assert [label for _, label in items] == [7 + i % 2 for i in range(9)]
    assert all(Path(f).is_file() for f, _ in items)
    spaced = root / "val.txt"
    spaced.write_text("".join(f"{f.relative_to(root)} 3\n" for f in files[:2]))
    assert [label for _, label in imagenet.find(spaced)] == [3, 3]


@pytest.mark.parametrize(
    "layout, expected",
    [("empty class folders", "no images in them"), ("flat", "give a file list for those"), ("list", "line 1")],
)
def test_imagenet_layout_errors_say_what_was_expected(tmp_path, layout, expected):
    path = tmp_path / "imagenet"
    if layout == "list":
        path = tmp_path / "labels.txt"
        path.write_text("a.JPEG,cat\n")
    else:
        (path / "val" / WNIDS[0]).mkdir(parents=True)
        if layout == "flat":
            (path / "val" / "a.JPEG").write_bytes(b"x")
    with pytest.raises(DatasetError, match="val/<wnid>/\\*.JPEG") as err:
        check("imagenet-val", path)
    assert expected in str(err.value)


def test_imagenet_run_on_tiny_resnet_records_accuracy_over_the_subset(cli, tmp_path):
    pytest.importorskip("torch")
    root = write_imagenet(tmp_path / "imagenet")
    args = ("--model", "resnet50", "--model-size", "tiny", "--dataset", "imagenet-val", "--dataset-path", str(root))
    proc = cli("run", "--image", "onnx-cpu", *args, "--limit", "5", *RUN)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = cli.records()[-1]
    assert rec["spec"]["dataset_path"] == str(root) and rec["spec"]["source"] == "torch"
    assert rec["result"]["dataset_info"]["preprocessing"] == "torch"
    acc = rec["metrics"]["accuracy"]
    assert acc["n"] == 5 and not acc["meaningful"]
    expected = [label for _, label in subset([(f, i // 3) for i, f in enumerate(range(9))], 5, 0)]
    assert rec["result"]["labels"] == expected


# --- imdb: a tiny aclImdb tree, a CSV and a Parquet file ----------------------------------------

REVIEWS = [
    ("A wonderful, moving film.", 1),
    ("Dull and far too long.", 0),
    ("Loved every minute!", 1),
    ("The worst plot I have seen.", 0),
    ("Great acting, great score.", 1),
]


def write_aclimdb(root: Path) -> Path:
    for i, (text, label) in enumerate(REVIEWS):
        folder = root / "aclImdb" / "test" / ("pos" if label else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}_{8 if label else 2}.txt").write_text(text)
    (root / "aclImdb" / "train" / "pos").mkdir(parents=True)  # train reviews are never read
    (root / "aclImdb" / "train" / "pos" / "0_9.txt").write_text("not a test review")
    return root


def test_imdb_acl_layout_reads_test_reviews_with_neg_0_and_pos_1(tmp_path):
    from suite.datasets import imdb

    root = write_aclimdb(tmp_path)
    for path in (root, root / "aclImdb", root / "aclImdb" / "test"):
        items = imdb.find(path)
        pairs = sorted(zip(imdb.texts(items), (label for _, label in items), strict=True))
        assert pairs == sorted(REVIEWS)
    assert check("imdb", root) == 5 and check("imdb", root, limit=2) == 2


def test_imdb_tables_accept_csv_and_parquet_with_named_labels(tmp_path):
    from suite.datasets import imdb

    table = tmp_path / "imdb.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "sentiment"])
        writer.writerows((text, "positive" if label else "negative") for text, label in REVIEWS)
    items = imdb.find(table)
    assert list(zip(imdb.texts(items), (label for _, label in items), strict=True)) == REVIEWS
    pl = pytest.importorskip("polars")
    parquet = tmp_path / "imdb.parquet"
    pl.DataFrame({"text": [t for t, _ in REVIEWS], "label": [v for _, v in REVIEWS]}).write_parquet(parquet)
    items = imdb.find(parquet)
    assert [label for _, label in items] == [v for _, v in REVIEWS]


@pytest.mark.parametrize(
    "content, name, expected",
    [
        ("body,stars\nx,1\n", "imdb.csv", "has columns ['body', 'stars']"),
        ("text,label\nx,maybe\n", "imdb.csv", "row 2 has label 'maybe'"),
        ("x", "imdb.json", "neither .csv nor .parquet"),
        (None, "aclImdb", "no test/pos and test/neg"),
    ],
)
def test_imdb_layout_errors_say_what_was_expected(tmp_path, content, name, expected):
    path = tmp_path / name
    if content is None:
        (path / "train" / "pos").mkdir(parents=True)
    else:
        path.write_text(content)
    with pytest.raises(DatasetError, match="aclImdb/test/pos") as err:
        check("imdb", path)
    assert expected in str(err.value)


def test_subset_is_seeded_ordered_and_complete_without_limit():
    items = list(range(100))
    a, b, c = subset(items, 10, 0), subset(items, 10, 0), subset(items, 10, 1)
    assert a == b != c and a == sorted(a) and len(set(a)) == 10
    assert subset(items, None, 0) == items and subset(items, 500, 3) == items
    assert a == sorted(random.Random(0).sample(range(100), 10))  # stable: stdlib's documented sampler
