"""End to end on tiny models: scripts/finetune.py then scripts/distill.py, their folders and report.json."""

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import build_tiny_bert
from nlp_reuse.commands import distill, finetune

FAST = ["--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--latency_samples", "3",
        "--disable_tqdm", "true", "--max_length", "16"]


def data_flags(data_dir):
    return ["--train_file", str(data_dir / "train.jsonl"), "--validation_file", str(data_dir / "validation.jsonl"),
            "--test_file", str(data_dir / "test.jsonl")]


@pytest.fixture(scope="module")
def finetuned(tiny_data_dir, tiny_tokenizer_dir, tmp_path_factory):
    """A tiny untuned encoder (generic labels) fine-tuned by scripts/finetune.py: the teacher of the tests."""
    base = build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("base"), labels=None)
    out = tmp_path_factory.mktemp("ft") / "teacher"
    report = finetune.main(["--model_name_or_path", str(base), "--output_dir", str(out), *data_flags(tiny_data_dir),
                            *FAST])
    return out, report


def test_finetune_writes_a_standard_model_folder(finetuned):
    out, report = finetuned
    model = AutoModelForSequenceClassification.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    assert (out / "model.safetensors").is_file()
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    saved = json.loads((out / "report.json").read_text())
    assert saved == report
    assert saved["task"]["labels"] == ["negative", "neutral", "positive"]
    assert saved["model"]["num_layers"] == 4 and saved["model"]["params"] == model.num_parameters()
    assert set(saved["model"]["test"]) == {"accuracy", "macro_f1"}
    assert saved["command"].startswith("nlp-reuse finetune --model_name_or_path ")


@pytest.fixture(scope="module")
def distilled(finetuned, tiny_data_dir, tmp_path_factory):
    teacher, _ = finetuned
    out = tmp_path_factory.mktemp("distill") / "run"
    report = distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(out),
                           "--student_config", '{"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2, '
                                               '"intermediate_size": 32}',
                           "--hidden_loss_weight", "1.0", "--run_baseline", "true", "--hub_token", "hf_SECRET123",
                           *data_flags(tiny_data_dir), *FAST])
    return out, report


def test_distill_report_has_every_field(distilled):
    out, report = distilled
    assert json.loads((out / "report.json").read_text()) == report
    for name in ("teacher", "student", "baseline"):
        entry = report[name]
        assert set(entry) >= {"params", "num_layers", "size_mb", "test", "latency_ms"}
        assert set(entry["test"]) == {"accuracy", "macro_f1"}
        assert entry["latency_ms"] > 0 and entry["size_mb"] > 0
    assert report["teacher"]["num_layers"] == 4 and report["student"]["num_layers"] == 2
    assert Path(report["teacher"]["local_path"]).is_absolute()  # the card finds the teacher from any directory
    assert report["student"]["params"] < report["teacher"]["params"]
    assert report["retention"] == pytest.approx(
        report["student"]["test"]["accuracy"] / report["teacher"]["test"]["accuracy"], abs=1e-4)
    assert report["distillation"]["layer_map"] == [[1, 2], [2, 4]]
    assert report["distillation"]["student_init"].startswith("random:")


def test_distill_folders_load_and_hold_no_projection(distilled):
    out, report = distilled
    for name in ("student", "baseline"):
        model = AutoModelForSequenceClassification.from_pretrained(out / name)
        assert model.config.hidden_size == 16
        assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
        keys = load_file(str(out / name / "model.safetensors")).keys()
        assert not any("proj" in k for k in keys)
        assert model.num_parameters() == report[name]["params"]


def test_token_is_not_written(distilled):
    out, _ = distilled
    for path in out.rglob("*.json"):
        assert "hf_SECRET123" not in path.read_text(), path


def test_refuses_non_empty_output_dir_and_keeps_its_files(finetuned, tiny_data_dir, tmp_path):
    teacher, _ = finetuned
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError,
                       match=r"is not empty; refusing(?s:.*)found:    notes.txt(?s:.*)--overwrite_output_dir true"):
        distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(tmp_path),
                      "--student_num_layers", "2", *data_flags(tiny_data_dir), *FAST])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_data_fails_before_training(finetuned, tiny_data_dir, tmp_path):
    from nlp_reuse.data import DataError

    teacher, _ = finetuned
    with pytest.raises(DataError, match="no column 'sentence'"):
        distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(tmp_path / "o"),
                      "--student_num_layers", "2", "--text_column", "sentence", *data_flags(tiny_data_dir), *FAST])
    assert not (tmp_path / "o" / "student").exists()


def test_teacher_with_other_labels_is_refused(tiny_tokenizer_dir, tiny_data_dir, tmp_path):
    from nlp_reuse.data import DataError

    teacher = build_tiny_bert(tiny_tokenizer_dir, tmp_path / "spam_teacher", labels=["ham", "spam"])
    with pytest.raises(DataError, match=r"model's labels \['ham', 'spam'\] differ from the data's labels"):
        distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(tmp_path / "o"),
                      "--student_num_layers", "2", *data_flags(tiny_data_dir), *FAST])


