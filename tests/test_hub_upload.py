"""Publishing, the upload: the folder a push ships, loading it back, and pushes to a loopback Hub stand-in."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_standin import HubStandIn
from hub_support import (
    AGENT_REGISTRY,
    DELIVERABLES,
    REPO,
    TOKEN,
    api_requests,
    folder_bytes,
    http_status,
)
from huggingface_hub import HfApi, constants

from nlp_reuse.errors import NlpReuseError
from nlp_reuse.hub import (
    default_commit_message,
    describe_folder,
    load_run_report,
    prepare_upload_folder,
    push_from_training_args,
    push_to_hub,
    render_model_card,
)
from nlp_reuse.redact import REDACTED


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
