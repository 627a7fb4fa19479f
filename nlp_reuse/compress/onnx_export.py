"""ONNX export (Optimum), ONNX Runtime graph optimization, and an onnxruntime classifier wrapper.

An ONNX folder written here holds `model.onnx`, `config.json` (with the label names), the tokenizer files and a
`compression.json`; Optimum's `ORTModelForSequenceClassification.from_pretrained(folder)` and a plain
`onnxruntime.InferenceSession(folder / "model.onnx")` both load it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlp_reuse.compress.artifacts import (
    ONNX_FILE_NAME,
    create_ort_session,
    find_onnx_file,
    format_error,
    load_tokenizer,
    prepare_output_dir,
    read_compression_info,
    write_compression_info,
)

logger = logging.getLogger(__name__)

OPTIMIZATION_LEVELS = ("O1", "O2", "O3")


def export_onnx(
    model: torch.nn.Module,
    tokenizer,
    output_dir: str | Path,
    *,
    overwrite: bool = False,
    opset: int | None = None,
    compression: dict[str, Any] | None = None,
) -> Path:
    """Export an in-memory sequence-classification model to `output_dir/model.onnx` with Optimum.

    Exporting from memory (`onnx_export_from_model`) rather than from a folder lets pruned and low-rank models,
    which a plain `from_pretrained` cannot rebuild, go through the same path; the graph captures their shapes.
    `compression` is recorded in the folder's compression.json.
    """
    from optimum.exporters.onnx import onnx_export_from_model

    folder = prepare_output_dir(output_dir, overwrite)
    model = model.eval().to("cpu")
    # Validation is done by the caller on real texts (check_onnx_parity), not on Optimum's random dummy inputs.
    onnx_export_from_model(model, folder, task="text-classification", opset=opset, do_validation=False,
                           preprocessors=[tokenizer])
    tokenizer.save_pretrained(folder)
    write_compression_info(folder, {**(compression or {}), "format": "onnx", "precision": "fp32"})
    return folder


def optimize_onnx(onnx_dir: str | Path, output_dir: str | Path, level: str, *, overwrite: bool = False) -> Path:
    """Apply ONNX Runtime graph optimization `level` (O1 basic, O2 + BERT fusions, O3 + fast GELU) for CPU.

    The result keeps the file name model.onnx so the folder loads like any other ONNX folder. Writing to the
    same folder as the input is allowed (the file is replaced in place).
    """
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    if level not in OPTIMIZATION_LEVELS:
        raise ValueError(format_error("Unknown ONNX Runtime optimization level.", f"one of {OPTIMIZATION_LEVELS}",
                                      repr(level), "pass --optimize O1, O2 or O3 (O4 is fp16 for GPU only)"))
    source = Path(onnx_dir)
    onnx_path = find_onnx_file(source)
    info = read_compression_info(source)
    target = Path(output_dir)
    if target.resolve() != source.resolve():
        prepare_output_dir(target, overwrite)
    optimizer = ORTOptimizer.from_pretrained(source, file_names=[onnx_path.name])
    config = AutoOptimizationConfig.with_optimization_level(level, for_gpu=False)
    # Pruned models have a different head count per layer; ORT's fusion reads heads from the graph's Reshape
    # nodes when they disagree with the config, and the caller checks parity on real inputs afterwards.
    optimizer.optimize(save_dir=target, optimization_config=config, file_suffix="")
    write_compression_info(target, {**info, "optimization": level})
    return target


class OnnxClassifier:
    """Text in, logits out, over a plain onnxruntime session (the benchmark's ONNX predictor)."""

    def __init__(self, onnx_dir: str | Path, num_threads: int | None = None, max_length: int = 128):
        self.folder = Path(onnx_dir)
        self.onnx_path = find_onnx_file(self.folder)
        if not (self.folder / "config.json").is_file():
            raise FileNotFoundError(format_error(
                f"{self.folder} has no config.json.", "config.json with id2label next to model.onnx",
                "model.onnx without config", "re-export the folder with scripts/export.py --overwrite",
            ))
        from transformers import AutoConfig

        self.config = AutoConfig.from_pretrained(self.folder, local_files_only=True)
        self.tokenizer = load_tokenizer(self.folder)
        self.session = create_ort_session(self.onnx_path, num_threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.max_length = max_length

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        return {name: enc[name].astype(np.int64) for name in self.input_names}

    def logits(self, texts: list[str]) -> np.ndarray:
        """(batch, num_labels) float32 logits."""
        return self.session.run(["logits"], self.encode(texts))[0]

    __call__ = logits


def torch_logits(model: torch.nn.Module, tokenizer, texts: list[str], max_length: int = 128,
                 batch_size: int = 32) -> np.ndarray:
    """(len(texts), num_labels) logits of a PyTorch classifier, computed in batches without gradients."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out)


def onnx_logits(classifier: OnnxClassifier, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """(len(texts), num_labels) logits of an ONNX classifier, in batches."""
    return np.concatenate([classifier.logits(texts[s:s + batch_size]) for s in range(0, len(texts), batch_size)])


def check_onnx_parity(model: torch.nn.Module, tokenizer, onnx_dir: str | Path, texts: list[str],
                      max_length: int = 128) -> float:
    """Max absolute logit difference between the PyTorch model and its ONNX export on `texts`."""
    reference = torch_logits(model, tokenizer, texts, max_length)
    exported = onnx_logits(OnnxClassifier(onnx_dir, max_length=max_length), texts)
    return float(np.abs(reference - exported).max())


__all__ = [
    "ONNX_FILE_NAME",
    "OPTIMIZATION_LEVELS",
    "OnnxClassifier",
    "check_onnx_parity",
    "export_onnx",
    "onnx_logits",
    "optimize_onnx",
    "torch_logits",
]
