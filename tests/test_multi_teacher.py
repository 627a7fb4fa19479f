"""Multi-teacher distillation: the ensemble's soft targets, its cache entry, its report row, and its refusals."""

import json

import numpy as np
import pytest
import torch
from datasets import load_from_disk
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import build_tiny_bert
from nlp_reuse.commands.distill import main as distill_main
from nlp_reuse.config import DistillScriptArguments
from nlp_reuse.ensemble import TeacherEnsemble, ensemble_logits
from nlp_reuse.errors import NlpReuseError
from nlp_reuse.hub.card import render_model_card
from nlp_reuse.losses import kd_kl_loss


def test_ensemble_target_is_the_weighted_average_of_tempered_distributions():
    z = torch.tensor([[[2.0, 0.0, -1.0]], [[-1.0, 1.0, 0.5]], [[0.0, 0.0, 3.0]]])  # (teachers, batch, labels)
    w, T = torch.tensor([0.5, 0.3, 0.2]), 2.0
    # By hand: p_i = softmax(z_i / T), target = sum_i w_i p_i.
    p = [np.exp(row / T) / np.exp(row / T).sum() for row in z[:, 0].numpy()]
    expected = 0.5 * p[0] + 0.3 * p[1] + 0.2 * p[2]
    out = ensemble_logits(z, w, T)
    np.testing.assert_allclose(torch.softmax(out / T, -1)[0].numpy(), expected, atol=1e-6)
    # The KD loss against the ensemble logits is the KL to that averaged distribution.
    s = torch.tensor([[0.3, -0.2, 0.1]])
    log_q = torch.log_softmax(s / T, -1)[0].numpy()
    assert kd_kl_loss(s, out, T).item() == pytest.approx(T**2 * float((expected * (np.log(expected) - log_q)).sum()),
                                                        rel=1e-4)
    # mse: the weighted average of the raw logits.
    np.testing.assert_allclose(ensemble_logits(z, w, T, "mse")[0].numpy(),
                               (0.5 * z[0, 0] + 0.3 * z[1, 0] + 0.2 * z[2, 0]).numpy(), atol=1e-6)
    # One teacher of weight 1 is that teacher (up to the softmax's free shift).
    one = ensemble_logits(z[:1], torch.tensor([1.0]), T)
    np.testing.assert_allclose(torch.softmax(one / T, -1).numpy(), torch.softmax(z[0] / T, -1).numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def second_teacher(tiny_tokenizer_dir, tmp_path_factory):
    return build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("teacher_b"), seed=7)


def test_ensemble_module_averages_its_teachers(tiny_teacher_dir, second_teacher):
    a, b = (AutoModelForSequenceClassification.from_pretrained(p).eval() for p in (tiny_teacher_dir, second_teacher))
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    batch = tokenizer(["good movie", "awful plot and acting"], padding=True, return_tensors="pt")
    ensemble = TeacherEnsemble([a, b], [0.25, 0.75], temperature=3.0).eval()
    with torch.no_grad():
        pa, pb = (torch.softmax(m(**batch).logits / 3.0, -1) for m in (a, b))
        got = torch.softmax(ensemble(**batch).logits / 3.0, -1)
    torch.testing.assert_close(got, 0.25 * pa + 0.75 * pb, atol=1e-6, rtol=0)
    # Weights and temperature are in the state dict: the cache fingerprint hashes them.
    assert {"weights", "temperature", "combination"} <= set(ensemble.state_dict())
    # A bf16 ensemble (--teacher_dtype bfloat16) still averages at T=2.2 exactly, with weights summing to 1.
    half = TeacherEnsemble([a, b], [0.25, 0.75], temperature=2.2).to(torch.bfloat16)
    assert float(half.temperature) != 2.2 and half.temperature_value == 2.2 and sum(half.weight_values) == 1.0


def _distill(tmp_path, tiny_data_dir, teachers, *extra):
    out = tmp_path / "run"
    argv = ["--train_file", str(tiny_data_dir / "train.jsonl"), "--validation_file",
            str(tiny_data_dir / "validation.jsonl"), "--test_file", str(tiny_data_dir / "test.jsonl"),
            "--teacher_model_name_or_path", *map(str, teachers), "--student_num_layers", "2", "--max_length", "32",
            "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--latency_samples", "2",
            "--disable_tqdm", "true", "--output_dir", str(out), *extra]
    return distill_main(argv), out


