"""Self-training: a fine-tuned classifier labels unlabeled texts, and its most confident labels become training data.

`nlp-reuse pseudo-label` writes the kept texts with their predicted labels to a .jsonl/.csv file that `finetune
--extra_train_file` adds to the labelled train split. For domain adaptation the classifier is fine-tuned on the source
domain and the texts come from the target domain; training again on source + pseudo-labelled target texts moves the
model towards the target (one round of self-training; run it again with the new model for another round).

Selection is class-balanced, so no threshold has to be tuned on target labels nobody has: `proportional` (CBST, Zou
et al. 2018, "Unsupervised Domain Adaptation for Semantic Segmentation via Class-Balanced Self-Training") keeps the
same fraction of each predicted class, its most confident texts, so every class keeps its predicted share; `equal`
(as UST, Mukherjee & Awadallah 2020, samples) keeps the same number of each class, so a class the model
over-predicts on the new domain cannot crowd out the others, and a class it under-predicts is not kept rare.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nlp_reuse.errors import ConfigError, DataError, format_error
from nlp_reuse.files import stage_path, write_json
from nlp_reuse.tables import render_table

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".jsonl", ".csv")
BALANCES = ("proportional", "equal")


@dataclass
class PseudoLabelArguments:
    model_name_or_path: str = field(
        metadata={"help": "The fine-tuned classifier that labels the texts (a run folder, e.g. finetune's "
                          "--output_dir, or a Hub id)."})
    unlabeled_file: str = field(
        metadata={"help": "The texts to label: .txt (one per line) or .csv/.tsv/.jsonl/.json/.parquet with "
                          "--text_column. Texts your evaluation reads must not be among them."})
    output_file: str = field(
        metadata={"help": "Where the kept texts go (.jsonl or .csv), with columns --text_column, --label_column "
                          "(the label's name) and confidence: a --extra_train_file for finetune."})
    fraction: float = field(
        default=0.5, metadata={"help": "Keep this fraction of each predicted class, its most confident texts "
                                       "(class-balanced); 1 keeps every text."})
    balance: str = field(
        default="proportional",
        metadata={"help": "proportional: each predicted class keeps --fraction of its texts (its predicted share "
                          "stays) | equal: each class keeps the same number, --fraction of (texts / classes), or all "
                          "of its texts when it has fewer (a bias of the model towards one class is not learnt "
                          "again)."})
    min_confidence: float = field(
        default=0.0, metadata={"help": "Also drop texts whose predicted probability is below this (0 to 1)."})
    text_column: str = field(
        default="text", metadata={"help": "Column of the texts in a table --unlabeled_file, and in the output: use "
                                          "the name your training data uses."})
    label_column: str = field(default="label", metadata={"help": "Column of the predicted labels in the output."})
    max_length: int = field(default=128, metadata={"help": "Tokens per text."})
    batch_size: int = field(default=64, metadata={"help": "Texts per forward pass."})
    overwrite_output_file: bool = field(default=False, metadata={"help": "Replace an existing --output_file."})

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(format_error("--fraction is out of range.", "a fraction in (0, 1]", repr(self.fraction),
                                           "pass e.g. --fraction 0.5 to keep the more confident half of each class"))
        if self.balance not in BALANCES:
            raise ConfigError(format_error("--balance is unknown.", " | ".join(BALANCES), repr(self.balance),
                                           "pass --balance proportional or --balance equal"))
        if not 0.0 <= self.min_confidence < 1.0:
            raise ConfigError(format_error("--min_confidence is out of range.", "a probability in [0, 1)",
                                           repr(self.min_confidence), "pass e.g. --min_confidence 0.9, or leave it 0"))
        out = Path(self.output_file)
        if out.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ConfigError(format_error(f"--output_file {out} has an unsupported suffix.",
                                           f"one of {list(OUTPUT_SUFFIXES)}", repr(out.suffix),
                                           f"name it e.g. {out.with_suffix('.jsonl')}"))
        if out.resolve() == Path(self.unlabeled_file).resolve():
            raise ConfigError(format_error("--output_file is --unlabeled_file.", "a new file for the labelled texts",
                                           str(out), "choose another --output_file; the unlabeled texts are kept"))
        if out.exists() and not self.overwrite_output_file:
            raise ConfigError(format_error(f"--output_file {out} exists.", "a path that does not exist yet",
                                           "an existing file", "choose another path, or pass "
                                                               "--overwrite_output_file true to replace it"))
        if self.batch_size < 1 or self.max_length < 8:
            raise ConfigError(format_error("--batch_size or --max_length is too small.",
                                           "--batch_size >= 1 and --max_length >= 8",
                                           f"--batch_size {self.batch_size} --max_length {self.max_length}",
                                           "pass e.g. --batch_size 64 --max_length 128"))
        if self.text_column == self.label_column or "confidence" in (self.text_column, self.label_column):
            raise ConfigError(format_error("The output columns clash.", "three distinct columns: --text_column, "
                                           "--label_column and confidence",
                                           f"{self.text_column!r}, {self.label_column!r}, 'confidence'",
                                           "rename --text_column or --label_column"))


def select_confident(probabilities: np.ndarray, fraction: float, min_confidence: float = 0.0,
                     balance: str = "proportional") -> np.ndarray:
    """Indices (ascending) of the rows kept from `probabilities` (n, classes): within each predicted class, its most
    confident rows (ties: the earlier row), `floor(fraction * count)` of them (`proportional`) or
    `min(count, floor(fraction * n / classes))` (`equal`); then only those with a probability of at least
    `min_confidence`."""
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    share = np.floor(fraction * len(probabilities) / probabilities.shape[1] + 1e-9)
    kept = []
    for label in range(probabilities.shape[1]):
        rows = np.flatnonzero(predicted == label)
        order = rows[np.argsort(-confidence[rows], kind="stable")]
        count = np.floor(fraction * len(rows) + 1e-9) if balance == "proportional" else min(len(rows), share)
        kept.append(order[: int(count)])
    kept = np.sort(np.concatenate(kept))
    return kept[confidence[kept] >= min_confidence]


def summarise(probabilities: np.ndarray, kept: np.ndarray, labels: list[str]) -> list[dict]:
    """Per label: texts predicted, texts kept, and the lowest and mean confidence kept."""
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    rows = []
    for i, label in enumerate(labels):
        mine = kept[predicted[kept] == i]
        rows.append({"label": label, "predicted": int((predicted == i).sum()), "kept": len(mine),
                     "min_confidence_kept": round(float(confidence[mine].min()), 4) if len(mine) else None,
                     "mean_confidence_kept": round(float(confidence[mine].mean()), 4) if len(mine) else None})
    return rows


def report_path(output_file: str | Path) -> Path:
    """Where the report of a pseudo-labelled file goes: beside it, OUTPUT.report.json."""
    output_file = Path(output_file)
    return output_file.with_name(output_file.name + ".report.json")


def pseudo_label_record(output_file: str | Path) -> dict | None:
    """How a pseudo-labelled file was made (labeller, texts, selection), from its report; None for a file that
    `nlp-reuse pseudo-label` did not write, or whose report is gone or unreadable."""
    try:
        report = json.loads(report_path(output_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or "per_label" not in report:
        return None
    return {key: report.get(key) for key in ("model_name_or_path", "unlabeled_file", "fraction", "balance",
                                             "num_texts", "num_kept")}


def _check_single_text_model(name_or_path: str) -> None:
    """A classifier trained on text pairs cannot label single texts: refuse it (its run_args.json says so)."""
    from nlp_reuse.modeling import resolve_model_path

    run_args = Path(resolve_model_path(name_or_path)) / "run_args.json"
    try:
        pair = json.loads(run_args.read_text(encoding="utf-8")).get("data", {}).get("text_pair_column")
    except (OSError, ValueError, AttributeError):
        return  # a Hub model or another tool's folder: nothing recorded to check
    if pair:
        raise ConfigError(format_error(
            f"{name_or_path} classifies text pairs (--text_pair_column {pair}), but --unlabeled_file holds single "
            "texts.", "a classifier of single texts", f"a pair-task model ({run_args})",
            "pseudo-label with a model fine-tuned on single texts",
        ))


def run_pseudo_label(args: PseudoLabelArguments, command: str = "") -> dict:
    """Label `args.unlabeled_file` with `args.model_name_or_path`, keep the confident texts, write them and a report
    (OUTPUT.report.json) beside them; the report."""
    import torch
    from transformers import AutoConfig

    from nlp_reuse.modeling import classifier_labels, fit_max_length, load_teacher, load_tokenizer, resolve_model_path
    from nlp_reuse.predict import predict_logits
    from nlp_reuse.transfer_set import load_unlabeled_texts

    texts = load_unlabeled_texts(args.unlabeled_file, args.text_column)  # before the model: bad input fails fast
    _check_single_text_model(args.model_name_or_path)
    tokenizer = load_tokenizer(args.model_name_or_path)
    model = load_teacher(args.model_name_or_path)
    labels = classifier_labels(model.config)
    max_length = fit_max_length(args.max_length, AutoConfig.from_pretrained(
        resolve_model_path(args.model_name_or_path)), args.model_name_or_path)
    logits = predict_logits(model, texts, tokenizer=tokenizer, batch_size=args.batch_size, max_length=max_length,
                            device="cuda" if torch.cuda.is_available() else "cpu", desc="pseudo-labelling")
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    probabilities = shifted / shifted.sum(1, keepdims=True)
    kept = select_confident(probabilities, args.fraction, args.min_confidence, args.balance)
    per_label = summarise(probabilities, kept, labels)
    if len(kept) == 0:
        raise DataError(format_error(
            f"No text of {args.unlabeled_file} was kept: nothing written.", "at least one confident text",
            f"{len(texts)} texts, the most confident at {probabilities.max():.4f} (--fraction {args.fraction}, "
            f"--min_confidence {args.min_confidence}, --balance {args.balance})",
            "lower --min_confidence, raise --fraction, or label more texts",
        ))
    missing = [row["label"] for row in per_label if row["kept"] == 0]
    if missing:
        logger.warning("No text was kept for the label(s) %s: the pseudo-labelled file teaches only the others, and "
                       "a model trained on it may forget them.", ", ".join(missing))
    out = Path(args.output_file)
    rows = pd.DataFrame({args.text_column: [texts[i] for i in kept],
                         args.label_column: [labels[i] for i in probabilities[kept].argmax(1)],
                         "confidence": probabilities[kept].max(1).round(6)})
    out.parent.mkdir(parents=True, exist_ok=True)
    report_path(out).unlink(missing_ok=True)  # a report never describes another version of the file
    stage = stage_path(out)  # written whole, then renamed: a kill never leaves half a training file
    try:
        if out.suffix.lower() == ".csv":
            rows.to_csv(stage, index=False)
        else:
            rows.to_json(stage, orient="records", lines=True, force_ascii=False)
        stage.replace(out)
    finally:
        stage.unlink(missing_ok=True)
    labeller = Path(args.model_name_or_path)  # a local folder recorded absolute: the report is read from elsewhere
    report = {"model_name_or_path": str(labeller.resolve()) if labeller.is_dir() else args.model_name_or_path,
              "unlabeled_file": str(Path(args.unlabeled_file).resolve()),
              "output_file": str(out), "num_texts": len(texts), "num_kept": int(len(kept)),
              "fraction": args.fraction, "balance": args.balance, "min_confidence": args.min_confidence,
              "max_length": max_length, "per_label": per_label, "command": command}
    write_json(report_path(out), report)
    header = list(per_label[0])
    print(render_table(header, [[str(row[k]) for k in header] for row in per_label]))
    return report
