"""report.json as dataclasses: exact round trips (unknown keys kept), and errors that name the key and the file."""

import copy
import json

import pytest

from nlp_reuse.errors import NlpReuseError
from nlp_reuse.report import FinetuneReport, ModelEntry, ReportError, RunReport

TREC6 = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
TEST_METRICS = {"accuracy": 0.9460966542750929, "macro_f1": 0.9482605852964818}
COST = {"trainable_params": 17392134, "total_params": 17392134, "trainable_fraction": 1.0, "train_runtime_s": 280.57,
        "peak_memory_mb": 1272.1, "peak_memory_kind": "cpu_peak_rss"}


def real_report() -> dict:
    """What `nlp-reuse distill --export onnx_int8 --run_baseline true --teacher_cache ...` wrote for the TREC-6 demo."""
    def entry(**fields):
        return {**fields, "params": 17392134, "num_layers": 3, "size_mb": 69.575, "test": dict(TEST_METRICS),
                "latency_ms": 13.884}

    def artefact(name, size_mb, latency_ms):
        return {"name_or_path": f"runs/demo/distill/{name}", "params": 17392668, "num_layers": 3, "size_mb": size_mb,
                "test": dict(TEST_METRICS), "latency_ms": latency_ms, "path": name}

    return {
        "task": {"dataset": "builtin:trec6", "labels": list(TREC6), "text_column": "text", "num_train": 4305,
                 "num_validation": 538, "num_test": 538},
        "teacher": {"name_or_path": "runs/demo/teacher", "local_path": "/work/runs/demo/teacher", "params": 22715526,
                    "num_layers": 6, "size_mb": 90.874,
                    "test": {"accuracy": 0.9516728624535316, "macro_f1": 0.952965905368716}, "latency_ms": 26.54},
        "student": entry(path="student"),
        "baseline": entry(path="baseline"),
        "artefacts": {"onnx": artefact("onnx", 69.987, 4.348233499968046),
                      "onnx_int8": artefact("onnx_int8", 53.643, 3.1524564999472204)},
        "export": {"deliverable": "onnx_int8", "guard_triggered": False,
                   "guard": {"fp32_accuracy": 0.9163568773234201, "drop_points": -0.1859, "triggered": False},
                   "quantized_ops": {"MatMulInteger": 20, "QAttention": 0}, "isa": "avx2"},
        "retention": 0.9941,
        "distillation": {"temperature": 2.0, "alpha": 0.5, "hidden_loss_weight": 0.0, "hidden_loss": "mse",
                         "attention_loss_weight": 0.0, "layer_map": [], "student_init": "teacher_layers:[0, 2, 5]",
                         "strategy": "full", "strategy_config": {"strategy": "full", "layerwise_lr_decay": 1.0},
                         "num_train_epochs": 4, "learning_rate": 0.0001, "per_device_train_batch_size": 32,
                         "gradient_accumulation_steps": 1, "world_size": 1, "distributed_type": "NO", "seed": 42},
        "training_cost": {"student": dict(COST), "baseline": {**COST, "train_runtime_s": 220.33}},
        "teacher_cache": {"fingerprint": "1765bd8146530e8e3092", "path": "runs/teacher_cache/1765bd8146530e8e3092",
                          "computed": True, "seconds": 65.728},
        "teacher_measurements": {"key": "9f2c", "reused": False},
        "command": "python scripts/distill.py --config configs/trec6_distill.yaml --export onnx_int8 "
                   "--teacher_model_name_or_path runs/demo/teacher --output_dir runs/demo/distill",
        "environment": {"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.23.0", "num_threads": 2,
                        "machine": "x86_64"},
    }


def old_report() -> dict:
    """An older run: no baseline, artefacts, costs or caches; distillation without the later settings; keys this
    version does not know, at the top and inside entries."""
    report = real_report()
    for key in ("baseline", "artefacts", "export", "training_cost", "teacher_cache", "teacher_measurements"):
        del report[key]
    for key in ("attention_loss_weight", "strategy_config", "gradient_accumulation_steps", "world_size",
                "distributed_type"):
        del report["distillation"][key]
    del report["teacher"]["local_path"]
    report["notes"] = {"by": "hand", "tags": ["first try"]}
    report["student"]["checkpoint_step"] = 1200
    report["student"]["test"]["loss"] = 0.21  # extra metrics stay
    report["distillation"]["warmup_ratio"] = 0.1
    return report


@pytest.mark.parametrize("make", [real_report, old_report])
def test_round_trip_is_exact(make):
    report = make()
    parsed = RunReport.from_dict(copy.deepcopy(report))
    assert parsed.to_dict() == report
    assert json.dumps(parsed.to_dict(), sort_keys=True) == json.dumps(report, sort_keys=True)  # int stays int
    assert list(parsed.to_dict()) == list(report)  # top-level keys in the order the pipeline writes them


def test_typed_fields_and_unknown_keys_kept_in_extra():
    report = RunReport.from_dict(old_report())
    assert report.student.test["accuracy"] == TEST_METRICS["accuracy"] and report.task.labels == TREC6
    assert report.teacher.local_path is None and report.baseline is None and report.artefacts is None
    assert report.extra == {"notes": {"by": "hand", "tags": ["first try"]}}
    assert report.student.extra == {"checkpoint_step": 1200}
    assert report.distillation.extra == {"warmup_ratio": 0.1}
    full = RunReport.from_dict(real_report())
    assert full.artefacts["onnx_int8"].path == "onnx_int8" and full.baseline.size_mb == 69.575
    assert full.distillation.strategy_config == {"strategy": "full", "layerwise_lr_decay": 1.0}


