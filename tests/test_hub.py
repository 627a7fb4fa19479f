"""Publishing: model card rendering, the upload folder, loading it back, and pushes to a loopback Hub stand-in."""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
import yaml
from hub_standin import HubStandIn
from huggingface_hub import HfApi, ModelCard, constants
from huggingface_hub.utils import close_session

from conftest import build_tiny_bert
from nlp_reuse.errors import NlpReuseError
from nlp_reuse.hub import (
    BUILTIN_DATASETS,
    default_commit_message,
    describe_folder,
    load_run_report,
    prepare_upload_folder,
    push_from_training_args,
    push_to_hub,
    render_model_card,
    resolve_base_model,
)
from nlp_reuse.redact import REDACTED, scrub_secrets

TOKEN = "hf_nlpReuseStandInToken0123456789abcdef"
TREC6 = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
REPO = "me/tiny-student"
TEACHER_COMMAND = "python scripts/finetune.py --config configs/trec6_teacher.yaml --output_dir runs/demo/teacher"
# transformers 5 saves a fast tokenizer as tokenizer.json + tokenizer_config.json only (no vocab.txt, no
# special_tokens_map.json); the ONNX folders come from torch.onnx + onnxruntime, so no Optimum ort_config.json.
ROOT_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
ONNX_FILES = {"compression.json", "config.json", "tokenizer.json", "tokenizer_config.json"}
DELIVERABLES = (ROOT_FILES | {"README.md", "report.json", "run_args.json", "export_report.json"}
                | {f"onnx/{f}" for f in ONNX_FILES | {"model.onnx"}}
                | {f"onnx_int8/{f}" for f in ONNX_FILES | {"model_quantized.onnx"}})
# huggingface_hub 2 fetches this public registry once per process, without a token, before its first request.
AGENT_REGISTRY = "/api/agent-harnesses"


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def distill_run(tiny_teacher_dir, tiny_data_dir, tmp_path_factory) -> Path:
    """A real tiny run of nlp_reuse.pipeline.run_distillation exported by nlp_reuse.compress (ONNX fp32 and int8),
    with the clutter a trainer leaves around (checkpoints, training_args.bin) and a token a careless writer left."""
    from nlp_reuse.compress.pipeline import export_model
    from nlp_reuse.config import DataArguments, DistillationArguments, DistillScriptArguments
    from nlp_reuse.pipeline import run_distillation

    root = tmp_path_factory.mktemp("distill_run")
    teacher = Path(shutil.copytree(tiny_teacher_dir, root / "teacher"))
    (teacher / "report.json").write_text(json.dumps({"model": {"name_or_path": "builtin:minilm"},
                                                     "command": TEACHER_COMMAND}))
    run = root / "run"
    data_args = DataArguments(train_file=str(tiny_data_dir / "train.jsonl"),
                              validation_file=str(tiny_data_dir / "validation.jsonl"),
                              test_file=str(tiny_data_dir / "test.jsonl"), max_length=32)
    script = DistillScriptArguments(teacher_model_name_or_path=str(teacher), student_num_layers=2, run_baseline=True)
    args = DistillationArguments(output_dir=str(run), num_train_epochs=1, per_device_train_batch_size=16,
                                 latency_samples=3, disable_tqdm=True, hub_token=TOKEN, hub_model_id=REPO)
    run_distillation(data_args, script, args,
                     command=f"python scripts/distill.py --output_dir {run} --hub_token {TOKEN}")

    validation = [json.loads(line) for line in (tiny_data_dir / "validation.jsonl").read_text().splitlines()]
    export = export_model(run / "student", run, validation_texts=[r["text"] for r in validation],
                          validation_labels=[r["label"] for r in validation], max_accuracy_drop=100.0, max_length=32)
    assert export.deliverable_kind == "onnx_int8"
    report = json.loads((run / "report.json").read_text())
    # The report.json entry the contract expects from the export; metrics made distinct from the student's.
    report["artefacts"] = {"onnx_int8": {**report["student"], "path": "onnx_int8",
                                         "size_mb": round(export.sizes_mb["onnx_int8"], 3),
                                         "test": {"accuracy": 0.41666666666666663, "macro_f1": 0.3021978021978022},
                                         "latency_ms": 0.873}}
    (run / "report.json").write_text(json.dumps(report, indent=2))
    run_args = json.loads((run / "run_args.json").read_text())
    run_args["training"]["hub_token"] = TOKEN
    (run / "run_args.json").write_text(json.dumps(run_args, indent=2))
    for clutter in (run / "checkpoint-3", run / "student" / "checkpoint-3"):
        clutter.mkdir()
        (clutter / "optimizer.pt").write_bytes(b"optimizer state")
    (run / "student" / "projections.safetensors").write_bytes(b"projection weights")
    return run


