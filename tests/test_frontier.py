"""The frontier: plan checks (before any training), the Pareto front, the budget pick, and one tiny end-to-end run
(two students of different families, two seeds, timed beside the teacher) whose files are read back."""

import json

import pytest
import yaml

from conftest import make_examples, write_jsonl
from nlp_reuse.errors import ConfigError
from nlp_reuse.frontier import FrontierRow, mark_pareto, read_plan, within_budget
from nlp_reuse.frontier.plan import to_argv


def _row(name: str, latency: float, accuracy: float) -> FrontierRow:
    return FrontierRow(name=name, student=name, artefact="onnx_int8", variant="", student_type="bilstm", seeds=[1],
                       accuracy=accuracy, accuracy_std=0.0, macro_f1=accuracy, macro_f1_std=0.0,
                       latency_b1_p50_ms=latency, latency_b1_p50_ms_std=0.0, throughput_b32_per_s=1.0, size_mb=1.0,
                       params=1)


def test_pareto_front_keeps_only_undominated_rows():
    rows = [_row("teacher", 10.0, 0.95), _row("slow-worse", 12.0, 0.90), _row("fast", 0.2, 0.90),
            _row("faster-worse", 0.1, 0.80), _row("dominated", 0.3, 0.89), _row("tie-slower", 0.25, 0.90)]
    mark_pareto(rows)
    assert {r.name for r in rows if r.pareto} == {"teacher", "fast", "faster-worse"}


def test_budget_picks_the_most_accurate_model_within_it():
    rows = [_row("teacher", 10.0, 0.95), _row("mid", 1.0, 0.93), _row("fast", 0.2, 0.90)]
    assert within_budget(rows, 1.0).name == "mid"
    assert within_budget(rows, 0.5).name == "fast"
    assert within_budget(rows, 100).name == "teacher"
    assert within_budget(rows, 0.1) is None


def test_to_argv_spells_flags_as_the_distill_parser_reads_them():
    argv = to_argv({"student_type": "bilstm", "trim_vocabulary": True, "student_config": {"hidden_size": 8},
                    "augment": None, "learning_rate": 0.002})
    assert argv == ["--student_type", "bilstm", "--trim_vocabulary", "true", "--student_config",
                    '{"hidden_size": 8}', "--learning_rate", "0.002"]


def _plan(tmp_path, students, **common) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"dataset_name": "builtin:trec6", **common, "students": students}))
    return str(path)


@pytest.mark.parametrize(("students", "common", "message"), [
    ({}, {}, "names no students"),
    ({"a": {"student_typ": "bilstm"}}, {}, r"(?s)unknown flag 'student_typ' in students.a.*did you mean student_type"),
    ({"a": {"student_type": "bilstm", "max_length": 32}}, {}, "sets data flags"),
    ({"a": {"student_type": "bilstm"}}, {"output_dir": "x"}, "which the frontier sets for every run"),
    ({"a b": {"student_type": "bilstm"}}, {}, "must be a folder name"),
    ({"a": {"student_type": "bilstm", "seeds": "x"}}, {}, "seeds must be a list of integers"),
    ({"a": {"student_num_layers": 1, "compress": {"qat_epoch": 1}}}, {},
     r"(?s)unknown flag 'qat_epoch' in students.a.compress.*did you mean qat_epochs"),
    ({"a": {"student_num_layers": 1, "compress": {"output_dir": "x"}}}, {}, "students.a.compress sets 'output_dir'"),
    ({"a": {"student_num_layers": 1, "compress": {"prune_ffn_fraction": 1.5}}}, {},
     "students.a.compress: .*prune_ffn_fraction out of range"),
])
def test_bad_plans_are_refused_before_training(tmp_path, students, common, message):
    with pytest.raises(ConfigError, match=message):
        read_plan(_plan(tmp_path, students, **common))


def test_a_compress_step_runs_after_the_distill_run_into_run_compressed(tmp_path):
    from nlp_reuse.frontier.plan import compress_flags

    plan = read_plan(_plan(tmp_path, {"l1": {"student_num_layers": 1, "compress": {"qat_epochs": 1}},
                                      "bilstm": {"student_type": "bilstm"}}, teacher_model_name_or_path="t"))
    folder = tmp_path / "runs" / "l1" / "seed3"
    flags = compress_flags(plan, "l1", 3, folder)
    assert flags == {"model_dir": str(folder / "student"), "teacher_model_name_or_path": "t",
                     "output_dir": str(folder / "compressed"), "benchmark": False, "overwrite": True, "seed": 3,
                     "qat_epochs": 1}
    assert compress_flags(plan, "bilstm", 3, folder) is None
    assert "compress" not in plan.students["l1"]  # not a distill flag


def test_a_bad_value_in_one_student_names_it_before_any_run(tmp_path, tiny_teacher_dir):
    from nlp_reuse.frontier import run_plan

    plan = read_plan(_plan(tmp_path, {"ok": {"student_type": "static"}, "bad": {"student_type": "lstm"}},
                           teacher_model_name_or_path=str(tiny_teacher_dir)))
    with pytest.raises(ConfigError, match=r"students.bad:.*student_type"):
        run_plan(plan, [1], tmp_path / "out")
    assert not (tmp_path / "out" / "runs").exists()  # nothing trained


