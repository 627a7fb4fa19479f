"""Structured pruning of heads and FFN neurons by distillation importance (nlp_reuse.compress.structured): the
importance equals the first-order Taylor term computed by hand, selection and slicing agree, and the pruned model
reloads and exports exactly."""

import json

import pytest
import torch
from compress_support import TEXTS

from conftest import LABELS, build_tiny_bert, make_examples
from nlp_reuse.compress.artifacts import load_classifier
from nlp_reuse.compress.onnx_export import check_onnx_parity, export_onnx
from nlp_reuse.compress.prune import compute_head_importance, prune_heads, pruned_heads_of
from nlp_reuse.compress.structured import (
    StructuredPruningReport,
    compute_structure_importance,
    prune_ffn,
    prune_structure,
    select_ffn_neurons,
)
from nlp_reuse.losses import kd_loss

# Class ids of TEXTS: the synthetic examples' labels, then "good" and the long awful/boring text.
TEXTS_IDS = [LABELS.index(r["label"]) for r in make_examples(9, seed=7)] + [LABELS.index("positive"),
                                                                            LABELS.index("negative")]


@pytest.fixture(scope="module")
def teacher(tiny_tokenizer_dir, tmp_path_factory):
    """A different random classifier with the same labels: its logits disagree with the student's."""
    folder = build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("structured_teacher"), num_layers=2,
                             seed=5)
    return load_classifier(folder)[0]


def logits_of(model, tokenizer, texts=TEXTS) -> torch.Tensor:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


def test_prune_structure_shrinks_config_and_weights(trained_dir, teacher):
    model, tokenizer = load_classifier(trained_dir)
    report = prune_structure(model, tokenizer, TEXTS, heads_fraction=0.5, ffn_fraction=0.5, teacher=teacher,
                             labels=TEXTS_IDS, temperature=2.0, alpha=0.5)
    assert (report.heads_before, report.heads_after) == (8, 4)
    assert (report.ffn_width_before, report.ffn_width_after) == (64, 32)
    assert model.config.intermediate_size == 32
    assert sum(len(h) for h in model.config.pruned_heads.values()) == 4
    for index, layer in enumerate(model.bert.encoder.layer):
        assert layer.intermediate.dense.weight.shape == (32, 32)  # (intermediate, hidden): rows removed
        assert layer.intermediate.dense.bias.shape == (32,)
        assert layer.output.dense.weight.shape == (32, 32)  # (hidden, intermediate): columns removed
        heads_left = 4 - len(report.pruned_heads.get(index, []))
        assert layer.attention.self.query.weight.shape == (heads_left * 8, 32)
        assert layer.attention.output.dense.weight.shape == (32, heads_left * 8)
    assert report.params_after < report.params_before
    assert report.params_before - report.params_after == 2 * (2 * 32 * 32 + 32) + 4 * (4 * 8 * 32 + 3 * 8)
    assert torch.tensor(report.head_importance).shape == (2, 4)
    assert torch.tensor(report.ffn_importance).shape == (2, 64)
    logits = logits_of(model, tokenizer)
    assert logits.shape == (len(TEXTS), 3) and torch.isfinite(logits).all()
    assert StructuredPruningReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_pruning_zero_importance_neurons_keeps_logits(trained_dir, teacher):
    """Neurons whose output weights are zero cannot change the loss: their importance is exactly 0, they are the ones
    selected for removal, and removing them leaves the logits as they were."""
    model, tokenizer = load_classifier(trained_dir)
    dead = {0: list(range(0, 40, 2)), 1: list(range(30, 50))}  # different neurons in each layer
    with torch.no_grad():
        for index, neurons in dead.items():
            model.bert.encoder.layer[index].output.dense.weight[:, neurons] = 0.0
    importance = compute_structure_importance(model, tokenizer, TEXTS, teacher=teacher, labels=TEXTS_IDS, alpha=0.5,
                                              batch_size=4)
    for index, neurons in dead.items():
        alive = [n for n in range(64) if n not in neurons]
        assert (importance.ffn[index][neurons] == 0).all()
        assert (importance.ffn[index][alive] > 0).all()
    keep = select_ffn_neurons(importance.ffn, width=44)
    assert keep == {index: [n for n in range(64) if n not in neurons] for index, neurons in dead.items()}
    before = logits_of(model, tokenizer)
    prune_ffn(model, keep)
    assert model.bert.encoder.layer[1].output.dense.weight.shape == (32, 44)
    torch.testing.assert_close(logits_of(model, tokenizer), before, atol=1e-5, rtol=0)