@pytest.fixture(scope="session")
def trec6_run(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """A run folder shaped like the builtin:trec6 demo, with a Hub-id teacher, no baseline and no ONNX."""
    run = tmp_path_factory.mktemp("trec6_run")
    build_tiny_bert(tiny_tokenizer_dir, run / "student", num_layers=2, labels=TREC6)

    def entry(params, layers, size, acc, f1, latency, **extra):
        return {**extra, "params": params, "num_layers": layers, "size_mb": size,
                "test": {"accuracy": acc, "macro_f1": f1}, "latency_ms": latency}

    report = {
        "task": {"dataset": "builtin:trec6", "labels": TREC6, "text_column": "text", "num_train": 4361,
                 "num_validation": 545, "num_test": 546},
        "teacher": entry(22_715_142, 6, 90.867, 0.9597069597069597, 0.9312345678, 9.871,
                         name_or_path="google-bert/bert-base-uncased"),
        "student": entry(17_391_750, 3, 69.572, 0.9432234432234432, 0.9123456789, 4.517, path="student"),
        "retention": 0.9828,
        "distillation": {"temperature": 2.5, "alpha": 0.7, "hidden_loss_weight": 0.3, "hidden_loss": "mse",
                         "attention_loss_weight": 0.0, "layer_map": [[1, 2], [2, 4], [3, 6]],
                         "student_init": "teacher_layers:[0, 2, 4]", "strategy": "full", "num_train_epochs": 4.0,
                         "learning_rate": 0.0001, "per_device_train_batch_size": 32, "seed": 42},
        "command": "python scripts/distill.py --config configs/trec6_distill.yaml --teacher_model_name_or_path "
                   "runs/demo/teacher --output_dir runs/demo/distill",
        "environment": {"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "4.57.6", "num_threads": 2},
    }
    (run / "report.json").write_text(json.dumps(report, indent=2))
    (run / "run_args.json").write_text(json.dumps({"training": {"hub_token": None, "seed": 42}}))
    return run


@pytest.fixture
def hub(monkeypatch):
    """The Hub stand-in on 127.0.0.1, with HF_ENDPOINT and HF_TOKEN pointing at it and online mode on."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # With hf_xet installed, huggingface_hub 2 uploads LFS files through Xet whatever the server answers; the
    # stand-in serves classic LFS (see hub_standin), so the client is switched the way a user would switch it.
    # Set in the environment too, for the pushes run in a fresh process.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    close_session()  # a client cached from another test must not carry its state over
    with HubStandIn(TOKEN) as server:
        # What `HF_ENDPOINT=... python ...` gives: huggingface_hub reads the variable once, at import.
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        yield server
    close_session()


def split_card(card: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", card, re.DOTALL)
    assert match, "card has no front matter"
    return yaml.safe_load(match.group(1)), match.group(2)


def table_rows(body: str) -> dict[str, list[str]]:
    """Results table: first cell -> the other cells."""
    section = body.split("## Results")[1].split("## ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows[1:]}


def expected_cells(entry: dict, teacher: dict) -> list[str]:
    def params(n):
        return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"

    return [f"{entry['test']['accuracy']:.4f}", f"{entry['test']['macro_f1']:.4f}", params(entry["params"]),
            f"{entry['size_mb']:.2f}", f"{entry['latency_ms']:.2f}", f"{teacher['size_mb'] / entry['size_mb']:.1f}x",
            f"{teacher['latency_ms'] / entry['latency_ms']:.1f}x"]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def api_requests(hub: HubStandIn) -> list:
    """The stand-in's requests without the client's agent-harness registry lookup, after checking that lookup was a
    plain GET that carried no token (it is telemetry, not part of a push, and made at most once per process)."""
    lookups = [r for r in hub.requests if r.path == AGENT_REGISTRY]
    assert all(r.method == "GET" and r.authorization is None for r in lookups), lookups
    return [r for r in hub.requests if r.path != AGENT_REGISTRY]


def http_status(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    """Status of one plain HTTP request (http.client: no proxy from the environment can be involved)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request(method, parts.path, body=body, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


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


@pytest.fixture(scope="session")
def upload_folder(distill_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("upload") / "folder"
    files = prepare_upload_folder(distill_run, out, repo_id=REPO, token=TOKEN)
    assert set(files) == DELIVERABLES
    return out


def test_upload_folder_holds_exactly_the_deliverables(distill_run, upload_folder, tmp_path):
    files = folder_bytes(upload_folder)
    assert set(files) == DELIVERABLES  # no checkpoint-*, optimizer, training_args.bin, projections, baseline
    assert files["model.safetensors"] == (distill_run / "student" / "model.safetensors").read_bytes()
    assert files["onnx/model.onnx"] == (distill_run / "onnx" / "model.onnx").read_bytes()
    assert files["onnx_int8/model_quantized.onnx"] == (distill_run / "onnx_int8" / "model.onnx").read_bytes()
    assert files["README.md"].decode() == render_model_card(distill_run, repo_id=REPO)
    assert not any(TOKEN.encode() in data for data in files.values())

    run_args = json.loads(files["run_args.json"])
    assert run_args["training"]["hub_token"] == REDACTED
    assert run_args["training"]["hub_model_id"] == REPO
    report = json.loads(files["report.json"])
    original = json.loads((distill_run / "report.json").read_text())
    assert report["command"] == original["command"].replace(TOKEN, REDACTED)
    assert {k: v for k, v in report.items() if k != "command"} == {k: v for k, v in original.items() if k != "command"}

    listing = describe_folder(upload_folder)
    assert f"{len(files)} files)" in listing and "onnx_int8/model_quantized.onnx" in listing
    with pytest.raises(FileExistsError, match="Expected a new or empty folder"):
        prepare_upload_folder(distill_run, upload_folder)


def test_upload_folder_loads_back_with_transformers_and_onnxruntime(distill_run, upload_folder, tiny_data_dir):
    import numpy as np
    import onnxruntime
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    labels = load_run_report(distill_run).task.labels
    text = "the movie was really great"
    tokenizer = AutoTokenizer.from_pretrained(upload_folder)
    inputs = tokenizer(text, return_tensors="pt")
    model = AutoModelForSequenceClassification.from_pretrained(upload_folder).eval()
    original = AutoModelForSequenceClassification.from_pretrained(distill_run / "student").eval()
    with torch.no_grad():
        logits = model(**inputs).logits
        torch.testing.assert_close(logits, original(**inputs).logits)
    assert [model.config.id2label[i] for i in range(len(labels))] == labels

    (prediction,) = pipeline("text-classification", model=str(upload_folder))(text)
    assert prediction["label"] == labels[int(logits.argmax())]

    # Each ONNX subfolder on its own, as plain onnxruntime loads it (a local clone of the repo stands in for the Hub
    # id): the graph, and the tokenizer and config.json saved next to it. Same input ids, same labels as PyTorch.
    validation = (tiny_data_dir / "validation.jsonl").read_text().splitlines()
    texts = [text] + [json.loads(line)["text"] for line in validation]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = original(**batch).logits.numpy()
    for subfolder, file_name in (("onnx", "model.onnx"), ("onnx_int8", "model_quantized.onnx")):
        folder = upload_folder / subfolder
        session = onnxruntime.InferenceSession(str(folder / file_name), providers=["CPUExecutionProvider"])
        encoded = AutoTokenizer.from_pretrained(folder)(texts, return_tensors="np", padding=True)
        np.testing.assert_array_equal(encoded["input_ids"], batch["input_ids"].numpy())
        (onnx_logits,) = session.run(["logits"], {i.name: encoded[i.name] for i in session.get_inputs()})
        config = AutoConfig.from_pretrained(folder)
        assert [config.id2label[i] for i in range(len(labels))] == labels
        assert [config.id2label[int(i)] for i in onnx_logits.argmax(-1)] == [labels[i] for i in expected.argmax(-1)]
        if subfolder == "onnx":
            np.testing.assert_allclose(onnx_logits, expected, atol=1e-5, rtol=1e-4)
        else:  # dynamic int8: close, not equal (3e-4 apart here; the student's top-2 margins are about 3e-3)
            np.testing.assert_allclose(onnx_logits, expected, atol=1e-2, rtol=0)


# ---------------------------------------------------------------------------------------------------------- push


def test_push_uploads_the_dry_run_folder_in_one_commit(distill_run, hub, tmp_path, caplog, capsys):
    caplog.set_level("DEBUG")
    url = push_to_hub(distill_run, REPO)
    assert url == f"{hub.endpoint}/{REPO}"

    dry = push_to_hub(distill_run, REPO, dry_run=tmp_path / "dry")
    remote = hub.files(REPO)
    assert remote.pop(".gitattributes")  # the repo's own file, created with it
    assert remote == folder_bytes(Path(dry))  # same names, same bytes

    initial, pushed = hub.commits(REPO)
    assert pushed.summary == default_commit_message(load_run_report(distill_run))
    assert pushed.summary.startswith("Upload 2-layer distilled student (test accuracy ")
    assert set(pushed.added) == DELIVERABLES and pushed.deleted == []

    paths = [r.path for r in api_requests(hub)]
    assert paths[0] == "/api/repos/create" and paths[-1] == f"/api/models/{REPO}/commit/main"
    assert any(p.startswith("/_lfs/") for p in paths)  # weights and ONNX went the LFS way, as on the Hub
    assert not any("xet" in p for p in paths)  # the classic LFS path, not Xet (which the stand-in does not serve)
    authorized = [r for r in api_requests(hub) if not r.path.startswith("/_lfs/")]
    assert authorized and all(r.authorization == f"Bearer {TOKEN}" for r in authorized)
    assert not any(TOKEN.encode() in data for data in hub.files(REPO).values())
    assert TOKEN not in caplog.text + "".join(capsys.readouterr())


def test_second_push_adds_a_commit_and_deletes_only_with_patterns(distill_run, hub):
    push_to_hub(distill_run, REPO)
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.upload_file(path_or_fileobj=b"written by someone else\n", path_in_repo="notes/extra.md", repo_id=REPO)

    push_to_hub(distill_run, REPO, commit_message="second push")
    assert [c.summary for c in hub.commits(REPO)][-1] == "second push"
    assert len(hub.commits(REPO)) == 4  # init, first push, foreign file, second push
    assert hub.files(REPO)["notes/extra.md"] == b"written by someone else\n"

    push_to_hub(distill_run, REPO, commit_message="clean notes", delete_patterns=["notes/*"])
    last = hub.commits(REPO)[-1]
    assert last.deleted == ["notes/extra.md"]
    assert set(hub.files(REPO)) == DELIVERABLES | {".gitattributes"}


def test_push_to_a_new_branch_of_a_private_repo(distill_run, hub):
    url = push_to_hub(distill_run, REPO, revision="v1", private=True)
    assert url == f"{hub.endpoint}/{REPO}/tree/v1"
    assert hub.repos[REPO].private
    assert set(hub.files(REPO, "v1")) == DELIVERABLES | {".gitattributes"}
    assert set(hub.files(REPO, "main")) == {".gitattributes"}


def test_push_errors_are_raised_before_any_upload(distill_run, trec6_run, hub, monkeypatch, tmp_path):
    for bad in ("no-owner", "a/b/c", "me/bad name", "me/double--dash", "/name", ""):
        with pytest.raises(ValueError, match=r"Expected a Hub repo id OWNER/NAME.*Fix"):
            push_to_hub(distill_run, bad)
    with pytest.raises(FileNotFoundError, match=r"report.json"):
        push_to_hub(tmp_path, REPO)
    assert hub.requests == []

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(PermissionError, match=r"found none.*Fix: `hf auth login`, or export HF_TOKEN"):
        push_to_hub(distill_run, REPO)
    assert hub.requests == []

    wrong = "hf_wrongTokenWrongTokenWrongToken"
    with pytest.raises(PermissionError, match=r"Expected write access to me/tiny-student .* HTTP 401"):
        push_to_hub(distill_run, REPO, token=wrong)
    assert REPO not in hub.repos
    # The refused create, then the repo lookup create_repo(exist_ok=True) makes after a 401, refused too; no
    # preupload, LFS or commit request.
    refused = [(r.method, r.path, r.authorization) for r in api_requests(hub)]
    assert refused == [("POST", "/api/repos/create", f"Bearer {wrong}"),
                       ("GET", f"/api/models/{REPO}", f"Bearer {wrong}")]

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # set after import: huggingface_hub would not see it
    with pytest.raises(ValueError, match=r"Expected HF_ENDPOINT to be set before huggingface_hub is imported"):
        push_to_hub(trec6_run, REPO, token=TOKEN)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE"):
        push_to_hub(trec6_run, REPO, token=TOKEN)
    assert [(r.method, r.path, r.authorization) for r in api_requests(hub)] == refused  # nothing sent since


def test_push_from_training_args(distill_run, hub, tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", hub_model_id=REPO, hub_token=TOKEN,
                             hub_private_repo=True)
    assert push_from_training_args(distill_run, args) == f"{hub.endpoint}/{REPO}"
    assert hub.repos[REPO].private and "README.md" in hub.files(REPO)
    with pytest.raises(ValueError, match="Expected --hub_model_id"):
        push_from_training_args(distill_run, TrainingArguments(output_dir=str(tmp_path), report_to="none"))


def test_push_cli(distill_run, hub, tmp_path, capsys):
    from nlp_reuse.commands import push  # scripts/push.py is a thin shim over it
    assert all(f.metadata.get("help") for f in push.PushArguments.__dataclass_fields__.values())

    push.main(["--model_dir", str(distill_run), "--dry_run", str(tmp_path / "dry")])
    out = capsys.readouterr().out
    assert "Dry run, nothing uploaded" in out and "model.safetensors" in out and "onnx_int8/model_quantized" in out
    assert hub.requests == []
    assert 'model="path/to/this/folder"' in (tmp_path / "dry" / "README.md").read_text()

    url = push.main(["--model_dir", str(distill_run), "--repo_id", "me/cli-model", "--commit_message", "from cli",
                     "--private", "true"])
    assert f"Pushed to {url}" in capsys.readouterr().out
    assert hub.commits("me/cli-model")[-1].summary == "from cli" and hub.repos["me/cli-model"].private

    push.main(["--model_dir", str(distill_run), "--repo_id", "me/cli-model", "--delete_patterns", "onnx/*",
               "onnx_int8/*"])
    assert not any(p.startswith("onnx") for p in hub.commits("me/cli-model")[-1].deleted)  # re-uploaded, kept

    with pytest.raises(ValueError, match="Expected --repo_id"):
        push.main(["--model_dir", str(distill_run)])
    with pytest.raises(ValueError, match="OWNER/NAME"):
        push.main(["--model_dir", str(distill_run), "--repo_id", "bad"])


def test_push_script_in_a_fresh_process_reads_endpoint_and_token_from_the_environment(distill_run, hub):
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0"}
    env.pop("TRANSFORMERS_OFFLINE", None)
    script = Path(__file__).parents[1] / "scripts" / "push.py"
    done = subprocess.run([sys.executable, str(script), "--model_dir", str(distill_run), "--repo_id", "me/from-cli"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"Pushed to {hub.endpoint}/me/from-cli" in done.stdout
    assert f"Uploading {len(DELIVERABLES)} files to {hub.endpoint}/me/from-cli" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert set(hub.files("me/from-cli")) == DELIVERABLES | {".gitattributes"}


def test_standin_binds_loopback_and_bounds_requests():
    with HubStandIn(TOKEN, max_body_bytes=64) as server:
        assert server.endpoint.startswith("http://127.0.0.1:")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        json_body = {"Content-Type": "application/json"}
        assert http_status("POST", f"{server.endpoint}/api/repos/create", b"x" * 65, auth) == 413
        assert http_status("POST", f"{server.endpoint}/api/repos/create", b'{"name": "a"}', json_body) == 401
        assert http_status("GET", f"{server.endpoint}/api/unknown", headers=auth) == 404
        assert http_status("GET", f"{server.endpoint}/api/models/me/a") == 401  # only the registry is public
        assert http_status("GET", f"{server.endpoint}{AGENT_REGISTRY}") == 200
        endpoint = server.endpoint
    with pytest.raises(ConnectionError):
        http_status("GET", f"{endpoint}/api/unknown")


def test_base_model_of_a_relative_local_teacher_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    from nlp_reuse.hub import resolve_base_model

    teacher = tmp_path / "runs" / "teacher"
    teacher.mkdir(parents=True)
    (teacher / "report.json").write_text(json.dumps({"model": {"name_or_path": "builtin:minilm"}}))
    monkeypatch.chdir(tmp_path)
    assert resolve_base_model("runs/teacher") == "sentence-transformers/all-MiniLM-L6-v2"
    monkeypatch.chdir(tmp_path.parent)  # elsewhere the relative path means something else; local_path does not
    assert resolve_base_model(str(teacher.resolve())) == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_token_in_a_shipped_file_leaves_no_upload_folder_behind(distill_run, tmp_path):
    """The token check runs on the staged folder: a refused upload leaves no folder (and no copy of the token)."""
    run = tmp_path / "run"
    shutil.copytree(distill_run, run)
    config = json.loads((run / "student" / "config.json").read_text())
    (run / "student" / "config.json").write_text(json.dumps({**config, "note": f"pushed with {TOKEN}"}))
    with pytest.raises(NlpReuseError, match=r"A Hub token is inside config.json; nothing was uploaded"):
        prepare_upload_folder(run, tmp_path / "upload", repo_id=REPO, token=TOKEN)
    assert not (tmp_path / "upload").exists() and not list(tmp_path.glob(".upload*"))
    outside_the_run = [p for p in tmp_path.rglob("*") if p.is_file() and run not in p.parents]
    assert [p for p in outside_the_run if TOKEN.encode() in p.read_bytes()] == []
