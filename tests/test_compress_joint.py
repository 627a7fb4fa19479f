"""`nlp-reuse compress` end to end on tiny models: prune by KD importance -> distill-recover -> QAT -> int8 ->
OpenVINO, every artefact measured and named in the reports and in the run's model card."""

import json
import shutil

import pytest
from compress_support import rows

pytest.importorskip("nncf", reason="the openvino extra (NNCF, OpenVINO) is installed by `make install`")
pytest.importorskip("openvino")

from nlp_reuse.compress.joint import COMPRESS_REPORT_NAME, CompressArguments, compress_student  # noqa: E402
from nlp_reuse.errors import ConfigError, ModelError  # noqa: E402


def _splits():
    return {"train": rows(64, seed=11), "validation": rows(16, seed=12), "test": rows(16, seed=13)}


@pytest.fixture(scope="module")
def compressed(nncf_reference_kernels, distill_run, tmp_path_factory):
    """A copy of the tiny distill run, compressed into RUN/compressed (so its report.json gains the artefacts)."""
    run = shutil.copytree(distill_run, tmp_path_factory.mktemp("joint") / "run")
    teacher = distill_run.parent / "teacher"
    args = CompressArguments(model_dir=str(run / "student"), teacher_model_name_or_path=str(teacher),
                             output_dir=str(run / "compressed"), prune_heads_fraction=0.5, prune_ffn_fraction=0.5,
                             importance_samples=32, recovery_epochs=1, recovery_learning_rate=1e-3, qat_epochs=1,
                             qat_learning_rate=1e-4, batch_size=16, calibration_samples=16, openvino="int8",
                             max_accuracy_drop=100.0, num_threads=1, latency_calls=2, throughput_calls=1)
    report = compress_student(args, _splits(), max_length=32)
    return run, report


def test_every_stage_writes_its_artefact_and_says_how_it_was_made(compressed):
    run, report = compressed
    out = run / "compressed"
    for name in ("pytorch", "onnx", "onnx_int8", "onnx_static_int8", "onnx_qat_int8", "openvino_int8"):
        assert (out / name).is_dir(), name
        assert name in report["made_by"]
    assert "pruned by distillation importance" in report["made_by"]["onnx_qat_int8"]
    assert "quantization-aware distillation" in report["made_by"]["onnx_qat_int8"]
    assert "OpenVINO int8" in report["made_by"]["openvino_int8"]
    saved = json.loads((out / COMPRESS_REPORT_NAME).read_text())
    assert saved["deliverable"] in ("onnx_qat_int8", "onnx_int8", "onnx_static_int8")
    assert set(saved["guards"]) == {"onnx_int8", "onnx_static_int8", "onnx_qat_int8"}


def test_pruned_model_is_smaller_and_reloads(compressed):
    from nlp_reuse.compress.artifacts import load_classifier

    run, report = compressed
    pruning = report["stages"]["pruning"]
    assert pruning["heads_after"] < pruning["heads_before"]
    assert pruning["ffn_width_after"] < pruning["ffn_width_before"]
    model, _ = load_classifier(run / "compressed" / "pytorch")
    assert model.config.intermediate_size == pruning["ffn_width_after"]
    assert model.base_model.encoder.layer[0].intermediate.dense.weight.shape[0] == pruning["ffn_width_after"]


def test_benchmark_times_teacher_unpruned_int8_and_every_artefact(compressed):
    run, report = compressed
    names = [r["name"] for r in report["benchmark"]["rows"]]
    assert names[:3] == ["teacher", "student", "unpruned_onnx_int8"]
    assert {"onnx_qat_int8", "openvino_int8", "onnx_int8"} <= set(names)
    table = (run / "compressed" / "compress.md").read_text()
    assert "how it was made" in table and "quantization-aware distillation" in table
    assert not (run / "compressed" / "unpruned_onnx").exists()  # the fp32 step on the way is removed


