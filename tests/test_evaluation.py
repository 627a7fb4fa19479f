"""Metrics, batched prediction, latency measurement, size on disk, and the report / seed tables."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from conftest import build_tiny_bert
from nlp_reuse.evaluation import (
    classification_metrics,
    format_seed_table,
    format_table,
    measure_latency,
    size_on_disk_mb,
    summarize_seeds,
    torch_predictor,
)
from nlp_reuse.predict import predict_logits

# Lengths from 1 to 9 tokens, so every batch of 3 (and the single pass over all) pads differently.
TEXTS = ["good", "the movie was really quite awful and boring", "plain", "a lovely plot", "dull acting",
         "it was the best film and the story was superb"]


def test_classification_metrics_hand_case():
    # 3 classes; class 2 never predicted: F1 = (2/3 + 2/3 + 0) / 3 ... computed by hand below.
    labels = np.array([0, 0, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0])
    m = classification_metrics(preds, labels)
    assert m["accuracy"] == pytest.approx(3 / 5)
    f1_0 = 2 * (1 / 2 * 1 / 2) / (1 / 2 + 1 / 2)  # precision 1/2, recall 1/2
    f1_1 = 2 * (2 / 3 * 1) / (2 / 3 + 1)  # precision 2/3, recall 1
    assert m["macro_f1"] == pytest.approx((f1_0 + f1_1 + 0.0) / 3)


@pytest.fixture(scope="module")
def tiny_classifier(tiny_tokenizer_dir, tmp_path_factory):
    folder = build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("clf"), num_layers=2)  # dropout 0.1
    return AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_predict_logits_equals_one_plain_forward_pass_and_restores_train_mode(tiny_classifier, batch_size):
    model, tokenizer = tiny_classifier
    model.eval()
    with torch.no_grad():  # the reference: every text in one padded batch
        expected = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    model.train()
    model.bert.embeddings.eval()  # a submodule the caller keeps in eval must stay so
    texts_logits = predict_logits(model, TEXTS, tokenizer=tokenizer, batch_size=batch_size)
    dataset = Dataset.from_dict({**tokenizer(TEXTS), "label": list(range(len(TEXTS)))})  # unpadded, extra column
    dataset_logits = predict_logits(model, dataset, collator=DataCollatorWithPadding(tokenizer), batch_size=batch_size)
    for got in (texts_logits, dataset_logits):
        assert got.dtype == np.float32 and got.shape == (len(TEXTS), 3)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)  # dropout off, padding masked, order kept
    assert model.training and model.bert.encoder.training and not model.bert.embeddings.training
    model.eval()


def test_torch_predictor_gives_label_ids_and_leaves_the_mode_alone(tiny_classifier):
    model, tokenizer = tiny_classifier
    expected = predict_logits(model, TEXTS, tokenizer=tokenizer).argmax(-1)
    model.train()
    np.testing.assert_array_equal(torch_predictor(model, tokenizer)(TEXTS), expected)
    assert model.training
    model.eval()


def test_measure_latency_counts_batches_and_examples():
    calls = []
    stats = measure_latency(lambda batch: calls.append(len(batch)), [f"t{i}" for i in range(10)], batch_size=4,
                            warmup=1)
    assert calls == [4, 4, 4, 2]  # one warm-up batch, then all three batches timed
    assert stats["num_batches"] == 3 and stats["p50_ms"] >= 0 and stats["throughput"] > 0


def test_size_on_disk_counts_weights_only(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"0" * 2_000_000)
    (tmp_path / "config.json").write_text("{}" * 1000)
    assert size_on_disk_mb(tmp_path) == pytest.approx(2.0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No weight file"):
        size_on_disk_mb(empty)


def _report(teacher, student, baseline):
    entry = lambda acc: {"params": 10, "num_layers": 2, "size_mb": 1.0, "latency_ms": 1.0,  # noqa: E731
                         "test": {"accuracy": acc, "macro_f1": acc - 0.1}}
    return {"teacher": entry(teacher), "student": entry(student), "baseline": entry(baseline),
            "retention": student / teacher}


def test_summarize_seeds_mean_std_and_gain():
    reports = {1: _report(0.9, 0.88, 0.86), 2: _report(0.9, 0.90, 0.91), 3: _report(0.9, 0.89, 0.85)}
    summary = summarize_seeds(reports)
    assert summary["models"]["student"]["accuracy"]["mean"] == pytest.approx(0.89)
    assert summary["models"]["student"]["accuracy"]["std"] == pytest.approx(0.01)
    assert summary["kd_gain_over_baseline"]["mean"] == pytest.approx((0.02 - 0.01 + 0.04) / 3)
    assert summary["kd_ahead_in_seeds"] == 2
    table = format_seed_table(reports, summary)
    assert "| 2 | 0.9000 | 0.9000 | 0.9100 | 1.0000 |" in table
    assert "KD ahead in 2 of 3 seeds" in table


def test_format_table_rows():
    text = format_table(_report(0.9, 0.88, 0.86))
    lines = text.splitlines()
    assert lines[0].split() == ["model", "layers", "params", "size", "MB", "accuracy", "macro-F1", "latency", "ms"]
    assert [line.split()[0] for line in lines[2:5]] == ["teacher", "student", "baseline"]
    assert "retention (student / teacher accuracy): 0.9778" in text
