"""bert-imdb: transformers' BERT sequence classifier on torch and its ONNX export, with token-id
inputs (input_ids, attention_mask) from real IMDB layouts written here."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

TINY = ["--model", "bert-imdb", "--model-size", "tiny", "--runner", "local", "--warmup", "1", "--batch-size", "4"]
GOOD = ["great", "wonderful", "moving", "brilliant", "superb"]
BAD = ["awful", "boring", "dull", "terrible", "clumsy"]


def reviews(n: int, seed: int) -> list[tuple[str, int]]:
    """Short reviews whose sentiment a tiny model can learn: one telling adjective each."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 2
        word = rng.choice(GOOD if label else BAD)
        out.append((f"The film was {word}, the {rng.choice(['plot', 'cast', 'score'])} too.", label))
    return out


def write_acl(root: Path, items: list[tuple[str, int]]) -> Path:
    for i, (text, label) in enumerate(items):
        folder = root / "aclImdb" / "test" / ("pos" if label else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}_{9 if label else 1}.txt").write_text(text)
    return root


def write_csv(path: Path, items: list[tuple[str, int]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(items)
    return path


@pytest.mark.slow
def test_tiny_bert_runs_imdb_on_torch_and_onnxruntime_with_the_same_predictions(cli, tmp_path):
    root = write_acl(tmp_path / "imdb", reviews(10, 0))
    recs = {}
    for image in ("torch-cpu", "onnx-cpu"):
        proc = cli("run", "--image", image, *TINY, "--dataset", "imdb", "--dataset-path", str(root))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        recs[image] = cli.records()[-1]
    for rec in recs.values():
        acc = rec["metrics"]["accuracy"]
        assert rec["status"] == "ok" and acc["n"] == 10 and not acc["meaningful"]
        assert "WordPiece" in rec["result"]["dataset_info"]["preprocessing"]
        assert sorted(rec["result"]["labels"]) == [0] * 5 + [1] * 5
    assert recs["onnx-cpu"]["conversion"] == "torch2onnx" and recs["onnx-cpu"]["artifact"]["parity"]["ok"]
    assert recs["onnx-cpu"]["result"]["predictions"] == recs["torch-cpu"]["result"]["predictions"]


def test_synthetic_token_inputs_and_max_length_option(cli):
    for image in ("torch-cpu", "onnx-cpu"):
        proc = cli("run", "--image", image, *TINY, "--samples", "8", "--option", "max_length=16")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rec = cli.records()[-1]
        assert rec["metrics"]["samples"] == 8 and rec["metrics"]["accuracy"]["reason"].startswith("not applicable")


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT fine-tuned here on made-up reviews, saved with its tokenizer as a model folder."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    train = reviews(64, 1)
    texts = [t for t, _ in train]
    folder = tmp_path_factory.mktemp("bert-finetuned")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    fast.save_pretrained(folder)
    batch = fast(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=200,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=2,
    )
    model = BertForSequenceClassification(config).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    labels = torch.tensor([label for _, label in train])
    for _ in range(40):
        opt.zero_grad()
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss.backward()
        opt.step()
    model.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_a_finetuned_model_folder_runs_with_its_own_tokenizer_and_is_accurate(cli, tmp_path, finetuned):
    table = write_csv(tmp_path / "imdb.csv", reviews(20, 2))
    args = ("--weights", str(finetuned), "--dataset", "imdb", "--dataset-path", str(table), "--option", "max_length=16")
    proc = cli("run", "--image", "torch-cpu", *TINY, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = cli.records()[-1]
    acc = rec["metrics"]["accuracy"]
    print(f"\nfine-tuned tiny BERT on 20 held-out reviews: {acc['value']:.2f}")
    assert rec["weights"] == "path" and acc["meaningful"] and acc["n"] == 20 and acc["value"] > 0.8
    assert "AutoTokenizer" in rec["result"]["dataset_info"]["preprocessing"]
    # The same folder converted (torch2onnx) and run on ONNX Runtime: same predictions, same accuracy.
    proc = cli("run", "--image", "onnx-cpu", *TINY, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    conv = cli.records()[-1]
    assert conv["artifact"]["conversion"] == "torch2onnx" and conv["artifact"]["parity"]["ok"]
    assert conv["artifact"]["key_inputs"]["weights_sha256"]  # the folder's digest is part of the cache key
    assert conv["result"]["predictions_digest"] == rec["result"]["predictions_digest"]
    assert conv["metrics"]["accuracy"]["value"] == acc["value"]


def test_pretrained_bert_offline_fails_with_a_clear_reason(cli, tmp_path):
    proc = cli(
        "run",
        "--image",
        "torch-cpu",
        "--model",
        "bert-imdb",
        "--weights",
        "pretrained",
        "--runner",
        "local",
        "--samples",
        "2",
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hub")},
    )
    assert proc.returncode == 1
    rec = cli.records()[-1]
    assert rec["status"] == "failed" and "could not load BERT from bert-base-uncased" in rec["failure"]["reason"]
    assert "--weights DIR" in rec["failure"]["reason"]


def test_bert_refuses_image_datasets(cli):
    # (TensorFlow and MXNet definitions: tests/test_bert_frameworks.py)
    proc = cli("run", "--image", "torch-cpu", *TINY, "--dataset", "digits")
    assert proc.returncode == 2 and "digits serves image-classification models" in proc.stderr


@pytest.mark.slow
@pytest.mark.network
def test_pretrained_bert_downloads_through_transformers(cli):
    proc = cli(
        "run",
        "--image",
        "torch-cpu",
        "--model",
        "bert-imdb",
        "--weights",
        "pretrained",
        "--runner",
        "local",
        "--samples",
        "2",
    )
    if proc.returncode != 0 and "could not load BERT" in proc.stdout:
        pytest.skip("SKIPPING NETWORK TEST: the model hub is not reachable from here")
    assert proc.returncode == 0, proc.stdout


def test_a_folder_with_only_a_wordpiece_vocabulary_tokenises_like_transformers(tmp_path, finetuned):
    """KerasHub presets keep assets/tokenizer/vocabulary.txt, not tokenizer.json: the same ids."""
    from transformers import AutoTokenizer, BertTokenizer

    from suite.datasets.tokenize import encode

    fast = AutoTokenizer.from_pretrained(finetuned)
    tokens = [t for t, _ in sorted(fast.get_vocab().items(), key=lambda kv: kv[1])]
    preset = tmp_path / "keras-preset"
    (preset / "assets" / "tokenizer").mkdir(parents=True)
    (preset / "assets" / "tokenizer" / "vocabulary.txt").write_text("\n".join(tokens) + "\n")
    texts = [t for t, _ in reviews(12, 5)] + ["Unseen WORDS, punctuation!"]
    got, how = encode("bert-imdb", texts, 16, 200, "path", str(preset))
    assert "vocabulary.txt" in how
    # The reference: transformers' own BERT tokenizer on the same vocabulary file.
    reference = BertTokenizer(str(preset / "assets" / "tokenizer" / "vocabulary.txt"), do_lower_case=True)
    want = reference(texts, padding="max_length", truncation=True, max_length=16, return_tensors="np")
    assert (got["input_ids"] == want["input_ids"]).all()
    assert (got["attention_mask"] == want["attention_mask"]).all()
