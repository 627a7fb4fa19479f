"""Shared fixtures: a tokenizer trained here, tiny random BERTs and small labelled files. No network, no Hub."""

import os
import tempfile

# Set before transformers/datasets/huggingface_hub are imported anywhere in the test session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_UPDATE_DOWNLOAD_COUNTS"] = "0"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="nlp_reuse_hf_home_")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("WANDB_DISABLED", "true")

import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hub_standin import HubStandIn  # noqa: E402
from hub_support import REPO, TEACHER_COMMAND, TOKEN, TREC6  # noqa: E402
from huggingface_hub import constants  # noqa: E402
from huggingface_hub.utils import close_session  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
_WORDS = {
    "negative": ["bad", "awful", "boring", "terrible", "worst", "dull"],
    "neutral": ["okay", "fine", "average", "plain", "normal", "usual"],
    "positive": ["good", "great", "superb", "lovely", "best", "brilliant"],
}
_FILLER = ["the", "movie", "was", "really", "quite", "a", "plot", "and", "acting", "story", "film", "it"]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; two threads fighting over two shared cores are many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_examples(n: int, seed: int) -> list[dict]:
    """Short synthetic sentences whose label is carried by one sentiment word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        words = rng.sample(_FILLER, 5) + [rng.choice(_WORDS[label])]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A WordPiece tokenizer trained on the synthetic corpus, saved as a BERT fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizerFast

    corpus = [r["text"] for r in make_examples(300, seed=0)] + ["hello world question answer spam ham"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tok.train_from_iterator(corpus, trainer)
    out = tmp_path_factory.mktemp("tokenizer")
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (out / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab))
    BertTokenizerFast(vocab=dict(vocab), do_lower_case=True).save_pretrained(out)
    return out


def build_tiny_bert(tokenizer_dir: Path, out: Path, num_layers: int = 4, hidden: int = 32, heads: int = 4,
                    labels: list[str] | None = LABELS, seed: int = 0, **config_kwargs) -> Path:
    """Save a random BertForSequenceClassification (with its tokenizer) to `out`."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    kwargs = {}
    if labels is not None:
        kwargs = {"id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=num_layers,
        num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=64, **kwargs, **config_kwargs,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_teacher_dir(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """A 4-layer, hidden-32 BERT classifier with the three synthetic labels."""
    return build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """train/validation/test jsonl files with `text` and string `label` columns."""
    out = tmp_path_factory.mktemp("data")
    write_jsonl(out / "train.jsonl", make_examples(48, seed=1))
    write_jsonl(out / "validation.jsonl", make_examples(12, seed=2))
    write_jsonl(out / "test.jsonl", make_examples(12, seed=3))
    return out


# ------------------------------------------------------------------- publishing (test_hub_card, test_hub_upload)


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


# --------------------------------------------------------------- compression (test_compress, test_compress_shrink)


@pytest.fixture(scope="module")
def trained_dir(tiny_tokenizer_dir, tmp_path_factory):
    """A 2-layer hidden-32 classifier trained to ~100% on the synthetic task, so accuracy drops are visible."""
    from compress_support import rows
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("trained"), num_layers=2, hidden=32, heads=4)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts, labels = rows(96, seed=1)
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
    from nlp_reuse.compress.artifacts import load_classifier
    from nlp_reuse.compress.onnx_export import export_onnx

    model, tokenizer = load_classifier(trained_dir)
    return export_onnx(model, tokenizer, tmp_path_factory.mktemp("exports") / "onnx")


@pytest.fixture(scope="module")
def wide_dir(tiny_tokenizer_dir, tmp_path_factory):
    """Hidden 128: big enough that int8 weights visibly shrink the file (hidden 32 is mostly graph overhead)."""
    return build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("wide"), num_layers=2, hidden=128, heads=4)


@pytest.fixture(scope="session")
def nncf_reference_kernels():
    """NNCF's pure-torch quantization kernels instead of its C++ CPU extension, which compiles for ~40 s on a fresh
    machine (NNCF itself falls back to these same functions where no compiler is present)."""
    pytest.importorskip("nncf", reason="the openvino extra (NNCF) is installed by `make install`")
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    # A private attribute: if NNCF renames it, say so here instead of silently compiling again.
    assert hasattr(QuantizedFunctionsCPU, "_loaded_namespace"), "NNCF changed its extension loader"
    QuantizedFunctionsCPU._loaded_namespace = ReferenceQuantizedFunctions
