"""ONNX export (`torch.onnx`), ONNX Runtime graph optimization, and an onnxruntime classifier wrapper.

An ONNX folder written here holds `model.onnx`, `config.json` (with the label names), the tokenizer files and a
`compression.json`: the layout Optimum's `ORTModelForSequenceClassification.from_pretrained(folder)` reads, and that
a plain `onnxruntime.InferenceSession(folder / "model.onnx")` loads. Inputs are named as Optimum names them
(`input_ids`, `attention_mask`, `token_type_ids` when the model takes it), each with the dynamic axes
`batch_size` and `sequence_length`; the output is `logits`.

The graph comes from `torch.onnx.export` (the torch.export-based exporter), not from optimum-onnx, whose latest
release pins transformers<4.58. Exporters are looked up in `EXPORTERS`: one whose signature matches
`_export_with_torch` (such as optimum-onnx's `onnx_export_from_model` once it supports transformers 5) can be added
there and picked with `exporter=`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from nlp_reuse.compress.artifacts import (
    ONNX_FILE_NAME,
    copy_side_files,
    create_ort_session,
    find_onnx_file,
    format_error,
    load_tokenizer,
    read_compression_info,
    write_compression_info,
)
from nlp_reuse.errors import ModelError
from nlp_reuse.files import prepare_output_dir
from nlp_reuse.predict import predict_logits

logger = logging.getLogger(__name__)

OPTIMIZATION_LEVELS = ("O1", "O2", "O3")
ONNX_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_OPSET = 18
# Sample texts that fix the traced graph's dtypes; the axes stay dynamic (batch 2 and several tokens, since
# torch.export specializes sizes 0 and 1).
_SAMPLE_TEXTS = ["a short sentence to trace the graph", "another one"]


def onnx_input_names(model: torch.nn.Module, tokenizer) -> list[str]:
    """The inputs the exported graph takes: the tokenizer's model inputs that the model's forward accepts."""
    accepted = inspect.signature(model.forward).parameters
    names = [n for n in ONNX_INPUT_NAMES if n in tokenizer.model_input_names and n in accepted]
    if "input_ids" not in names:
        raise ModelError(format_error(
            "The model cannot be exported to ONNX as a text classifier.",
            f"a forward() and tokenizer that take input_ids (and optionally {ONNX_INPUT_NAMES[1:]})",
            f"tokenizer inputs {list(tokenizer.model_input_names)}, forward arguments {list(accepted)}",
            "export a sequence-classification model with its own tokenizer",
        ))
    return names


def _export_with_torch(model: torch.nn.Module, inputs: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    """`torch.onnx.export` (torch.export-based) with dynamic batch and sequence axes, one self-contained file."""
    max_len = getattr(model.config, "max_position_embeddings", None)  # None: no position table to bound
    batch = torch.export.Dim("batch_size")
    sequence = torch.export.Dim("sequence_length", max=max_len) if max_len else torch.export.Dim("sequence_length")
    with warnings.catch_warnings():
        # torch's exporter warns about its own internals (dynamic-shape renaming, deprecated helpers it calls).
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (), kwargs=inputs, input_names=list(inputs), output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in inputs}, opset_version=opset,
            dynamo=True, external_data=False, verbose=False, report=False,
        )
    program.save(str(path), external_data=False)
    _check_dynamic_axes(path)


def _check_dynamic_axes(path: Path) -> None:
    """torch.export may fix an axis to the sample's size without an error (a decomposition that loops over time
    steps does): the graph would then refuse every other text length at run time. Refuse it here instead."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    fixed = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input
             if any(d.dim_value for d in i.type.tensor_type.shape.dim)}
    if fixed:
        raise ModelError(format_error(
            "The exported ONNX graph has fixed input sizes: it would only accept texts of the sample's length.",
            "dynamic batch_size and sequence_length axes on every input", f"{fixed}",
            "the model has an operator torch.export specializes (e.g. nn.LSTM: emit it with "
            "torch.onnx.ops.symbolic as nlp_reuse.families.bilstm does); report it with the model class",
        ))


@contextlib.contextmanager
def _eager_attention(model: torch.nn.Module):
    """Trace the eager attention path: a plainer graph (no SDPA masking guards) that ran int8 batch-1 inference
    about 10% faster on CPU than the SDPA trace, measured side by side on the MiniLM-L3 student."""
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    if previous in (None, "eager") or not isinstance(model, PreTrainedModel):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


@contextlib.contextmanager
def _quiet_torch_onnx_logs():
    """torch's exporter logs a warning per torchvision operator it cannot register; none of them is ours."""
    torch_logger = logging.getLogger("torch.onnx")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        torch_logger.setLevel(level)


# Exporter name -> function(model, sample inputs, model.onnx path, opset).
EXPORTERS: dict[str, Callable[[torch.nn.Module, dict[str, torch.Tensor], Path, int], None]] = {
    "torch": _export_with_torch,
}


