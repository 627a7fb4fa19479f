"""Labelled texts from a local csv/jsonl file, and label-name -> id mapping against a model config.

A stopgap for the export and benchmark scripts until `nlp_reuse.data` provides the project's loader; the scripts
call only `load_labelled_texts` and `encode_labels`, so the swap is one function.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from nlp_reuse.compress.artifacts import format_error

_SUFFIXES = (".csv", ".jsonl", ".json")


def load_labelled_texts(path: str | Path, text_column: str = "text", label_column: str | None = "label",
                        limit: int | None = None, seed: int | None = None) -> tuple[list[str], list]:
    """(texts, labels) from a .csv or .jsonl file; labels are [] when `label_column` is None.

    With `limit`, at most that many rows are kept (a seeded random sample when `seed` is given, else the first).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(format_error("Data file not found.", f"a {'/'.join(_SUFFIXES)} file", str(path),
                                             "check the --*_file path"))
    if path.suffix not in _SUFFIXES:
        raise ValueError(format_error("Unsupported data file type.", f"one of {_SUFFIXES}", path.suffix,
                                      "convert the file to csv or jsonl"))
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(format_error("Data file is empty.", "at least one row", f"0 rows in {path}",
                                      "point at a file with data"))
    columns = [text_column] + ([label_column] if label_column else [])
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ValueError(format_error(f"Column(s) {missing} not in {path}.", f"columns {columns}",
                                      f"columns {sorted(rows[0])}", "pass --text_column / --label_column"))
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit) if seed is not None else rows[:limit]
    texts = [str(r[text_column]) for r in rows]
    labels = [r[label_column] for r in rows] if label_column else []
    return texts, labels


def encode_labels(labels: list, label2id: dict[str, int]) -> list[int]:
    """Map label names (or ids, as int or digit string) to the model's class ids; unknown labels are an error."""
    num_labels = len(label2id)
    ids = []
    for label in labels:
        if isinstance(label, str) and label in label2id:
            ids.append(label2id[label])
        elif isinstance(label, int) or (isinstance(label, str) and label.isdigit()):
            if not 0 <= int(label) < num_labels:
                raise ValueError(format_error("Label id out of range.", f"ids 0..{num_labels - 1}", repr(label),
                                              "check that the data belongs to this model"))
            ids.append(int(label))
        else:
            raise ValueError(format_error("Unknown label.", f"one of {sorted(label2id)}", repr(label),
                                          "use the label names the model was trained with (config.json label2id)"))
    return ids
