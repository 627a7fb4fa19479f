"""The texts `nlp-reuse adapt` trains on: unlabeled files, and the *train* split of labelled datasets and files (carved
the way `finetune` carves it, with the split settings recorded for nlp_reuse.leak_check), deduplicated, capped and
split into training and held-out texts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from datasets import Dataset

from nlp_reuse.config import DataArguments
from nlp_reuse.data import load_splits
from nlp_reuse.errors import DataError, format_error
from nlp_reuse.leak_check import split_settings
from nlp_reuse.transfer_set import load_unlabeled_texts

if TYPE_CHECKING:
    from nlp_reuse.adapt import AdaptArguments

# The text sources, in the order their texts are read (and deduplicated: the first occurrence is kept).
TEXT_SOURCES = ("unlabeled_file", "dataset_name", "train_file")


@dataclass
class TextSource:
    """One source of adaptation texts and how many non-empty texts it gave (labelled data: its train split)."""

    flag: str  # unlabeled_file | dataset_name | train_file
    name: str
    texts: int
    path: str | None = None  # a file's resolved path
    split: dict | None = None  # labelled data: the settings its train split was carved with (split_settings)


@dataclass
class AdaptTexts:
    """The texts an adaptation run trains on and the ones it holds out, with where they came from."""

    train: list[str]
    heldout: list[str]
    sources: list[TextSource]
    duplicates_removed: int
    capped_from: int | None = None  # the number of texts before --max_unlabeled_samples, when it applied

    def summary(self) -> dict:
        return {"sources": [dataclasses.asdict(s) for s in self.sources], "duplicates_removed": self.duplicates_removed,
                "capped_from": self.capped_from, "num_train": len(self.train), "num_heldout": len(self.heldout)}


def _labelled_data(args: AdaptArguments, flag: str, name: str) -> DataArguments:
    """The data arguments `finetune` would read a labelled dataset or file with, carving its splits the same way."""
    builtin = flag == "dataset_name" and name.startswith("builtin:")
    return DataArguments(
        dataset_name=name if flag == "dataset_name" else None, train_file=name if flag == "train_file" else None,
        dataset_config=args.dataset_config, text_column="text" if builtin else args.text_column,
        label_column=args.label_column, validation_split_size=args.validation_split_size,
        test_split_size=args.test_split_size, split_seed=args.split_seed,
    )


def _train_texts(data_args: DataArguments) -> list[str]:
    """The texts of the train split of a labelled dataset or file."""
    splits, _ = load_splits(data_args)
    return [text.strip() for text in splits["train"]["text"] if text.strip()]


def collect_texts(args: AdaptArguments) -> AdaptTexts:
    """Read every source, drop duplicates (first occurrence kept), cap at --max_unlabeled_samples and hold out
    --validation_fraction of the texts (all seeded with --split_seed). Raises before any model is loaded."""
    texts: list[str] = []
    sources = []
    for flag in TEXT_SOURCES:
        for name in getattr(args, flag) or []:
            if flag == "unlabeled_file":
                read, split = load_unlabeled_texts(name, args.text_column), None
            else:
                data_args = _labelled_data(args, flag, name)
                read, split = _train_texts(data_args), split_settings(data_args)
            path = None if flag == "dataset_name" else str(Path(name).resolve())
            sources.append(TextSource(flag, name, len(read), path=path, split=split))
            texts += read
    unique = list(dict.fromkeys(texts))
    rng = np.random.default_rng(args.split_seed)
    capped_from = None
    if args.max_unlabeled_samples is not None and len(unique) > args.max_unlabeled_samples:
        capped_from = len(unique)
        keep = np.sort(rng.choice(len(unique), size=args.max_unlabeled_samples, replace=False))
        unique = [unique[i] for i in keep]
    if len(unique) < 2:
        raise DataError(format_error(
            "Too few texts to adapt on.", "at least 2 distinct texts (one to train on, one held out)",
            f"{len(unique)} distinct text(s) from {', '.join(f'--{s.flag} {s.name}' for s in sources)}",
            "add in-domain texts, or another source",
        ))
    n_heldout = min(max(1, round(args.validation_fraction * len(unique))), len(unique) - 1)
    order = rng.permutation(len(unique))
    heldout = set(order[:n_heldout].tolist())
    return AdaptTexts(train=[t for i, t in enumerate(unique) if i not in heldout],
                      heldout=[t for i, t in enumerate(unique) if i in heldout], sources=sources,
                      duplicates_removed=len(texts) - len(dict.fromkeys(texts)), capped_from=capped_from)


def tokenize_texts(texts: list[str], tokenizer, max_length: int) -> Dataset:
    """Token ids of `texts`, truncated, not padded (the collator pads and masks each batch)."""
    return Dataset.from_dict({"text": texts}).map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length,
                                return_special_tokens_mask=True),
        batched=True, remove_columns=["text"], desc="Tokenizing",
    )