def test_run_report_and_model_card_list_the_compressed_artefacts(compressed):
    from nlp_reuse.hub.card import render_model_card
    from nlp_reuse.report import RunReport

    run, report = compressed
    assert report["run_report"] == str((run / "report.json").resolve())
    artefacts = RunReport.read(run / "report.json").artefacts
    assert "compressed/onnx_qat_int8" in artefacts and "onnx_int8" in artefacts  # earlier entries are kept
    assert "quantization-aware" in artefacts["compressed/onnx_qat_int8"].extra["made_by"]
    card = render_model_card(run)
    assert "quantization-aware distillation (NNCF" in card and "`compressed/openvino_int8/`" in card


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="prune_ffn_fraction out of range"):
        CompressArguments(model_dir="m", teacher_model_name_or_path="t", output_dir="o", prune_ffn_fraction=1.0)
    with pytest.raises(ConfigError, match="Missing arguments"):
        CompressArguments(model_dir="m", output_dir="o")
    with pytest.raises(ConfigError, match="Unknown --openvino mode"):
        CompressArguments(model_dir="m", teacher_model_name_or_path="t", output_dir="o", openvino="fp16")


def test_missing_nncf_is_reported_before_training(monkeypatch, distill_run, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_nncf(name, *args, **kwargs):
        if name == "nncf":
            raise ImportError("No module named 'nncf'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nncf)
    args = CompressArguments(model_dir=str(distill_run / "student"),
                             teacher_model_name_or_path=str(distill_run.parent / "teacher"),
                             output_dir=str(tmp_path / "o"), qat_epochs=1)
    with pytest.raises(ModelError, match=r"nlp_reuse\[openvino\]"):
        compress_student(args, _splits(), max_length=32)
    assert not (tmp_path / "o").exists()


def _args(run, out, **overrides):
    return CompressArguments(**{"model_dir": str(run / "student"),
                                "teacher_model_name_or_path": str(run.parent / "teacher"), "output_dir": str(out),
                                "num_threads": 1, "benchmark": False, **overrides})


def test_inputs_are_checked_before_the_output_folder_is_touched(distill_run, tiny_tokenizer_dir, tmp_path):
    from conftest import build_tiny_bert

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="--overwrite"):
        compress_student(_args(distill_run, taken), _splits(), max_length=32)
    # --overwrite on a folder that holds the student would delete it: refused, the run stays whole.
    with pytest.raises(ConfigError, match="output folder would contain an input"):
        compress_student(_args(distill_run, distill_run, overwrite=True), _splits(), max_length=32)
    assert (distill_run / "student" / "config.json").is_file()
    other = build_tiny_bert(tiny_tokenizer_dir, tmp_path / "other_teacher", num_layers=1, labels=["x", "y", "z"])
    with pytest.raises(ModelError, match="different labels"):
        compress_student(_args(distill_run, taken, teacher_model_name_or_path=str(other), overwrite=True),
                         _splits(), max_length=32)
    with pytest.raises(FileNotFoundError, match="Model folder not found"):
        compress_student(_args(distill_run, taken, teacher_model_name_or_path=str(tmp_path / "nope"),
                               overwrite=True), _splits(), max_length=32)
    assert (taken / "keep.txt").read_text() == "user data"


def test_cli_run_without_pruning_replaces_stale_report_entries(compressed, distill_run, tiny_data_dir, tmp_path):
    """`nlp-reuse compress` (dynamic + static int8 only) into the same folder with --overwrite: the report keeps no
    entry of the earlier, pruned compress."""
    from nlp_reuse.commands import main
    from nlp_reuse.report import RunReport

    run = shutil.copytree(compressed[0], tmp_path / "run")  # the module's run stays as the other tests read it
    main(["compress", "--model_dir", str(run / "student"), "--teacher_model_name_or_path",
          str(distill_run.parent / "teacher"), "--output_dir", str(run / "compressed"), "--overwrite", "true",
          "--num_threads", "1", "--latency_calls", "2", "--throughput_calls", "1", "--max_accuracy_drop", "100",
          "--train_file", str(tiny_data_dir / "train.jsonl"), "--validation_file",
          str(tiny_data_dir / "validation.jsonl"), "--test_file", str(tiny_data_dir / "test.jsonl"),
          "--max_length", "32"])
    saved = json.loads((run / "compressed" / COMPRESS_REPORT_NAME).read_text())
    assert "pruning" not in saved["stages"] and "onnx_qat_int8" not in saved["made_by"]
    artefacts = RunReport.read(run / "report.json").artefacts
    assert "compressed/onnx_int8" in artefacts and "compressed/onnx_qat_int8" not in artefacts
    assert "onnx_int8" in artefacts  # the distill run's own export entry is kept
    assert not (run / "compressed" / "onnx_qat_int8").exists()