def export_onnx(
    model: torch.nn.Module,
    tokenizer,
    output_dir: str | Path,
    *,
    overwrite: bool = False,
    opset: int | None = None,
    compression: dict[str, Any] | None = None,
    exporter: str = "torch",
) -> Path:
    """Export an in-memory sequence-classification model to `output_dir/model.onnx`, beside its config and tokenizer.

    Exporting from memory rather than from a folder lets pruned and low-rank models, which a plain
    `from_pretrained` cannot rebuild, go through the same path; the graph captures their shapes. The caller
    checks parity on real texts (`check_onnx_parity`). `compression` is recorded in the folder's compression.json.
    """
    if exporter not in EXPORTERS:
        raise ModelError(format_error("Unknown ONNX exporter.", f"one of {sorted(EXPORTERS)}", repr(exporter),
                                      "leave exporter at its default ('torch')"))
    folder = prepare_output_dir(output_dir, overwrite=overwrite, replace=True, flag="--overwrite")
    model = model.eval().to("cpu")
    names = onnx_input_names(model, tokenizer)
    encoded = tokenizer(_SAMPLE_TEXTS, padding=True, return_tensors="pt")
    inputs = {name: encoded[name] for name in names}
    with torch.inference_mode(False), torch.no_grad(), _eager_attention(model), _quiet_torch_onnx_logs():
        EXPORTERS[exporter](model, inputs, folder / ONNX_FILE_NAME, opset or DEFAULT_OPSET)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_compression_info(folder, {**(compression or {}), "format": "onnx", "precision": "fp32",
                                    "exporter": exporter})
    return folder


def optimize_onnx(onnx_dir: str | Path, output_dir: str | Path, level: str, *, overwrite: bool = False) -> Path:
    """Apply ONNX Runtime graph optimization `level` for CPU, as Optimum's O1-O3 define them.

    O1: ONNX Runtime's basic graph optimizations (constant folding, redundant node removal). O2: extended
    optimizations plus the transformer fusions of `onnxruntime.transformers` (SkipLayerNormalization, Gelu,
    attention where the pattern is recognised). O3: O2 with the fast GELU approximation. The result keeps the file
    name model.onnx so the folder loads like any other ONNX folder; writing to the input folder replaces it.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    if level not in OPTIMIZATION_LEVELS:
        raise ModelError(format_error("Unknown ONNX Runtime optimization level.", f"one of {OPTIMIZATION_LEVELS}",
                                      repr(level), "pass --optimize O1, O2 or O3 (O4 is fp16 for GPU only)"))
    source = Path(onnx_dir)
    onnx_path = find_onnx_file(source)
    info = read_compression_info(source)
    target = Path(output_dir)
    if target.resolve() != source.resolve():
        prepare_output_dir(target, overwrite=overwrite, replace=True, flag="--overwrite")
        copy_side_files(source, target)
    options = FusionOptions("bert")
    options.enable_gelu_approximation = level == "O3"
    # num_heads=0, hidden_size=0: read from the graph, so pruned models (fewer heads per layer) fuse correctly.
    optimized = optimize_model(str(onnx_path), model_type="bert", num_heads=0, hidden_size=0,
                               opt_level=1 if level == "O1" else 2, optimization_options=options, use_gpu=False,
                               only_onnxruntime=level == "O1")
    optimized.save_model_to_file(str(target / ONNX_FILE_NAME))
    write_compression_info(target, {**info, "optimization": level})
    return target


_ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def rust_batch_encoder(tokenizer, max_length: int):
    """A copy of the tokenizer's Rust `tokenizers.Tokenizer` that truncates to `max_length` and pads to the longest
    text, as `tokenizer(texts, padding=True, truncation=True, max_length=...)` does, without its Python wrapper:
    about 70 us less per batch-1 call, most of what a static-embedding student costs. None when the tokenizer has no
    Rust backend or pads on the left (the wrapper is used then)."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or tokenizer.pad_token is None or tokenizer.padding_side != "right":
        return None
    encoder = Tokenizer.from_str(backend.to_str())
    encoder.enable_truncation(max_length=max_length)
    encoder.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token,
                           pad_type_id=tokenizer.pad_token_type_id)
    return encoder


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
        self.batch_encoder = rust_batch_encoder(self.tokenizer, max_length)

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self.batch_encoder is not None:
            encodings = self.batch_encoder.encode_batch(list(texts))
            return {name: np.array([getattr(e, _ENCODING_FIELDS[name]) for e in encodings], dtype=np.int64)
                    for name in self.input_names}
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        return {name: enc[name].astype(np.int64) for name in self.input_names}

    def logits(self, texts: list[str]) -> np.ndarray:
        """(batch, num_labels) float32 logits."""
        return self.session.run(["logits"], self.encode(texts))[0]

    __call__ = logits


def torch_logits(model: torch.nn.Module, tokenizer, texts: list[str], max_length: int = 128,
                 batch_size: int = 32) -> np.ndarray:
    """(len(texts), num_labels) logits of a PyTorch classifier (nlp_reuse.predict, the package's one predictor)."""
    return predict_logits(model, texts, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)


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
    "EXPORTERS",
    "ONNX_FILE_NAME",
    "ONNX_INPUT_NAMES",
    "OPTIMIZATION_LEVELS",
    "OnnxClassifier",
    "check_onnx_parity",
    "export_onnx",
    "onnx_input_names",
    "onnx_logits",
    "optimize_onnx",
    "torch_logits",
]
