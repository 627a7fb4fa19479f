"""Structured shrinking on tiny models: head pruning (importance, permanence, reload), magnitude pruning and
low-rank factorization."""

import json

import numpy as np
import onnx
import pytest
import torch
from compress_support import TEXTS, rows
from transformers import AutoModelForSequenceClassification

from nlp_reuse.compress.artifacts import load_classifier
from nlp_reuse.compress.labels import encode_labels
from nlp_reuse.compress.low_rank import LowRankLinear, apply_low_rank, break_even_rank, save_low_rank_model
from nlp_reuse.compress.onnx_export import OnnxClassifier, export_onnx, onnx_logits, torch_logits
from nlp_reuse.compress.pipeline import export_model
from nlp_reuse.compress.prune import (
    compute_head_importance,
    magnitude_prune,
    make_pruning_permanent,
    prune_heads,
    prune_heads_by_importance,
    pruned_heads_of,
    recovery_finetune,
    select_heads_to_prune,
)

# ----------------------------------------------------------------------------------------------------- pruning


def test_head_importance_is_layer_normalised(trained_dir):
    model, tokenizer = load_classifier(trained_dir)
    texts, labels = rows(16, seed=3)
    importance = compute_head_importance(model, tokenizer, texts, encode_labels(labels, model.config.label2id))
    assert importance.shape == (2, 4) and (importance >= 0).all()
    assert torch.allclose(importance.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_select_heads_keeps_one_head_per_layer():
    importance = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.05, 0.8]])
    assert select_heads_to_prune(importance, 0.34) == {0: [0], 1: [1]}
    # 90% of 6 heads would empty layers; one head per layer survives.
    assert select_heads_to_prune(importance, 0.9) == {0: [0, 1], 1: [1, 2]}


def test_pruned_heads_are_gone_from_config_and_model_reloads(trained_dir, tmp_path):
    model, tokenizer = load_classifier(trained_dir)
    texts, labels = rows(16, seed=3)
    report = prune_heads_by_importance(model, tokenizer, texts, None, 0.5)
    assert report.heads_after == 4 and report.params_after < report.params_before
    assert {k: sorted(v) for k, v in model.config.pruned_heads.items()} == report.pruned_heads
    for layer, heads in report.pruned_heads.items():
        attention = model.bert.encoder.layer[layer].attention.self
        assert attention.num_attention_heads == 4 - len(heads)
        assert attention.query.out_features == (4 - len(heads)) * 8
    logits = torch_logits(model, tokenizer, TEXTS)
    assert logits.shape == (len(TEXTS), 3) and np.isfinite(logits).all()

    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["pruned_heads"]
    assert {int(k): sorted(v) for k, v in saved.items()} == report.pruned_heads
    reloaded, _ = load_classifier(tmp_path)
    assert np.abs(torch_logits(reloaded, tokenizer, TEXTS) - logits).max() < 1e-5
    exported = export_onnx(reloaded, tokenizer, tmp_path / "onnx")
    assert np.abs(onnx_logits(OnnxClassifier(exported), TEXTS) - logits).max() < 1e-4


def test_magnitude_pruning_is_permanent(trained_dir):
    model, tokenizer = load_classifier(trained_dir)
    sparsity = magnitude_prune(model, 0.5)
    assert len(sparsity) == 12 and all(abs(s - 0.5) < 0.01 for s in sparsity.values())
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.endswith("weight_orig") for n in names)
    assert float((model.bert.encoder.layer[0].intermediate.dense.weight == 0).float().mean()) == pytest.approx(0.5)
    assert np.isfinite(torch_logits(model, tokenizer, TEXTS)).all()


def test_recovery_finetune_keeps_magnitude_zeros(trained_dir):
    model, tokenizer = load_classifier(trained_dir)
    magnitude_prune(model, 0.5, permanent=False)  # masks stay attached during recovery
    before = model.bert.encoder.layer[0].intermediate.dense.weight_orig.detach().clone()
    texts, labels = rows(32, seed=5)
    recovery_finetune(model, tokenizer, texts, encode_labels(labels, model.config.label2id), num_train_epochs=1,
                      learning_rate=1e-3, batch_size=16)
    make_pruning_permanent(model)
    weight = model.bert.encoder.layer[0].intermediate.dense.weight
    assert not torch.equal(weight[before != 0], before[before != 0])  # it trained
    assert float((weight == 0).float().mean()) >= 0.5 and not model.training


# ---------------------------------------------------------------------------------------------------- low-rank