def test_distill_from_two_teachers_caches_the_ensemble_logits(tmp_path, tiny_data_dir, tiny_teacher_dir,
                                                              second_teacher):
    cache = tmp_path / "cache"
    report, out = _distill(tmp_path, tiny_data_dir, [tiny_teacher_dir, second_teacher], "--teacher_weights", "1",
                           "3", "--temperature", "2", "--teacher_cache", str(cache))
    members = report["teacher"]["ensemble"]["teachers"]
    assert [m["name_or_path"] for m in members] == [str(tiny_teacher_dir), str(second_teacher)]
    assert [m["weight"] for m in members] == [0.25, 0.75]
    assert "tempered distributions (T=2)" in report["teacher"]["ensemble"]["combination"]
    assert report["teacher"]["num_layers"] == 8  # two 4-layer teachers run per request
    # The cache entry holds the ensemble's logits, row by row.
    cached = np.array(load_from_disk(str(cache / report["teacher_cache"]["fingerprint"]))["teacher_logits"])
    a, b = (AutoModelForSequenceClassification.from_pretrained(p).eval() for p in (tiny_teacher_dir, second_teacher))
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    texts = [json.loads(line)["text"] for line in (tiny_data_dir / "train.jsonl").read_text().splitlines()]
    batch = tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = ensemble_logits(torch.stack([a(**batch).logits, b(**batch).logits]), torch.tensor([0.25, 0.75]), 2.0)
    assert cached.shape == expected.shape  # one row per training text, in the file's order
    np.testing.assert_allclose(cached, expected.numpy(), atol=1e-4)
    # The card says the student learnt from an ensemble, with each teacher's weight and accuracy.
    card = str(render_model_card(out, repo_id="someone/student"))
    assert "Teacher ensemble (2 teachers" in card and "**Teachers:** an ensemble of 2" in card
    assert f"`{second_teacher}` (weight 0.75, test accuracy" in card
    assert "weighted average of the tempered distributions (T=2)" in card
    # Another weighting is another ensemble: another cache entry.
    report2, _ = _distill(tmp_path, tiny_data_dir, [tiny_teacher_dir, second_teacher], "--temperature", "2",
                          "--teacher_cache", str(cache), "--overwrite_output_dir", "true")
    assert report2["teacher_cache"]["fingerprint"] != report["teacher_cache"]["fingerprint"]
    assert report2["teacher_cache"]["computed"]


def test_teachers_must_agree_and_fit(tmp_path, tiny_data_dir, tiny_teacher_dir, tiny_tokenizer_dir):
    other_labels = build_tiny_bert(tiny_tokenizer_dir, tmp_path / "other", labels=["positive", "neutral", "negative"])
    expected = r"(?s)teachers predict different labels.*\['negative', 'neutral', 'positive'\] and \['positive'"
    with pytest.raises(NlpReuseError, match=expected):
        _distill(tmp_path, tiny_data_dir, [tiny_teacher_dir, other_labels])
    with pytest.raises(NlpReuseError, match="logit distillation only with several teachers"):
        _distill(tmp_path, tiny_data_dir, [tiny_teacher_dir, other_labels], "--hidden_loss_weight", "1")
    with pytest.raises(ValueError, match=r"--teacher_weights must be one weight > 0 per teacher: expected 2"):
        DistillScriptArguments(teacher_model_name_or_path=["a", "b"], teacher_weights=[1.0], student_num_layers=2)
    with pytest.raises(ValueError, match="weighs an ensemble, but one teacher was given"):
        DistillScriptArguments(teacher_model_name_or_path=["a"], teacher_weights=[1.0], student_num_layers=2)
    with pytest.raises(ValueError, match="names a teacher twice"):
        DistillScriptArguments(teacher_model_name_or_path=["a", "a"], student_num_layers=2)
    assert DistillScriptArguments(teacher_model_name_or_path="a", student_num_layers=2).teacher_model_name_or_path == [
        "a"]
