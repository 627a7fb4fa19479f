"""Publishing, the model card: rendered from report.json and the template, every number from the report."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hub_support import (
    REPO,
    TEACHER_COMMAND,
    TOKEN,
    TREC6,
    expected_cells,
    split_card,
    table_rows,
)
from huggingface_hub import ModelCard

from nlp_reuse.hub import (
    BUILTIN_DATASETS,
    load_run_report,
    prepare_upload_folder,
    render_model_card,
    resolve_base_model,
)
from nlp_reuse.redact import REDACTED, scrub_secrets

# ---------------------------------------------------------------------------------------------------------- card


def test_card_front_matter_has_hub_keys_and_report_metrics(trec6_run):
    report = load_run_report(trec6_run).to_dict()
    meta, _ = split_card(render_model_card(trec6_run, repo_id="me/bert-tiny-trec6"))

    assert meta["license"] == "apache-2.0" and meta["language"] == "en"
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert "distillation" in meta["tags"] and "onnx" not in meta["tags"]
    assert meta["datasets"] == ["CogComp/trec"]  # builtin:trec6 mapped to the Hub's copy of TREC
    assert meta["base_model"] == "google-bert/bert-base-uncased"
    (index,) = meta["model-index"]
    assert index["name"] == "me/bert-tiny-trec6"
    (result,) = index["results"]
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"]["type"] == "CogComp/trec" and result["dataset"]["split"] == "test"
    metrics = {m["type"]: m["value"] for m in result["metrics"]}
    assert metrics == {"accuracy": report["student"]["test"]["accuracy"], "f1": report["student"]["test"]["macro_f1"]}


def test_card_body_numbers_all_come_from_the_report(trec6_run):
    report = load_run_report(trec6_run).to_dict()
    card = render_model_card(trec6_run, repo_id="me/bert-tiny-trec6")
    _, body = split_card(card)
    rows = table_rows(body)
    assert rows["Teacher (`google-bert/bert-base-uncased`)"] == expected_cells(report["teacher"], report["teacher"])
    assert rows["**Student (this model)**"] == expected_cells(report["student"], report["teacher"])
    assert len(rows) == 2  # no baseline, no int8 in this run

    kd = report["distillation"]
    assert f"temperature {kd['temperature']}; alpha {kd['alpha']}" in body
    assert "1→2, 2→4, 3→6" in body and f"weight {kd['hidden_loss_weight']}" in body
    assert f"epochs {kd['num_train_epochs']}, learning rate {kd['learning_rate']}" in body
    assert "98.3% of the teacher's accuracy" in body  # retention 0.9828
    assert "\n".join(f"| {i} | {label} |" for i, label in enumerate(TREC6)) in body
    assert f"## Reproduce\n\n```bash\n{report['command']}\n```" in body  # no teacher report to quote
    assert "loses some accuracy on top\n  (98.3% of the teacher's accuracy retained here)" in body
    assert "`builtin:trec6` is the TREC question-classification data" in body
    assert 'pipeline("text-classification", model="me/bert-tiny-trec6")' in body
    assert "ORTModelForSequenceClassification" not in body  # no ONNX folder in this run

    # No number is typed by hand: strip the dataset's prose (citations) and code, then every number left is a
    # formatted report value, a value of the student's config, or a label id.
    task, teacher, student = report["task"], report["teacher"], report["student"]
    allowed = {c for row in rows.values() for c in row} | {str(v) for v in task.values() if isinstance(v, int)}
    allowed |= {str(v) for v in kd.values() if isinstance(v, (int, float))} | {"98.3%", "±0.019"}
    allowed |= {str(teacher["num_layers"]), str(student["num_layers"]), "22.72M", "17.39M"}
    allowed |= {str(i) for i in range(len(TREC6))} | {"3.11.7", "2.13.0", "4.57.6"}  # label ids, environment
    allowed |= {"32", "4"}  # the student config's hidden size and attention heads
    allowed |= {"10^6", "1", "95%"}  # units and definitions: MB = 10^6 bytes, batch size 1, 95% interval
    prose = re.sub(r"```.*?```", "", body, flags=re.DOTALL).replace(
        BUILTIN_DATASETS["builtin:trec6"]["note"], "")
    numbers = set(re.findall(r"(?<![\w.])±?\d+(?:\.\d+)*(?:[%xMk]|\^\d+)?", prose))
    assert numbers <= allowed, numbers - allowed
    # The ±95% interval is derived from the report: 1.96 * sqrt(p (1 - p) / n).
    acc = student["test"]["accuracy"]
    assert f"±{1.96 * (acc * (1 - acc) / task['num_test']) ** 0.5:.3f}" == "±0.019"


def test_card_of_a_real_run_with_onnx_artefacts(distill_run):
    report = load_run_report(distill_run).to_dict()
    card = render_model_card(distill_run, repo_id=REPO)
    meta, body = split_card(card)
    assert "datasets" not in meta  # local jsonl files are not a Hub dataset
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == "custom"
    # The local teacher's own report.json says it was fine-tuned from builtin:minilm.
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "onnx" in meta["tags"]
    rows = table_rows(body)
    teacher = report["teacher"]
    assert rows["Baseline: same shape, fine-tuned without distillation"] == expected_cells(report["baseline"], teacher)
    int8 = rows["Student, ONNX int8 (dynamic quantization) (`onnx_int8/`)"]
    assert int8 == expected_cells(report["artefacts"]["onnx_int8"], teacher)
    assert int8[:2] == ["0.4167", "0.3022"]
    assert f'ORTModelForSequenceClassification.from_pretrained("{REPO}", subfolder="onnx")\n' in body
    assert (f'ORTModelForSequenceClassification.from_pretrained("{REPO}", subfolder="onnx_int8", '
            'file_name="model_quantized.onnx")') in body
    # The plain onnxruntime snippet needs no Optimum (which cannot be installed beside transformers 5).
    assert f'snapshot_download("{REPO}", allow_patterns="onnx_int8/*") + "/onnx_int8"' in body
    assert 'onnxruntime.InferenceSession(f"{path}/model_quantized.onnx")' in body
    assert 'onnxruntime.InferenceSession(f"{path}/model.onnx")' in body
    assert TOKEN not in card
    assert f"--hub_token {REDACTED}" in body
    assert f"fine-tuned with:\n\n```bash\n{TEACHER_COMMAND}\n```" in body
    assert ModelCard(card).data.eval_results[0].metric_value == report["student"]["test"]["accuracy"]


def test_base_model_resolution(tmp_path):
    assert resolve_base_model("builtin:minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_base_model("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    assert resolve_base_model(str(tmp_path)) is None  # a local folder without a finetune report
    assert resolve_base_model("/not/here/teacher") is None


def test_card_and_folder_errors_say_expected_found_fix(trec6_run, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"found no folder at .*Fix"):
        render_model_card(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"looks like a model folder"):
        render_model_card(trec6_run / "student")  # the student folder instead of the run folder

    run = Path(shutil.copytree(trec6_run, tmp_path / "run"))
    shutil.rmtree(run / "student")
    with pytest.raises(FileNotFoundError, match=r"Expected the student model folder .*student.*Fix"):
        prepare_upload_folder(run, tmp_path / "out")

    run = Path(shutil.copytree(trec6_run, tmp_path / "run2"))
    report = json.loads((run / "report.json").read_text())
    del report["student"]["latency_ms"]
    (run / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"'student'.*lacks \['latency_ms'\]"):
        render_model_card(run)

    report = json.loads((trec6_run / "report.json").read_text())
    report["task"]["labels"] = list(reversed(TREC6))
    (run / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"id2label to list report.json task.labels"):
        render_model_card(run)


def test_scrub_redacts_credentials_but_not_special_tokens():
    value = {"training": {"hub_token": "abc", "push_to_hub_token": None, "pad_token": "[PAD]", "seed": 1,
                          "nested": [{"api_key": "k"}, f"text with {TOKEN} inside"]},
             "command": "python x.py --hub_token=hf_abcdefghijklmnopqrstuvwxyz --token secret --tokenizer_name t"}
    scrubbed = scrub_secrets(value, ["secret-value-123"])
    assert scrubbed["training"]["hub_token"] == REDACTED and scrubbed["training"]["push_to_hub_token"] is None
    assert scrubbed["training"]["pad_token"] == "[PAD]" and scrubbed["training"]["seed"] == 1
    assert scrubbed["training"]["nested"] == [{"api_key": REDACTED}, f"text with {REDACTED} inside"]
    assert scrubbed["command"] == f"python x.py --hub_token={REDACTED} --token {REDACTED} --tokenizer_name t"
    assert scrub_secrets(value["command"]) == scrubbed["command"]  # a bare command line, as distill.py records it


def test_command_line_scrubs_without_loading_the_publishing_code():
    code = "import nlp_reuse.cli, sys; assert 'nlp_reuse.hub' not in sys.modules, sorted(sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]


def test_report_of_a_real_run_round_trips(distill_run):
    written = json.loads((distill_run / "report.json").read_text())
    assert load_run_report(distill_run).to_dict() == written  # what run_distillation writes fits the schema


# ------------------------------------------------------------------------------------------------- upload folder


def test_base_model_of_a_relative_local_teacher_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    from nlp_reuse.hub import resolve_base_model

    teacher = tmp_path / "runs" / "teacher"
    teacher.mkdir(parents=True)
    (teacher / "report.json").write_text(json.dumps({"model": {"name_or_path": "builtin:minilm"}}))
    monkeypatch.chdir(tmp_path)
    assert resolve_base_model("runs/teacher") == "sentence-transformers/all-MiniLM-L6-v2"
    monkeypatch.chdir(tmp_path.parent)  # elsewhere the relative path means something else; local_path does not
    assert resolve_base_model(str(teacher.resolve())) == "sentence-transformers/all-MiniLM-L6-v2"


def test_lineage_names_domain_alignment_and_continued_pretraining(tmp_path):
    from nlp_reuse.hub.lineage import describe_lineage
    from nlp_reuse.report import ModelEntry

    adapted = tmp_path / "adapted"
    adapted.mkdir()
    (adapted / "report.json").write_text(json.dumps({
        "model": {"name_or_path": "builtin:minilm", "head_initialised": True},
        "texts": {"sources": [{"flag": "unlabeled_file", "name": "tweets.txt", "texts": 1716}]},
        "masked_lm_loss": {"heldout": {"before": 9.81, "after": 3.2}}}))
    teacher_report = {"task": {"dataset": "builtin:sentiment_movies"}, "model": {"name_or_path": str(adapted)},
                      "domain_adaptation": {"target_unlabeled_file": "/data/tweets.txt", "num_target_texts": 1716,
                                            "domain_loss": "mmd", "domain_loss_weight": 1.0}}
    entry = ModelEntry(params=1, num_layers=6, size_mb=1.0, test={"accuracy": 0.9, "macro_f1": 0.9}, latency_ms=1.0)
    alignment, pretraining = describe_lineage(entry, teacher_report)
    assert alignment == ("**Domain alignment:** the teacher was fine-tuned on `builtin:sentiment_movies` while "
                         "aligning its features with 1,716 unlabeled target-domain texts of `tweets.txt` by the "
                         "`mmd` loss (weight 1.0).")
    assert pretraining.startswith(f"**Continued pretraining:** the teacher's encoder `{adapted}` is `builtin:minilm` "
                                  "after masked-LM training on unlabeled target-domain texts: tweets.txt (1716 texts)")
    assert "9.810 → 3.200 (the MLM head was new" in pretraining
    # A partial report (another tool's) gives what it can, never a crash.
    partial = describe_lineage(entry, {"domain_adaptation": {"domain_loss": "coral"}})
    assert partial[0].startswith("**Domain alignment:** the teacher was fine-tuned on `its labelled data`")
    assert describe_lineage(entry, {}) == []


def test_lineage_names_pseudo_labelled_training_rows(tmp_path):
    from nlp_reuse.hub.lineage import describe_extra_train, describe_lineage
    from nlp_reuse.report import ModelEntry

    task = {"dataset": "builtin:sentiment_movies", "num_train": 2858, "num_extra_train": 858,
            "extra_train_file": "/runs/pseudo/tweets.jsonl"}
    entry = ModelEntry(params=1, num_layers=6, size_mb=1.0, test={"accuracy": 0.9, "macro_f1": 0.9}, latency_ms=1.0)
    assert describe_lineage(entry, {"task": task}) == [
        "**Extra training rows:** 858 of the teacher's 2,858 training examples came from `tweets.jsonl`."]
    # Rows written by `nlp-reuse pseudo-label`: the record taken at training time says how they were labelled (the
    # card reads nothing beside the file, so it is the same from any folder and after the file is labelled again).
    made = {"model_name_or_path": "/runs/movies", "unlabeled_file": "/data/tweets_unlabeled.txt", "fraction": 0.5,
            "balance": "proportional"}
    assert describe_extra_train({**task, "extra_train_labelled_by": made}, "student") == (
        "**Extra training rows:** 858 of the student's 2,858 training examples came from `tweets.jsonl`: pseudo-labels "
        "of `tweets_unlabeled.txt` by `movies`, the most confident 0.5 of each predicted class (self-training).")
    made = {**made, "model_name_or_path": "you/movies-minilm", "balance": "equal"}
    assert describe_extra_train({**task, "extra_train_labelled_by": made}, "student").endswith(
        "by `you/movies-minilm`, the same number of each predicted class (0.5 of an even share), its most confident "
        "(self-training).")
    assert describe_extra_train({"num_train": 5}, "student") is None
    assert describe_extra_train({"extra_train_file": "x.csv"}, "teacher") == (
        "**Extra training rows:** some of the teacher's training examples came from `x.csv`.")


def test_joint_training_line_of_a_three_task_proportional_run():
    from nlp_reuse.hub import describe_joint_training
    from nlp_reuse.report import MultiTaskReport, ReportError

    def entry(accuracy, **extra):
        return {**extra, "params": 1, "num_layers": 3, "size_mb": 1.0,
                "test": {"accuracy": accuracy, "macro_f1": accuracy}, "latency_ms": 1.0}

    task = {"dataset": "builtin:trec6", "labels": TREC6, "text_column": "text", "num_train": 2000,
            "num_validation": 538, "num_test": 538}
    accuracies = {"trec6": (0.9498, 0.9275), "sms_spam": (0.9845, 0.9889), "movie_reviews": (0.8042, 0.7890)}
    report = {
        "multitask": {"path": "joint", "tasks": list(accuracies)},
        "tasks": {name: {"task": task, "teacher": entry(teacher, name_or_path="runs/teacher"),
                         "student": entry(student, path=f"tasks/{name}"), "retention": student / teacher}
                  for name, (teacher, student) in accuracies.items()},
        "sampling": {"rule": "proportional", "temperature": 1.0},
        "distillation": {"temperature": 2.0, "alpha": 0.5, "student_init": "teacher_layers:[0, 2, 5]",
                         "num_train_epochs": 3.0, "learning_rate": 2e-4, "per_device_train_batch_size": 32,
                         "seed": 1},
        "command": "nlp-reuse distill --tasks tasks.yaml ...",
    }
    assert describe_joint_training(MultiTaskReport.from_dict(report), "sms_spam") == (
        "**Multi-task:** trained jointly with tasks `trec6`, `sms_spam` and `movie_reviews` on one shared encoder "
        "(sampling: proportional, each batch's task drawn with probability ∝ its training-set size); this repo holds "
        "task `sms_spam`'s head and the shared encoder. The multi-task teacher's own `sms_spam` head reaches test "
        "accuracy 0.9845; the other tasks' heads on this student's encoder reach test accuracy `trec6` 0.9275 and "
        "`movie_reviews` 0.7890.")
    view = MultiTaskReport.from_dict(report).task_report("movie_reviews")
    assert (view.student.path, view.retention, view.distillation.hidden_loss_weight) == (
        "tasks/movie_reviews", 0.789 / 0.8042, 0.0)
    del report["distillation"]["alpha"]
    with pytest.raises(ReportError, match=r"'distillation' lacks \['alpha'\]"):
        MultiTaskReport.from_dict(report)