def test_low_rank_shapes_and_reconstruction_error(wide_dir):
    model, tokenizer = load_classifier(wide_dir)
    dense = {n: m.weight.detach().clone() for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and ".encoder." in n}
    reports = apply_low_rank(model, ratio=0.5, target_modules=["intermediate.dense", "output.dense"])
    assert len(reports) == 6  # per layer: attention.output.dense, intermediate.dense, output.dense
    for r in reports:
        module = model.get_submodule(r.name)
        assert isinstance(module, LowRankLinear) and r.replaced
        assert r.rank == int(0.5 * r.in_features * r.out_features / (r.in_features + r.out_features))
        assert module.first.weight.shape == (r.rank, r.in_features)
        assert module.second.weight.shape == (r.out_features, r.rank)
        assert r.params_after < r.params_before
        weight = dense[r.name]
        singular = torch.linalg.svdvals(weight)
        tail = (singular[r.rank:] ** 2).sum().sqrt() / (singular ** 2).sum().sqrt()
        assert r.relative_error == pytest.approx(float(tail), abs=1e-4)
        with torch.no_grad():
            measured = torch.linalg.norm(weight - module.weight_product()) / torch.linalg.norm(weight)
        assert r.relative_error == pytest.approx(float(measured), abs=1e-5)
    assert np.isfinite(torch_logits(model, tokenizer, TEXTS)).all()


def test_low_rank_energy_picks_smallest_rank(wide_dir):
    model, _ = load_classifier(wide_dir)
    singular = torch.linalg.svdvals(model.bert.encoder.layer[0].intermediate.dense.weight.detach())
    (r,) = apply_low_rank(model, energy=0.6, target_modules=["layer.0.intermediate.dense"])
    energy = torch.cumsum(singular ** 2, 0) / (singular ** 2).sum()
    assert r.replaced and r.rank <= break_even_rank(r.in_features, r.out_features)
    assert r.energy_kept == pytest.approx(float(energy[r.rank - 1]), abs=1e-5) and r.energy_kept >= 0.6
    assert float(energy[r.rank - 2]) < 0.6  # one rank less would not keep the energy


def test_low_rank_folder_round_trip_and_onnx_export(wide_dir, tmp_path):
    model, tokenizer = load_classifier(wide_dir)
    apply_low_rank(model, ratio=0.25)
    logits = torch_logits(model, tokenizer, TEXTS)
    folder = save_low_rank_model(model, tokenizer, tmp_path / "low_rank")
    with pytest.raises(OSError):  # plain from_pretrained must not silently build random dense layers
        AutoModelForSequenceClassification.from_pretrained(folder)
    reloaded, _ = load_classifier(folder)
    assert np.abs(torch_logits(reloaded, tokenizer, TEXTS) - logits).max() < 1e-5
    exported = export_onnx(reloaded, tokenizer, tmp_path / "onnx")
    assert np.abs(onnx_logits(OnnxClassifier(exported), TEXTS) - logits).max() < 1e-4
    # The factorized graph holds the thin (in, rank) and (rank, out) matrices, not the dense (in, out) one.
    shapes = {tuple(i.dims) for i in onnx.load(str(exported / "model.onnx")).graph.initializer}
    rank = reloaded.bert.encoder.layer[0].intermediate.dense.rank
    assert (128, rank) in shapes and (rank, 256) in shapes and (128, 256) not in shapes


def test_export_model_with_pruning_and_low_rank_writes_reloadable_pytorch(trained_dir, tmp_path):
    val_texts, val_labels = rows(12, seed=2)
    result = export_model(trained_dir, tmp_path, quantization="none", prune_heads_fraction=0.25,
                          low_rank_energy=0.5, validation_texts=val_texts, validation_labels=val_labels)
    assert result.head_pruning["heads_after"] == 6 and result.low_rank
    assert result.parity_max_abs_diff < 1e-4 and result.deliverable_kind == "onnx"
    model, _ = load_classifier(tmp_path / "pytorch")
    assert sum(len(h) for h in model.config.pruned_heads.values()) == 2
    assert any(isinstance(m, LowRankLinear) for m in model.modules())


def test_a_bad_head_index_leaves_the_model_untouched(trained_dir):
    model, _ = load_classifier(trained_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"Cannot prune heads \[4\] of layer 1"):
        prune_heads(model, {0: [1], 1: [4]})  # layer 0 is valid, layer 1 has heads 0..3
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    prune_heads(model, {"0": [1, 2]})  # JSON-style string keys
    prune_heads(model, {0: [0]})  # indices among the remaining heads: original head 0
    assert pruned_heads_of(model.config) == {0: [0, 1, 2]}