def test_frontier_end_to_end_on_tiny_models(tmp_path, tiny_teacher_dir):
    from nlp_reuse.commands.frontier import main

    data = tmp_path / "data"
    data.mkdir()
    for split, (n, seed) in {"train": (48, 1), "validation": (12, 2), "test": (12, 3)}.items():
        write_jsonl(data / f"{split}.jsonl", make_examples(n, seed))
    common = {"train_file": str(data / "train.jsonl"), "validation_file": str(data / "validation.jsonl"),
              "test_file": str(data / "test.jsonl"), "teacher_model_name_or_path": str(tiny_teacher_dir),
              "max_length": 32, "max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 0.01,
              "latency_samples": 2, "use_cpu": True}
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("".join(r["text"] + " indeed\n" for r in make_examples(10, seed=9)))
    students = {"static": {"student_type": "static", "student_embedding_dim": 16, "student_classifier_hidden": 0,
                           "augment": "masking,ngram", "augment_factor": 2, "trim_vocabulary": True,
                           "unlabeled_file": str(unlabeled)},
                "bilstm": {"student_type": "bilstm", "student_embedding_dim": 16, "student_hidden_size": 8,
                           "kd_loss": "mse", "alpha": 1.0, "seeds": [2]}}
    out = tmp_path / "frontier"
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump({**common, "students": students}))
    result = main(["--plan", str(plan_path), "--output_dir", str(out), "--seeds", "1,2", "--latency_calls", "3",
                   "--throughput_calls", "1", "--num_threads", "1", "--latency_budget_ms", "1000"])

    stored = json.loads((out / "frontier.json").read_text())
    names = {r["name"] for r in stored["rows"]}
    assert {"static pytorch", "bilstm pytorch"} <= names and len(names) >= 4  # + each one's ONNX deliverable
    static = next(r for r in stored["rows"] if r["name"] == "static pytorch")
    assert static["seeds"] == [1, 2] and len(static["per_seed"]) == 2
    assert next(r for r in stored["rows"] if r["name"] == "bilstm pytorch")["seeds"] == [2]
    for row in stored["rows"]:  # speed-up and retention are against the teacher timed in the same process
        assert row["speedup_b1"] == pytest.approx(stored["teacher"]["latency_b1_p50_ms"] / row["latency_b1_p50_ms"])
        assert row["retention"] == pytest.approx(row["accuracy"] / stored["teacher"]["accuracy"])
        assert row["baseline_accuracy"] is not None
    ablation = {e["student"]: e for e in stored["ablation"]}
    assert ablation["static"]["transfer"]["num_augmented"] > 0
    assert ablation["static"]["transfer"]["num_unlabeled"] == 10
    assert ablation["static"]["vocabulary"]["after"] < ablation["static"]["vocabulary"]["before"]
    assert ablation["bilstm"]["kd_loss"] == "mse" and ablation["bilstm"]["transfer"] is None
    assert stored["latency_budget"]["pick"] == result["latency_budget"]["pick"] is not None
    markdown = (out / "frontier.md").read_text()
    assert "| static pytorch |" in markdown and "KD gain (points)" in markdown
    assert (out / "frontier.png").stat().st_size > 10_000

    # The card says what the student is, how its vocabulary was cut and what it learnt from.
    from nlp_reuse.hub import render_model_card

    card = render_model_card(out / "runs" / "static" / "seed1", repo_id="me/static-student")
    assert "static-embedding text classifier" in card and "static bag-of-embeddings classifier" in card
    assert "**Vocabulary:** trimmed after training from" in card
    transfer = next(line for line in card.splitlines() if line.startswith("- **Transfer set:**"))
    assert "10 unlabeled texts from `unlabeled.txt`" in transfer and str(tmp_path) not in transfer
    bilstm_card = render_model_card(out / "runs" / "bilstm" / "seed2", repo_id="me/bilstm-student")
    assert "bidirectional LSTM classifier" in bilstm_card and "mean squared error between" in bilstm_card
    # Loading a family folder needs nlp_reuse's Auto registration; Optimum's ORT classes do not know the type.
    assert "import nlp_reuse  # noqa: F401\nfrom transformers import pipeline" in bilstm_card
    assert "ORTModelForSequenceClassification" not in bilstm_card

    # A second call keeps the runs that finished with the same flags and only measures again; a student whose flags
    # changed in the plan trains again rather than being measured stale.
    reports = {name: (out / "runs" / name / "seed2" / "report.json") for name in ("static", "bilstm")}
    stamps = {name: path.stat().st_mtime_ns for name, path in reports.items()}
    students["bilstm"]["learning_rate"] = 0.005
    plan_path.write_text(yaml.safe_dump({**common, "students": students}))
    main(["--plan", str(plan_path), "--output_dir", str(out), "--seeds", "1,2", "--latency_calls", "2",
          "--throughput_calls", "1", "--num_threads", "1"])
    assert reports["static"].stat().st_mtime_ns == stamps["static"]
    assert reports["bilstm"].stat().st_mtime_ns != stamps["bilstm"]
    assert json.loads(reports["bilstm"].read_text())["distillation"]["learning_rate"] == 0.005


def test_a_compressed_deliverable_is_measured_only_when_its_report_is_there(tmp_path):
    from nlp_reuse.frontier.measure import _compressed_deliverable

    assert _compressed_deliverable(tmp_path) is None
    (tmp_path / "compressed").mkdir()
    (tmp_path / "compressed" / "compress_report.json").write_text('{"deliverable": "onnx_qat_int8"}')
    assert _compressed_deliverable(tmp_path) == "compressed/onnx_qat_int8"