def test_seed_benchmark_runs_each_seed_with_baseline(finetuned, tiny_data_dir, tmp_path):
    from nlp_reuse.commands import benchmark_distill

    teacher, _ = finetuned
    summary = benchmark_distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir",
                                      str(tmp_path / "seeds"), "--student_num_layers", "2", "--seeds", "3,4",
                                      *data_flags(tiny_data_dir), *FAST])
    assert summary["seeds"] == [3, 4]
    assert set(summary["models"]) == {"teacher", "student", "baseline"}
    for seed in (3, 4):
        report = json.loads((tmp_path / "seeds" / f"seed{seed}" / "report.json").read_text())
        assert report["distillation"]["seed"] == seed and "baseline" in report
    assert "mean ± std" in (tmp_path / "seeds" / "seeds_summary.md").read_text()


def test_distill_with_export_onnx_int8_adds_measured_artefacts(finetuned, tiny_data_dir, tmp_path):
    teacher, _ = finetuned
    report = distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(tmp_path / "run"),
                           "--student_num_layers", "2", "--export", "onnx_int8", *data_flags(tiny_data_dir), *FAST])
    assert (tmp_path / "run" / "onnx" / "model.onnx").is_file()
    assert report["export"]["deliverable"] == "onnx_int8" and not report["export"]["guard_triggered"]
    assert set(report["artefacts"]) == {"onnx", "onnx_int8"}
    for name, entry in report["artefacts"].items():
        assert set(entry) >= {"params", "size_mb", "test", "latency_ms", "path"}
        assert entry["path"] == name
    assert report["artefacts"]["onnx_int8"]["size_mb"] < report["artefacts"]["onnx"]["size_mb"]
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["artefacts"] == report["artefacts"]


def test_hub_token_lands_in_no_file(finetuned, tiny_data_dir, tmp_path):
    """--hub_token reaches the push only: not training_args.bin (student/, checkpoints), reports or run args."""
    token = "hf_" + "tokenThatMustNotBeSaved" * 2
    teacher, _ = finetuned
    distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(tmp_path / "run"),
                  "--student_num_layers", "2", "--hub_token", token, "--save_strategy", "epoch",
                  *data_flags(tiny_data_dir), *FAST])
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files) and any("checkpoint-" in str(p) for p in files)
    assert [str(p) for p in files if token.encode() in p.read_bytes()] == []


def test_an_interrupted_run_is_resumed_not_blocked(finetuned, tiny_data_dir, tmp_path):
    """A run killed after checkpoint-2 (its later checkpoint, report and final folders never written, a staging
    folder left half-written): a plain rerun says how to go on, and `--resume_from_checkpoint last` continues from
    checkpoint-2's state instead of silently restarting at step 0."""
    teacher, _ = finetuned
    run = tmp_path / "run"
    flags = ["--teacher_model_name_or_path", str(teacher), "--output_dir", str(run),
             "--student_num_layers", "2", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1",
             *data_flags(tiny_data_dir), *FAST]
    distill.main(flags)
    checkpoints = sorted(p.name for p in (run / "checkpoints" / "student").iterdir())
    assert checkpoints == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert (run / "student" / "model.safetensors").is_file() and not list((run / "student").glob("checkpoint-*"))
    for name in ("report.json", "run_args.json", "student", "checkpoints/student/checkpoint-4",
                 "checkpoints/student/checkpoint-6"):
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    (run / ".student.partial").mkdir()
    (run / ".student.partial" / "model.safetensors").write_bytes(b"half")
    # Mark the step-2 state: only a run that really resumes from it carries the mark into its later checkpoints.
    state_file = run / "checkpoints" / "student" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"].append({"step": 2, "marker": "from checkpoint-2"})
    state_file.write_text(json.dumps(state))

    with pytest.raises(FileExistsError, match=r"did not finish(?s:.*)checkpoints/student/checkpoint-2 and no report"
                                              r"(?s:.*)--resume_from_checkpoint last"):
        distill.main(flags)
    distill.main([*flags, "--resume_from_checkpoint", "last"])
    resumed = json.loads((run / "checkpoints" / "student" / "checkpoint-4" / "trainer_state.json").read_text())
    assert {"step": 2, "marker": "from checkpoint-2"} in resumed["log_history"]
    assert [entry["step"] for entry in resumed["log_history"] if "loss" in entry] == [1, 2, 3, 4]
    assert (run / "report.json").is_file() and not (run / ".student.partial").exists()


