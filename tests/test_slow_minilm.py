"""The real embedded MiniLM-L6 teacher on real TREC-6 questions, end to end (minutes on CPU: marked slow)."""

import json

import pytest


@pytest.mark.slow
def test_minilm_finetune_then_distill_on_trec6(tmp_path):
    from nlp_reuse.commands import distill, finetune

    common = ["--dataset_name", "builtin:trec6", "--max_length", "48", "--max_train_samples", "1500",
              "--per_device_train_batch_size", "32", "--learning_rate", "1e-4", "--disable_tqdm", "true",
              "--latency_samples", "16"]
    teacher = finetune.main(["--model_name_or_path", "builtin:minilm", "--output_dir", str(tmp_path / "teacher"),
                             "--num_train_epochs", "2", *common])
    assert teacher["model"]["num_layers"] == 6 and teacher["model"]["params"] > 22_000_000
    assert teacher["model"]["test"]["accuracy"] > 0.80  # 6 classes: chance is ~0.23

    report = distill.main(["--teacher_model_name_or_path", str(tmp_path / "teacher"), "--output_dir",
                           str(tmp_path / "distill"), "--student_num_layers", "3", "--num_train_epochs", "2",
                           "--run_baseline", "true", *common])
    assert report["student"]["num_layers"] == 3
    assert report["student"]["params"] < 0.8 * report["teacher"]["params"]
    assert report["retention"] > 0.9
    assert report["student"]["latency_ms"] < report["teacher"]["latency_ms"]
    assert json.loads((tmp_path / "distill" / "report.json").read_text())["student"]["path"] == "student"