def test_to_dict_returns_copies():
    source = real_report()
    report = RunReport.from_dict(source)
    source["task"]["labels"].append("changed after reading")
    out = report.to_dict()
    out["distillation"]["strategy_config"]["strategy"] = "changed after writing"
    assert report.task.labels == TREC6 and report.distillation.strategy_config["strategy"] == "full"


def test_finetune_report_round_trip():
    report = {
        "task": real_report()["task"],
        "model": {"name_or_path": "builtin:minilm", "path": ".", "validation": {"accuracy": 0.95, "macro_f1": 0.94},
                  "train_runtime_s": 301.2, "params": 22715526, "num_layers": 6, "size_mb": 90.874,
                  "test": dict(TEST_METRICS), "latency_ms": 26.54},
        "finetuning": {"strategy": "full", "layerwise_lr_decay": 1.0, **COST, "num_train_epochs": 3.0,
                       "learning_rate": 5e-05, "per_device_train_batch_size": 32, "seed": 42},
        "command": "nlp-reuse finetune --config configs/trec6_teacher.yaml",
        "environment": real_report()["environment"],
    }
    parsed = FinetuneReport.from_dict(report)
    assert parsed.to_dict() == report and parsed.model.validation == {"accuracy": 0.95, "macro_f1": 0.94}


def test_missing_key_names_the_key_and_the_file():
    report = real_report()
    del report["student"]["latency_ms"], report["student"]["size_mb"]
    with pytest.raises(ReportError, match=r"runs/x/report.json: 'student' lacks \['size_mb', 'latency_ms'\]") as err:
        RunReport.from_dict(report, source="runs/x/report.json")
    assert isinstance(err.value, NlpReuseError)  # the command line prints it as a user error
    assert "expected: 'student' to have ['params', 'num_layers', 'size_mb', 'test', 'latency_ms']" in str(err.value)
    assert "fix:" in str(err.value)

    report = real_report()
    del report["baseline"]["params"]  # optional entries are checked as fully as required ones
    with pytest.raises(ReportError, match=r"'baseline' lacks \['params'\]"):
        RunReport.from_dict(report)
    report = real_report()
    del report["artefacts"]["onnx_int8"]["test"]["macro_f1"]
    with pytest.raises(ReportError, match=r"'artefacts.onnx_int8.test' lacks \['macro_f1'\]"):
        RunReport.from_dict(report)
    report = real_report()
    del report["teacher"]["name_or_path"]  # optional in an entry, but the card names the teacher
    with pytest.raises(ReportError, match=r"'teacher' lacks \['name_or_path'\]"):
        RunReport.from_dict(report)
    report = real_report()
    del report["distillation"]
    with pytest.raises(ReportError, match=r"report.json lacks \['distillation'\]"):
        RunReport.from_dict(report)


@pytest.mark.parametrize("path, value, expected, found", [
    (("student", "params"), "17M", "an integer", 'a string, "17M"'),
    (("student", "num_layers"), True, "an integer", "a boolean, true"),  # JSON true is no count
    (("teacher", "test", "accuracy"), None, "a number", "null, null"),
    (("retention",), "0.99", "a number", 'a string, "0.99"'),
    (("distillation", "layer_map"), [[1, "2"]], "a list of [student_layer, teacher_layer] pairs",
     'an array, [[1, "2"]]'),
    (("task", "labels"), "ABBR,DESC", "a list of strings", 'a string, "ABBR,DESC"'),
    (("artefacts", "onnx"), [], "an object", "an array, []"),
    (("environment",), "python 3.11", "an object", 'a string, "python 3.11"'),
])
def test_wrong_type_names_the_key_the_file_and_what_was_found(path, value, expected, found):
    report = real_report()
    parent = report
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    with pytest.raises(ReportError) as err:
        RunReport.from_dict(report, source="runs/x/report.json")
    problem, expected_line, found_line, _ = str(err.value).splitlines()
    assert problem == f"runs/x/report.json: '{'.'.join(path)}' has the wrong type."
    assert expected_line.split(":", 1)[1].strip() == expected
    assert found_line.split(":", 1)[1].strip() == found


def test_read_names_the_file_and_the_line_of_broken_json(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(real_report(), indent=2))
    assert RunReport.read(path).to_dict() == real_report()
    path.write_text('{\n  "task": {},\n  "teacher": \n}\n')
    with pytest.raises(ReportError, match=rf"{path} is not valid JSON \(line 4, column 1"):
        RunReport.read(path)
    path.write_text("[]")
    with pytest.raises(ReportError, match=rf"{path} holds an array"):
        RunReport.read(path)


def test_model_entry_alone():
    entry = {"name_or_path": "x", "params": 1, "num_layers": 1, "size_mb": 0.1, "test": {"accuracy": 1, "macro_f1": 1},
             "latency_ms": 0.5, "batch_size": 1}
    assert ModelEntry.from_dict(entry).to_dict() == entry
    with pytest.raises(ReportError, match=r"bench.json: 'rows.0' lacks \['latency_ms'\]"):
        ModelEntry.from_dict({k: v for k, v in entry.items() if k != "latency_ms"}, source="bench.json",
                             where="rows.0")