def test_importance_is_the_taylor_term_of_the_distillation_loss(trained_dir, teacher):
    """One batch: the gate gradient equals sum over tokens of activation * dL/d activation, computed here by plain
    autograd on the ungated model (no gates), with L the batch mean of kd_loss."""
    model, tokenizer = load_classifier(trained_dir)
    layers = model.bert.encoder.layer
    teacher_logits = logits_of(teacher, tokenizer)
    kwargs = {"temperature": 3.0, "alpha": 0.7}
    got = compute_structure_importance(model, tokenizer, TEXTS, teacher_logits=teacher_logits.numpy(),
                                       labels=TEXTS_IDS, batch_size=len(TEXTS), normalize_heads=False, **kwargs)

    captured = {}

    def keep_grad(name):
        def hook(module, args, output=None):
            tensor = args[0] if output is None else output
            tensor.retain_grad()
            captured[name] = tensor
        return hook

    handles = [layer.intermediate.register_forward_hook(keep_grad(("ffn", i))) for i, layer in enumerate(layers)]
    handles += [layer.attention.output.dense.register_forward_pre_hook(keep_grad(("heads", i)))
                for i, layer in enumerate(layers)]
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    kd_loss(model(**enc).logits, teacher_logits, torch.tensor(TEXTS_IDS), **kwargs).mean().backward()
    for handle in handles:
        handle.remove()
    tokens = int(enc["attention_mask"].sum())
    for i in range(len(layers)):
        ffn = captured["ffn", i]  # (batch, seq, intermediate)
        torch.testing.assert_close(got.ffn[i], (ffn * ffn.grad).sum((0, 1)).abs() / tokens, rtol=1e-4, atol=1e-9)
        context = captured["heads", i]  # (batch, seq, heads * head_dim)
        per_head = (context * context.grad).view(*context.shape[:2], 4, 8).sum((0, 1, 3)).abs() / tokens
        torch.testing.assert_close(got.heads[i], per_head, rtol=1e-4, atol=1e-9)
    model.zero_grad(set_to_none=True)
    compute_structure_importance(model, tokenizer, TEXTS[:2], teacher_logits=teacher_logits[:2], alpha=1.0)
    assert all(p.grad is None for p in model.parameters())  # scoring leaves the parameters' gradients alone


def test_importance_follows_the_teacher(trained_dir):
    """alpha=1 (soft term only): a teacher that agrees with the student gives a zero KL gradient, hence zero
    importance; another teacher gives a clearly different, non-zero importance."""
    model, tokenizer = load_classifier(trained_dir)
    own = logits_of(model, tokenizer)
    kwargs = {"alpha": 1.0, "temperature": 2.0, "labels": TEXTS_IDS, "normalize_heads": False,
              "batch_size": len(TEXTS)}
    agree = compute_structure_importance(model, tokenizer, TEXTS, teacher_logits=own, **kwargs)
    differ = compute_structure_importance(model, tokenizer, TEXTS, teacher_logits=own.flip(-1), **kwargs)
    differ_max = max(differ.heads.max(), *(n.max() for n in differ.ffn))
    assert differ_max > 1e-4
    assert max(agree.heads.max(), *(n.max() for n in agree.ffn)) < 1e-4 * differ_max
    other = compute_structure_importance(model, tokenizer, TEXTS, teacher_logits=own.roll(1, -1), **kwargs)
    assert not torch.allclose(other.ffn[0], differ.ffn[0], rtol=0.05)


def test_without_soft_term_heads_match_michel_importance(trained_dir, teacher):
    """alpha=0 leaves the cross-entropy on the labels: the head scores are those of compute_head_importance."""
    model, tokenizer = load_classifier(trained_dir)
    got = compute_structure_importance(model, tokenizer, TEXTS, teacher=teacher, labels=TEXTS_IDS, alpha=0.0,
                                       batch_size=4)
    expected = compute_head_importance(model, tokenizer, TEXTS, TEXTS_IDS, batch_size=4)
    torch.testing.assert_close(got.heads, expected, rtol=1e-4, atol=1e-7)


