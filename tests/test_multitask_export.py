"""`nlp-reuse distill --tasks --export`: each task's student exported alone to ONNX (int8 behind the accuracy
guard), measured, recorded in its task entry, and published with it by `nlp-reuse push --task`."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from hub_support import ROOT_FILES, folder_bytes, split_card, table_rows
from test_multitask import FAST, base_dir, finetuned, tasks_yaml  # noqa: F401  (module fixtures, rebuilt here)
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nlp_reuse.commands import distill, push
from nlp_reuse.multitask.pipeline import format_multitask_table
from nlp_reuse.report import MultiTaskReport


@pytest.fixture(scope="module")
def exported(finetuned, tasks_yaml, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("mt_export") / "student"
    (out / "exports" / "gone").mkdir(parents=True)  # an earlier run's export: removed, never shipped as this one's
    report = distill.main(["--tasks", str(tasks_yaml), "--teacher_model_name_or_path", str(finetuned[0]),
                           "--student_num_layers", "2", "--output_dir", str(out), "--overwrite_output_dir", "true",
                           "--export", "onnx_int8", *FAST])
    return out, report


def test_each_tasks_student_is_exported_alone_measured_and_recorded(exported):
    out, report = exported
    assert MultiTaskReport.from_dict(report).to_dict() == report == json.loads((out / "report.json").read_text())
    assert sorted(p.name for p in (out / "exports").iterdir()) == ["binary", "sentiment"]
    for name, entry in report["tasks"].items():
        folder = out / "exports" / name
        assert set(entry["artefacts"]) == {"onnx", "onnx_int8"}
        assert entry["export"]["deliverable"] in ("onnx", "onnx_int8")
        # fp32 ONNX of the task's student: the same test predictions, so the same accuracy as the PyTorch student.
        assert entry["artefacts"]["onnx"]["test"]["accuracy"] == pytest.approx(entry["student"]["test"]["accuracy"])
        assert entry["artefacts"]["onnx_int8"]["size_mb"] < entry["artefacts"]["onnx"]["size_mb"]
        model = AutoModelForSequenceClassification.from_pretrained(out / "tasks" / name).eval()
        tokenizer = AutoTokenizer.from_pretrained(out / "tasks" / name)
        encoded = tokenizer(["the movie was great", "an awful boring plot"], padding=True, return_tensors="np")
        session = onnxruntime.InferenceSession(str(folder / "onnx" / "model.onnx"),
                                               providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], {i.name: encoded[i.name] for i in session.get_inputs()})
        expected = model(**tokenizer(["the movie was great", "an awful boring plot"], padding=True,
                                     return_tensors="pt")).logits.detach().numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-4)
        assert len(logits[0]) == len(entry["task"]["labels"])  # this task's head, not another's
    table = format_multitask_table(report)
    assert "exports/binary/onnx_int8" in table and "exports/sentiment/onnx" in table


def test_push_task_ships_the_tasks_onnx_folders_and_its_export_record(exported, tmp_path, caplog):
    out, report = exported
    run = Path(shutil.copytree(out, tmp_path / "run"))
    (run / "onnx").mkdir()  # a run-level ONNX folder describes another model: it stays home
    (run / "onnx" / "model.onnx").write_bytes(b"some other model's graph")
    dry = tmp_path / "dry"
    with caplog.at_level(logging.WARNING, logger="nlp_reuse.hub.upload"):
        push.main(["--model_dir", str(run), "--task", "binary", "--dry_run", str(dry)])
    files = folder_bytes(dry)
    exports = run / "exports" / "binary"
    assert files["onnx/model.onnx"] == (exports / "onnx" / "model.onnx").read_bytes()
    assert files["onnx_int8/model_quantized.onnx"] == (exports / "onnx_int8" / "model.onnx").read_bytes()
    assert json.loads(files["export_report.json"]) == json.loads((exports / "export_report.json").read_text())
    assert {f for f in files if "/" not in f} == ROOT_FILES | {"README.md", "report.json", "run_args.json",
                                                               "export_report.json"}
    meta, body = split_card(files["README.md"].decode())
    assert "onnx" in meta["tags"]
    rows = table_rows(body)
    entry = report["tasks"]["binary"]
    int8 = next(cells for label, cells in rows.items() if label.endswith("(`onnx_int8/`)"))
    assert f"{entry['artefacts']['onnx_int8']['test']['accuracy']:.4f}" in " ".join(int8)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"Not uploaded with --task binary: onnx/ of {run}. ") for m in warnings), warnings


def test_push_task_ships_no_onnx_folder_the_tasks_entry_does_not_list(exported, tmp_path):
    run = Path(shutil.copytree(exported[0], tmp_path / "run"))
    report = json.loads((run / "report.json").read_text())
    del report["tasks"]["binary"]["artefacts"]["onnx_int8"]  # e.g. an int8 model the guard rejected
    (run / "report.json").write_text(json.dumps(report))
    push.main(["--model_dir", str(run), "--task", "binary", "--dry_run", str(tmp_path / "dry")])
    assert not (tmp_path / "dry" / "onnx_int8").exists() and (tmp_path / "dry" / "onnx" / "model.onnx").is_file()
