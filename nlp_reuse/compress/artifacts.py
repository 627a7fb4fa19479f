"""Model-folder and ONNX-folder checks, loading and output-folder protection shared by the compression steps.

Every loader here fails before heavy work with a message that says what was expected, what was found, and how to
fix it. Folders the compression code writes carry a small `compression.json` that records what was applied, so the
benchmark can label a folder without being told.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.files import LOW_RANK_INFO_NAME, listing, weight_files

# The package's one tokenizer loader, re-exported for the compression steps (nlp_reuse.compress.load_tokenizer).
from nlp_reuse.modeling import check_tokenizer_files, check_weight_files, load_tokenizer

logger = logging.getLogger(__name__)

COMPRESSION_INFO_NAME = "compression.json"
ONNX_FILE_NAME = "model.onnx"


def check_model_dir(model_dir: str | Path) -> Path:
    """Validate that `model_dir` is a sequence-classification model folder with a tokenizer; return it as a Path.

    Accepts standard HF folders (config.json + weights + tokenizer) and the low-rank folders written by
    `nlp_reuse.compress.low_rank.save_low_rank_model`.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FileNotFoundError(format_error(
            "Model folder not found.", "a folder with config.json, model weights and tokenizer files",
            f"no folder at {folder}", "pass the path of a model folder (e.g. RUN/student) as --model_dir",
        ))
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(format_error(
            f"{folder} is not a Hugging Face model folder.", "config.json in the folder",
            listing(folder), "save the model with model.save_pretrained(folder)",
        ))
    config = json.loads(config_path.read_text())
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelError(format_error(
            f"{folder} is not a sequence-classification model.",
            "config.json architectures like ['BertForSequenceClassification']",
            f"architectures={architectures}",
            "fine-tune it first (scripts/finetune.py), or load it with AutoModelForSequenceClassification."
            "from_pretrained(path, num_labels=N) and save_pretrained() the result",
        ))
    if not [w for w in weight_files(folder) if w.suffix != ".onnx" and not w.name.startswith("openvino_")]:
        raise FileNotFoundError(format_error(
            f"{folder} has no model weights.", "model.safetensors (or pytorch_model.bin)",
            listing(folder), "save the model with model.save_pretrained(folder)",
        ))
    check_weight_files(folder)
    check_tokenizer_files(folder)
    labels = config.get("id2label") or {}
    if labels and all(str(v).startswith("LABEL_") for v in labels.values()):
        logger.warning("%s has generic label names %s; exported artefacts will carry them as they are.",
                       folder, sorted(labels.values()))
    return folder


def load_classifier(model_dir: str | Path):
    """(model, tokenizer) from a checked model folder (truncated weight files included); low-rank and head-pruned
    folders are rebuilt with their thin layers and smaller attention.

    The model is returned in eval mode on CPU.
    """
    from transformers import AutoModelForSequenceClassification

    folder = check_model_dir(model_dir)
    tokenizer = load_tokenizer(folder)
    if (folder / LOW_RANK_INFO_NAME).is_file():
        from nlp_reuse.compress.low_rank import load_low_rank_model

        model = load_low_rank_model(folder)
    elif json.loads((folder / "config.json").read_text()).get("pruned_heads"):
        from nlp_reuse.compress.prune import load_pruned_model

        model = load_pruned_model(folder)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer


def find_onnx_file(folder: str | Path) -> Path:
    """The single .onnx file of an ONNX folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(format_error(
            "ONNX folder not found.", "a folder with model.onnx, config.json and tokenizer files",
            f"no folder at {folder}", "export one with scripts/export.py",
        ))
    files = sorted(folder.glob("*.onnx"))
    if len(files) != 1:
        raise FileNotFoundError(format_error(
            f"{folder} is not an ONNX model folder with one model.", "exactly one .onnx file",
            listing(folder), "point at the folder written by scripts/export.py (e.g. RUN/onnx_int8)",
        ))
    return files[0]


def create_ort_session(onnx_path: str | Path, num_threads: int | None = None):
    """onnxruntime CPU InferenceSession with a fixed thread count; a file that fails to load gets a clear error."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises pybind-specific types (InvalidProtobuf, Fail, ...)
        raise ModelError(format_error(
            f"onnxruntime could not load {onnx_path}.", "a valid ONNX model file",
            f"{type(err).__name__}: {str(err)[:300]}", "re-export the folder with scripts/export.py --overwrite",
        )) from err


def copy_side_files(source: Path, target: Path) -> None:
    """Copy an ONNX folder's config, tokenizer and compression.json (every file but the graph and its external data)
    to `target`, so a derived graph (optimized, quantized) loads like its source."""
    for item in Path(source).iterdir():
        if item.is_file() and item.suffix not in (".onnx", ".data"):
            shutil.copyfile(item, Path(target) / item.name)


def write_compression_info(folder: Path, info: dict[str, Any]) -> None:
    (folder / COMPRESSION_INFO_NAME).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def read_compression_info(folder: str | Path) -> dict[str, Any]:
    """The compression.json of a folder, or {} for folders not written by nlp_reuse.compress."""
    path = Path(folder) / COMPRESSION_INFO_NAME
    return json.loads(path.read_text()) if path.is_file() else {}
