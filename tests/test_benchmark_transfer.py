"""The transfer benchmark's harness (benchmarks/transfer.py): held-out target halves, statistics, evaluation cache."""

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's benchmarks/ folder
from benchmarks import transfer  # noqa: E402


def test_target_halves_are_disjoint_stratified_and_whole(tmp_path):
    files = transfer.split_targets(tmp_path)
    unlabeled_all = files["all"]["unlabeled"].read_text().splitlines()
    total = 0
    for domain in transfer.TARGETS:
        test = pd.read_json(files[domain]["test"], lines=True)
        train = pd.read_json(files[domain]["train"], lines=True)
        whole = transfer.BUILTIN_DATASETS[f"builtin:sentiment_{domain}"]()
        # Every text in exactly one half; no test text among the texts adaptation and alignment read.
        assert len(test) + len(train) == len(whole)
        assert not set(test["text"]) & set(train["text"])
        assert not set(test["text"]) & set(unlabeled_all)
        assert files[domain]["unlabeled"].read_text().splitlines() == [t.replace("\n", " ") for t in train["text"]]
        # Stratified: each label's count halves (floor to the test side).
        for label, count in whole["label"].value_counts().items():
            assert (test["label"] == label).sum() == count // 2
        total += len(train)
    assert len(unlabeled_all) == total
    # Seeded: a second call writes the same halves.
    again = transfer.split_targets(tmp_path / "again")
    assert again["nyt"]["test"].read_text() == files["nyt"]["test"].read_text()


def test_mean_std_and_paired_delta_by_hand():
    assert transfer.mean_std([0.80, 0.82, 0.84]) == "82.00 ± 2.00"
    assert transfer.mean_std([0.5]) == "50.00 ± 0.00"
    # Paired by seed: differences +1, +3, +5 points -> mean +3, sd 2.
    assert transfer.delta([0.81, 0.85, 0.89], [0.80, 0.82, 0.84]) == "+3.00 ± 2.00"


def test_target_accuracy_is_evaluated_once_per_model_domain_and_file(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(transfer, "accuracy_on", lambda model, test, length: calls.append(test.name) or 0.75)
    test_file = tmp_path / "nyt_test.jsonl"
    test_file.write_text('{"text": "a", "label": "positive"}\n')
    model = tmp_path / "run"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    assert transfer.target_accuracy(model, "nyt", test_file, 64) == 0.75
    assert transfer.target_accuracy(model, "nyt", test_file, 64) == 0.75
    assert calls == ["nyt_test.jsonl"]
    test_file.write_text('{"text": "a b", "label": "negative"}\n')  # another test file: evaluated again
    transfer.target_accuracy(model, "nyt", test_file, 64)
    transfer.target_accuracy(model, "nyt", test_file, 32)
    assert len(calls) == 3
    (model / "model.safetensors").write_bytes(b"retrained")  # a new run in the same folder: evaluated again
    transfer.target_accuracy(model, "nyt", test_file, 32)
    assert len(calls) == 4


@pytest.mark.parametrize("values, expected", [([0.9, 0.9], "90.00 ± 0.00"), ([0.1, 0.3], "20.00 ± 14.14")])
def test_mean_std_two_seeds(values, expected):
    assert transfer.mean_std(values) == expected
