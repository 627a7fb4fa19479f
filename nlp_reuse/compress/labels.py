"""Lining labels up with a model: label names -> class ids against its label2id, its label names in id order, and
(texts, label names) from the splits of `nlp_reuse.data.load_splits` (which does all data loading and checks).
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

from nlp_reuse.errors import ModelError, format_error


def encode_labels(labels: list, label2id: dict[str, int]) -> list[int]:
    """Map label names (or ids, as int or digit string) to the model's class ids; unknown labels are an error."""
    num_labels = len(label2id)
    ids = []
    for label in labels:
        if isinstance(label, str) and label in label2id:
            ids.append(label2id[label])
        elif isinstance(label, numbers.Integral) or (isinstance(label, str) and label.isdigit()):
            if not 0 <= int(label) < num_labels:
                raise ModelError(format_error("Label id out of range.", f"ids 0..{num_labels - 1}", repr(label),
                                              "check that the data belongs to this model"))
            ids.append(int(label))
        else:
            raise ModelError(format_error("Unknown label.", f"one of {sorted(label2id)}", repr(label),
                                          "use the label names the model was trained with (config.json label2id)"))
    return ids


def model_label_names(folder: str | Path) -> list[str]:
    """Label names of a model or ONNX folder in class-id order, read from its config.json."""
    config_path = Path(folder) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(format_error("No config.json to read the labels from.", f"{config_path}",
                                             "no such file", "point at a model folder or an exported ONNX folder"))
    id2label = json.loads(config_path.read_text()).get("id2label") or {}
    return [str(id2label[key]) for key in sorted(id2label, key=int)]


def split_texts(splits, split: str) -> tuple[list[str], list[str]]:
    """(texts, label names) of one split of `nlp_reuse.data.load_splits` output; sentence pairs are refused."""
    data = splits[split]
    if "text_pair" in data.column_names:
        raise ModelError(format_error("Sentence-pair data is not supported by export/benchmark.",
                                      "single-text classification data", "a text_pair column",
                                      "drop --text_pair_column"))
    names = data.features["label"].names
    return list(data["text"]), [names[i] for i in data["label"]]