@pytest.fixture(scope="module")
def pruned(trained_dir, teacher):
    model, tokenizer = load_classifier(trained_dir)
    prune_structure(model, tokenizer, TEXTS, heads_fraction=0.4, ffn_fraction=0.25,
                    teacher_logits=logits_of(teacher, tokenizer), labels=TEXTS_IDS)
    assert model.config.pruned_heads and model.config.intermediate_size == 48
    return model.eval(), tokenizer


def test_pruned_model_reloads_with_load_classifier(pruned, tmp_path):
    model, tokenizer = pruned
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["intermediate_size"] == 48
    reloaded, reloaded_tokenizer = load_classifier(tmp_path)  # strict weight loading
    assert reloaded.bert.encoder.layer[0].intermediate.dense.out_features == 48
    torch.testing.assert_close(logits_of(reloaded, reloaded_tokenizer), logits_of(model, tokenizer), atol=1e-6,
                               rtol=0)


def test_ffn_pruned_model_reloads_with_plain_from_pretrained(trained_dir, teacher, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = load_classifier(trained_dir)
    prune_structure(model, tokenizer, TEXTS, ffn_fraction=0.5, teacher=teacher, alpha=1.0)
    assert pruned_heads_of(model.config) == {}
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(logits_of(reloaded, tokenizer), logits_of(model, tokenizer), atol=1e-6, rtol=0)


def test_pruned_model_exports_to_onnx_with_parity(pruned, tmp_path):
    model, tokenizer = pruned
    folder = export_onnx(model, tokenizer, tmp_path / "onnx")
    assert check_onnx_parity(model, tokenizer, folder, TEXTS) < 1e-4


def test_bad_fractions_and_teachers_give_clear_errors(trained_dir, teacher):
    model, tokenizer = load_classifier(trained_dir)
    logits = logits_of(teacher, tokenizer)
    base = {"teacher_logits": logits}
    cases = [
        ({**base, "heads_fraction": 1.0}, r"heads_fraction out of range(.|\n)*a fraction in \[0, 1\)"),
        ({**base, "ffn_fraction": -0.1}, r"ffn_fraction out of range"),
        ({}, r"exactly one source(.|\n)*found:    neither"),
        ({**base, "teacher": teacher}, r"exactly one source(.|\n)*found:    both"),
        ({"teacher_logits": logits[:3]}, r"do not line up with the texts(.|\n)*found:    shape \(3, 3\)"),
        ({**base, "labels": TEXTS_IDS[:2]}, r"Labels do not line up"),
        ({**base, "alpha": 1.5}, r"0 <= alpha <= 1"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            prune_structure(model, tokenizer, TEXTS, **kwargs)
    assert model.config.intermediate_size == 64 and pruned_heads_of(model.config) == {}  # nothing changed

    with pytest.raises(ValueError, match=r"FFN width out of range"):
        select_ffn_neurons([torch.ones(64)], width=0)
    with pytest.raises(ValueError, match=r"same width in every layer"):
        prune_ffn(model, {0: list(range(32)), 1: list(range(16))})
    with pytest.raises(ValueError, match=r"Cannot keep FFN neurons \[0, 64\] of layer 1"):
        prune_ffn(model, {0: [0, 1], 1: [0, 64]})
    assert model.bert.encoder.layer[0].intermediate.dense.out_features == 64  # checked before any layer changed

    prune_heads(model, {0: [1]})
    with pytest.raises(ValueError, match=r"needs a model without pruned heads"):
        compute_structure_importance(model, tokenizer, TEXTS, teacher=teacher)


def test_non_bert_layout_is_refused(trained_dir):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from nlp_reuse.compress.low_rank import apply_low_rank

    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=200, dim=16, n_layers=1, n_heads=2,
                                                                 hidden_dim=32, num_labels=3))
    with pytest.raises(ValueError, match=r"Structured pruning does not know this architecture"):
        compute_structure_importance(model, None, ["a text"], teacher_logits=[[0.0, 0.0, 0.0]])
    factorized, tokenizer = load_classifier(trained_dir)
    apply_low_rank(factorized, ratio=0.5)
    with pytest.raises(ValueError, match=r"found:    BertForSequenceClassification with .*LowRankLinear"):
        prune_structure(factorized, tokenizer, TEXTS, ffn_fraction=0.5, teacher_logits=logits_of(factorized, tokenizer))