def test_overwritten_run_folder_holds_no_artefact_of_the_earlier_run(finetuned, tiny_data_dir, tmp_path):
    """An earlier run's ONNX folders and export report would be pushed beside the new student; the user's file stays."""
    teacher, _ = finetuned
    run = tmp_path / "run"
    distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(run), "--student_num_layers",
                  "2", "--export", "onnx", *data_flags(tiny_data_dir), *FAST])
    assert (run / "onnx" / "model.onnx").is_file() and (run / "export_report.json").is_file()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="no column 'sentence'"):  # bad input: nothing is removed yet
        distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(run), "--student_num_layers",
                      "2", "--overwrite_output_dir", "true", "--text_column", "sentence", *data_flags(tiny_data_dir),
                      *FAST])
    assert (run / "onnx" / "model.onnx").is_file()
    with pytest.raises(FileExistsError, match=r"would delete .*student, which this run reads"):
        distill.main(["--teacher_model_name_or_path", str(run / "student"), "--output_dir", str(run),
                      "--student_num_layers", "1", "--overwrite_output_dir", "true", *data_flags(tiny_data_dir),
                      *FAST])
    assert (run / "onnx" / "model.onnx").is_file()
    distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(run), "--student_num_layers",
                  "2", "--overwrite_output_dir", "true", *data_flags(tiny_data_dir), *FAST])
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt", "report.json", "run_args.json", "student"]
    assert "artefacts" not in json.loads((run / "report.json").read_text())


def test_max_length_beyond_the_position_table_is_capped(finetuned, tiny_data_dir, tmp_path, caplog):
    """The tiny models have 64 positions: --max_length 100 would crash on the first long text, mid-run."""
    teacher, _ = finetuned
    long_texts = tmp_path / "data"
    long_texts.mkdir()
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (tiny_data_dir / f"{split}.jsonl").read_text().splitlines()]
        rows[0]["text"] = " ".join([rows[0]["text"]] * 30)  # ~180 tokens
        (long_texts / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = [*data_flags(long_texts), *FAST, "--max_length", "100"]
    distill.main(["--teacher_model_name_or_path", str(teacher), "--output_dir", str(tmp_path / "d"),
                  "--student_num_layers", "2", *flags])
    finetune.main(["--model_name_or_path", str(teacher), "--output_dir", str(tmp_path / "f"), *flags])
    for run in (tmp_path / "d", tmp_path / "f"):
        assert json.loads((run / "run_args.json").read_text())["data"]["max_length"] == 64
    assert "--max_length 100 is beyond the teacher's 64 positions (bert): using --max_length 64" in caplog.text


def test_teacher_measurements_are_reused_only_while_nothing_changes(finetuned, tiny_data_dir, tmp_path, monkeypatch):
    """With --teacher_cache a rerun reuses the teacher's test metrics and latency (no teacher evaluation, no timing);
    another latency setting or other test data is measured again."""
    import nlp_reuse.run_entries as run_entries

    teacher, _ = finetuned
    flags = ["--teacher_model_name_or_path", str(teacher), "--student_num_layers", "1",
             "--teacher_cache", str(tmp_path / "cache"), *data_flags(tiny_data_dir), *FAST]
    first = distill.main([*flags, "--output_dir", str(tmp_path / "a")])
    timed = []
    monkeypatch.setattr(run_entries, "torch_latency_ms",
                        lambda model, *a: timed.append(model.config.num_hidden_layers) or 1.0)
    second = distill.main([*flags, "--output_dir", str(tmp_path / "b")])
    assert not first["teacher_measurements"]["reused"] and second["teacher_measurements"]["reused"]
    assert second["teacher"] == first["teacher"] and timed == [1]  # only the 1-layer student was timed
    assert len(list((tmp_path / "cache" / "measurements").glob("*.json"))) == 1

    third = distill.main([*flags, "--output_dir", str(tmp_path / "c"), "--latency_samples", "2"])
    assert not third["teacher_measurements"]["reused"] and third["teacher"]["latency_ms"] == 1.0
    shutil.copy(tiny_data_dir / "validation.jsonl", tmp_path / "other_test.jsonl")
    fourth = distill.main([*flags, "--output_dir", str(tmp_path / "d"), "--test_file",
                           str(tmp_path / "other_test.jsonl")])
    assert not fourth["teacher_measurements"]["reused"]
    assert len(list((tmp_path / "cache" / "measurements").glob("*.json"))) == 3


def test_an_interrupted_finetune_is_resumed_not_blocked(tiny_data_dir, tiny_tokenizer_dir, tmp_path):
    """finetune keeps its checkpoints in OUT/checkpoints/model/, apart from the model files: a run killed after a
    checkpoint (no report.json yet) is offered a resume, and `--resume_from_checkpoint last` finishes it."""
    base = build_tiny_bert(tiny_tokenizer_dir, tmp_path / "base", labels=None)
    out = tmp_path / "teacher"
    flags = ["--model_name_or_path", str(base), "--output_dir", str(out), "--save_strategy", "steps",
             "--save_steps", "2", *data_flags(tiny_data_dir), *FAST]
    finetune.main(flags)
    assert (out / "model.safetensors").is_file() and not list(out.glob("checkpoint-*"))
    for name in ("report.json", "model.safetensors"):
        (out / name).unlink()
    for later in sorted((out / "checkpoints" / "model").glob("checkpoint-*"))[1:]:
        shutil.rmtree(later)
    with pytest.raises(FileExistsError, match=r"did not finish(?s:.*)checkpoints/model/checkpoint-\d+ and no report"):
        finetune.main(flags)
    report = finetune.main([*flags, "--resume_from_checkpoint", "last"])
    assert (out / "model.safetensors").is_file() and report["model"]["path"] == "."
