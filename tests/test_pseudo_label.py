"""Self-training: class-balanced pseudo-label selection, `nlp-reuse pseudo-label`, and finetune --extra_train_file."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import LABELS, build_tiny_bert, make_examples, write_jsonl
from nlp_reuse.commands import main as nlp_reuse_main
from nlp_reuse.config import DataArguments, FinetuneArguments
from nlp_reuse.data import DataError, load_splits, load_splits_with_extra
from nlp_reuse.errors import ConfigError, ModelError
from nlp_reuse.pipeline import run_finetune
from nlp_reuse.pseudo_label import PseudoLabelArguments, run_pseudo_label, select_confident


def test_select_confident_keeps_the_top_fraction_of_each_predicted_class():
    probabilities = np.array([
        [0.9, 0.1],   # 0: class 0, 0.9
        [0.6, 0.4],   # 1: class 0, 0.6
        [0.2, 0.8],   # 2: class 1, 0.8
        [0.7, 0.3],   # 3: class 0, 0.7
        [0.45, 0.55],  # 4: class 1, 0.55
        [0.95, 0.05],  # 5: class 0, 0.95
    ])
    # class 0 has rows 5 (0.95), 0 (0.9), 3 (0.7), 1 (0.6): half keeps 5 and 0; class 1 has 2 (0.8), 4: keeps 2.
    assert select_confident(probabilities, 0.5).tolist() == [0, 2, 5]
    assert select_confident(probabilities, 1.0).tolist() == [0, 1, 2, 3, 4, 5]
    # floor: 0.3 of four rows is one, 0.3 of two rows is none (the over-predicted class cannot crowd the other out)
    assert select_confident(probabilities, 0.3).tolist() == [5]
    assert select_confident(probabilities, 1.0, min_confidence=0.75).tolist() == [0, 2, 5]
    # equal: the same number of each class, fraction * 6 / 2 = 1.5 -> 1 each; 1.0 -> 3 each, class 1 has only 2
    assert select_confident(probabilities, 0.5, balance="equal").tolist() == [2, 5]
    assert select_confident(probabilities, 1.0, balance="equal").tolist() == [0, 2, 3, 4, 5]
    ties = np.array([[0.8, 0.2], [0.8, 0.2], [0.8, 0.2]])
    assert select_confident(ties, 0.5).tolist() == [0]  # a tie keeps the earlier row
    assert select_confident(np.array([[0.5, 0.5]]), 0.5).size == 0


@pytest.mark.parametrize("kw, message", [
    ({"fraction": 0.0}, "--fraction is out of range"),
    ({"fraction": 1.5}, "--fraction is out of range"),
    ({"min_confidence": 1.0}, "--min_confidence is out of range"),
    ({"output_file": "out.txt"}, "unsupported suffix"),
    ({"label_column": "text"}, "The output columns clash"),
    ({"balance": "uniform"}, "--balance is unknown"),
    ({"batch_size": 0}, "--batch_size or --max_length is too small"),
    ({"max_length": 4}, "--batch_size or --max_length is too small"),
])
def test_bad_arguments_are_refused(tmp_path, kw, message):
    base = {"model_name_or_path": "m", "unlabeled_file": str(tmp_path / "u.txt"),
            "output_file": str(tmp_path / "out.jsonl")}
    base.update({k: str(tmp_path / v) if k == "output_file" else v for k, v in kw.items()})
    with pytest.raises(ConfigError, match=message):
        PseudoLabelArguments(**base)


def test_existing_output_and_output_equal_to_input_are_refused(tmp_path):
    texts = tmp_path / "u.jsonl"
    texts.write_text('{"text": "a"}\n')
    with pytest.raises(ConfigError, match="--output_file is --unlabeled_file"):
        PseudoLabelArguments(model_name_or_path="m", unlabeled_file=str(texts), output_file=str(texts),
                             overwrite_output_file=True)
    out = tmp_path / "kept.jsonl"
    out.write_text("mine\n")
    with pytest.raises(ConfigError, match="--overwrite_output_file true"):
        PseudoLabelArguments(model_name_or_path="m", unlabeled_file=str(texts), output_file=str(out))
    assert out.read_text() == "mine\n"


def test_pseudo_label_writes_the_confident_texts_with_the_models_labels(tiny_teacher_dir, tmp_path, capsys):
    texts = [row["text"] for row in make_examples(30, seed=11)]
    unlabeled = tmp_path / "target.txt"
    unlabeled.write_text("\n".join(texts) + "\n\n")  # a blank line is no text
    out = tmp_path / "pseudo" / "target.jsonl"
    assert nlp_reuse_main(["pseudo-label", "--model_name_or_path", str(tiny_teacher_dir), "--unlabeled_file",
                           str(unlabeled), "--output_file", str(out), "--fraction", "0.5", "--max_length", "32"]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    with torch.no_grad():
        probabilities = model(**tokenizer(texts, padding=True, truncation=True, max_length=32,
                                          return_tensors="pt")).logits.softmax(-1).numpy()
    predicted = probabilities.argmax(1)
    expected = select_confident(probabilities, 0.5)
    rows = pd.read_json(out, lines=True)
    assert list(rows.columns) == ["text", "label", "confidence"]
    assert rows["text"].tolist() == [texts[i] for i in expected]
    assert rows["label"].tolist() == [model.config.id2label[int(predicted[i])] for i in expected]
    np.testing.assert_allclose(rows["confidence"], probabilities[expected].max(1), atol=1e-4)
    report = json.loads(out.with_name("target.jsonl.report.json").read_text())
    assert report["num_texts"] == 30 and report["num_kept"] == len(expected)
    assert [r["predicted"] for r in report["per_label"]] == [int((predicted == i).sum()) for i in range(3)]
    assert [r["kept"] for r in report["per_label"]] == [int((predicted == i).sum()) // 2 for i in range(3)]
    assert f"{len(expected)} of 30 texts labelled into {out}" in capsys.readouterr().out


def test_pseudo_label_refuses_a_model_without_named_labels(tiny_tokenizer_dir, tmp_path):
    plain = build_tiny_bert(tiny_tokenizer_dir, tmp_path / "plain", labels=None)  # LABEL_0, LABEL_1: not fine-tuned
    unlabeled = tmp_path / "t.txt"
    unlabeled.write_text("good movie\n")
    args = PseudoLabelArguments(model_name_or_path=str(plain), unlabeled_file=str(unlabeled),
                                output_file=str(tmp_path / "o.jsonl"))
    with pytest.raises(ModelError, match="no named labels"):
        run_pseudo_label(args)
    assert not (tmp_path / "o.jsonl").exists()


# ---------------------------------------------------------------------------------------- --extra_train_file


def _data(tmp_path, extra_rows, **kw) -> DataArguments:
    write_jsonl(tmp_path / "train.jsonl", make_examples(60, seed=1))
    write_jsonl(tmp_path / "test.jsonl", make_examples(12, seed=3))
    write_jsonl(tmp_path / "extra.jsonl", extra_rows)
    return DataArguments(train_file=str(tmp_path / "train.jsonl"), test_file=str(tmp_path / "test.jsonl"),
                         extra_train_file=str(tmp_path / "extra.jsonl"), **kw)


def test_extra_rows_join_train_after_subsampling_and_leave_evaluation_alone(tmp_path):
    extra = [{"text": f"pseudo text {i} good", "label": "positive", "confidence": 0.9} for i in range(7)]
    data = _data(tmp_path, extra, max_train_samples=20)
    plain = DataArguments(**{**data.__dict__, "extra_train_file": None})
    with_extra, names = load_splits(data)
    without, _ = load_splits(plain)
    assert len(with_extra["train"]) == 20 + 7  # --max_train_samples counts the data's own examples
    assert with_extra["train"]["text"][:20] == without["train"]["text"]
    assert with_extra["train"]["text"][20:] == [r["text"] for r in extra]
    assert with_extra["train"]["label"][20:] == [names.index("positive")] * 7
    for split in ("validation", "test"):
        assert with_extra[split]["text"] == without[split]["text"]
    assert with_extra["train"].column_names == ["text", "label"]  # the confidence column is not carried


def test_extra_rows_with_an_unknown_label_are_refused(tmp_path):
    data = _data(tmp_path, [{"text": "x y z", "label": "angry"}, {"text": "a b c", "label": "positive"}])
    with pytest.raises(DataError) as err:
        load_splits(data)
    message = str(err.value)
    assert "has labels the train split does not have" in message
    assert "['angry'] in 1 rows" in message and str(LABELS) in message


def test_extra_rows_evaluated_on_are_refused(tmp_path):
    test_text = make_examples(12, seed=3)[4]["text"]
    data = _data(tmp_path, [{"text": "new text here", "label": "neutral"},
                            {"text": f"  {test_text} ", "label": "neutral"}])
    with pytest.raises(DataError) as err:
        load_splits(data)
    assert "shares 1 texts with the validation/test splits, e.g. row 1" in str(err.value)
    assert "drop those rows" in str(err.value)


def test_the_extra_row_count_is_the_rows_the_train_split_took(tmp_path):
    extra = [{"text": "fine words", "label": "positive"}, {"text": "  ", "label": "negative"},
             {"text": "dull words", "label": "negative"}]  # the blank text is dropped, like the train split's
    data = _data(tmp_path, extra)
    splits, _, num_extra = load_splits_with_extra(data)
    plain, _ = load_splits(DataArguments(train_file=str(tmp_path / "train.jsonl"),
                                         test_file=str(tmp_path / "test.jsonl")))
    assert num_extra == 2 == len(splits["train"]) - len(plain["train"])
    assert load_splits_with_extra(DataArguments(train_file=str(tmp_path / "train.jsonl")))[2] == 0


def test_extra_rows_need_the_train_columns(tmp_path):
    data = _data(tmp_path, [{"sentence": "good", "label": "positive"}])
    with pytest.raises(DataError, match="The extra_train split has no column 'text'"):
        load_splits(data)


def test_finetune_reports_the_extra_training_rows(tiny_teacher_dir, tmp_path):
    extra = [{"text": f"extra words {w}", "label": "positive"} for w in ("great", "superb", "lovely")]
    data = _data(tmp_path, extra, max_length=32)
    report = run_finetune(data, FinetuneArguments(output_dir=str(tmp_path / "ft"),
                                                  model_name_or_path=str(tiny_teacher_dir), num_train_epochs=1,
                                                  per_device_train_batch_size=16, latency_samples=2,
                                                  disable_tqdm=True))
    assert report["task"]["extra_train_file"] == str((tmp_path / "extra.jsonl").resolve())
    assert report["task"]["num_extra_train"] == 3
    assert "extra_train_labelled_by" not in report["task"]  # not pseudo-label output: no report beside it
    plain, _ = load_splits(DataArguments(train_file=str(tmp_path / "train.jsonl"),
                                         test_file=str(tmp_path / "test.jsonl")))
    assert report["task"]["num_train"] == len(plain["train"]) + 3


LOGITS = np.log(np.array([
    [0.90, 0.05, 0.05],  # 0 negative 0.90
    [0.10, 0.10, 0.80],  # 1 positive 0.80
    [0.60, 0.20, 0.20],  # 2 negative 0.60
    [0.95, 0.03, 0.02],  # 3 negative 0.95
    [0.20, 0.10, 0.70],  # 4 positive 0.70
    [0.70, 0.20, 0.10],  # 5 negative 0.70
    [0.10, 0.50, 0.40],  # 6 neutral 0.50
    [0.80, 0.10, 0.10],  # 7 negative 0.80
]))


@pytest.mark.parametrize("balance, kept", [("proportional", [0, 1, 3]), ("equal", [1, 3, 6])])
def test_class_balance_end_to_end(tiny_teacher_dir, tmp_path, monkeypatch, caplog, balance, kept):
    """Fixed logits (the tiny random model predicts one class): proportional keeps half of each predicted class,
    rounded down (negatives 3 and 0 of five; positive 1 of two; neutral's one text: none), equal keeps
    floor(0.5 * 8 / 3) = 1 of each class (3, 1 and the neutral 6)."""
    monkeypatch.setattr("nlp_reuse.predict.predict_logits", lambda model, texts, **kw: LOGITS[: len(texts)])
    texts = [f"text number {i}" for i in range(8)]
    (tmp_path / "u.txt").write_text("\n".join(texts))
    out = tmp_path / f"{balance}.csv"
    report = run_pseudo_label(PseudoLabelArguments(
        model_name_or_path=str(tiny_teacher_dir), unlabeled_file=str(tmp_path / "u.txt"), output_file=str(out),
        balance=balance, text_column="sentence", label_column="y"))
    rows = pd.read_csv(out)
    assert rows["sentence"].tolist() == [texts[i] for i in kept]
    names = ["negative", "neutral", "positive"]
    assert rows["y"].tolist() == [names[int(LOGITS[i].argmax())] for i in kept]
    assert report["balance"] == balance and report["num_kept"] == 3
    # proportional keeps no neutral text, and says so
    assert ("No text was kept for the label(s) neutral" in caplog.text) == (balance == "proportional")


def test_nothing_kept_is_an_error_and_writes_nothing(tiny_teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("nlp_reuse.predict.predict_logits", lambda model, texts, **kw: LOGITS[: len(texts)])
    (tmp_path / "u.txt").write_text("a\nb\nc\nd\n")
    out = tmp_path / "kept.jsonl"
    with pytest.raises(DataError, match="No text of .* was kept: nothing written"):
        run_pseudo_label(PseudoLabelArguments(model_name_or_path=str(tiny_teacher_dir),
                                              unlabeled_file=str(tmp_path / "u.txt"), output_file=str(out),
                                              min_confidence=0.99))
    assert not out.exists() and not (tmp_path / "kept.jsonl.report.json").exists()


def test_a_pair_task_model_is_refused(tiny_teacher_dir, tmp_path):
    import shutil

    model = shutil.copytree(tiny_teacher_dir, tmp_path / "pairs")
    (model / "run_args.json").write_text(json.dumps({"data": {"text_pair_column": "hypothesis"}}))
    (tmp_path / "u.txt").write_text("a\nb\n")
    with pytest.raises(ConfigError, match="classifies text pairs"):
        run_pseudo_label(PseudoLabelArguments(model_name_or_path=str(model), unlabeled_file=str(tmp_path / "u.txt"),
                                              output_file=str(tmp_path / "o.jsonl")))


def test_finetune_records_how_pseudo_labels_were_made(tiny_teacher_dir, tmp_path, monkeypatch):
    """The task entry copies the pseudo-label report when the data is loaded: the card is the same from any folder,
    and a file labelled again later does not change what an earlier model says of itself."""
    write_jsonl(tmp_path / "train.jsonl", make_examples(60, seed=1))
    write_jsonl(tmp_path / "test.jsonl", make_examples(12, seed=3))
    (tmp_path / "target.txt").write_text("\n".join(f"target words {i} good" for i in range(12)))
    monkeypatch.chdir(tmp_path)
    nlp_reuse_main(["pseudo-label", "--model_name_or_path", str(tiny_teacher_dir), "--unlabeled_file", "target.txt",
                    "--output_file", "pseudo.jsonl", "--fraction", "1"])
    report = run_finetune(
        DataArguments(train_file="train.jsonl", test_file="test.jsonl", extra_train_file="pseudo.jsonl", max_length=32),
        FinetuneArguments(output_dir=str(tmp_path / "ft"), model_name_or_path=str(tiny_teacher_dir),
                          num_train_epochs=1, per_device_train_batch_size=16, latency_samples=2, disable_tqdm=True))
    made = report["task"]["extra_train_labelled_by"]
    assert made["model_name_or_path"] == str(tiny_teacher_dir.resolve())
    assert made["unlabeled_file"] == str((tmp_path / "target.txt").resolve())
    assert (made["fraction"], made["balance"], made["num_texts"], made["num_kept"]) == (1.0, "proportional", 12, 12)
    assert report["task"]["num_extra_train"] == 12
