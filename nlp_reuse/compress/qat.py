"""Quantization-aware distillation through NNCF: fake-quantized weights and activations while the student learns
from the teacher, then a static int8 ONNX graph (QuantizeLinear/DequantizeLinear pairs) that ONNX Runtime runs with
integer kernels and OpenVINO reads as int8.

`prepare_qat` inserts NNCF's quantizers (8-bit, per-channel symmetric weights, per-tensor activations, the
`TRANSFORMER` model type that leaves the attention-mask arithmetic, softmax and LayerNorm inputs in float) with
ranges initialised on calibration texts; training then moves both the weights and the quantizer scales
(`recover.distill_recover`). `export_qat_onnx` writes the trained model as a QDQ graph whose weights are stored as
int8 initializers, so the file is int8-sized and the integer arithmetic ONNX Runtime runs is the one that was trained.

NNCF is an optional dependency (`pip install 'nlp_reuse[openvino]'`); every entry point checks for it first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlp_reuse.compress.artifacts import ONNX_FILE_NAME, write_compression_info
from nlp_reuse.compress.onnx_export import _check_dynamic_axes, onnx_input_names
from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.files import prepare_output_dir

logger = logging.getLogger(__name__)

QAT_OPSET = 17
INSTALL_HINT = "pip install 'nlp_reuse[openvino]' (NNCF and OpenVINO)"


def require_nncf():
    """The `nncf` module, or a ModelError that says how to install it."""
    os.environ.setdefault("NNCF_CI", "1")  # no telemetry prompts or sends from library code
    try:
        import nncf
    except ImportError as err:
        raise ModelError(format_error(
            "Quantization-aware training needs NNCF.", "the nncf package", f"ImportError: {err}", INSTALL_HINT,
        )) from err
    return nncf


def _calibration_batches(tokenizer, texts: list[str], input_names: list[str], max_length: int) -> list[dict]:
    """One unpadded text per batch, as the ONNX Runtime static calibration does: padding never enters a range."""
    batches = []
    for text in texts:
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        batches.append({name: encoded[name] for name in input_names})
    return batches


def is_qat_model(model: torch.nn.Module) -> bool:
    """True when `model` carries NNCF quantizers (was prepared by `prepare_qat`)."""
    return any(type(m).__name__.endswith("Quantizer") and hasattr(m, "set_export_mode") for m in model.modules())


def _advanced(nncf, isa: str | None):
    """Without VNNI (AVX2, AVX-512 without VNNI), x86 int8 kernels sum pairs of u8 x s8 products in 16 bits, which
    saturates with full-range 8-bit weights: NNCF's overflow fix trains 7-bit weights there, so the int8 model the
    CPU runs computes what training saw."""
    from nlp_reuse.compress.quantize import detect_cpu_isa

    fix = nncf.OverflowFix.ENABLE if (isa or detect_cpu_isa()) in ("avx2", "avx512") else nncf.OverflowFix.DISABLE
    return nncf.AdvancedQuantizationParameters(overflow_fix=fix)


def prepare_qat(model: torch.nn.Module, tokenizer, calibration_texts: list[str], *,
                max_length: int = 128, isa: str | None = None) -> torch.nn.Module:
    """`model` with NNCF fake quantizers inserted and their ranges calibrated on `calibration_texts`.

    The model switches to eager attention first (the QDQ export traces it) and is returned in train-ready form: its
    parameters and the quantizer scales are trainable. The argument model is modified in place as NNCF does.
    """
    nncf = require_nncf()
    if not calibration_texts:
        raise ModelError(format_error("QAT needs calibration texts to initialise the quantizer ranges.",
                                      "a non-empty list of training texts", "an empty list",
                                      "pass --train_file (and --calibration_samples > 0)"))
    if is_qat_model(model):
        raise ModelError(format_error("The model already carries NNCF quantizers.", "a float model",
                                      type(model).__name__, "prepare the float student once"))
    model = model.eval().to("cpu")
    if getattr(model.config, "_attn_implementation", None) not in (None, "eager"):
        model.set_attn_implementation("eager")  # kept: the QDQ export and the training must trace the same path
    names = onnx_input_names(model, tokenizer)
    dataset = nncf.Dataset(_calibration_batches(tokenizer, list(calibration_texts), names, max_length))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NNCF's tracer warns about torch internals it patches
        quantized = nncf.quantize(model, dataset, subset_size=len(calibration_texts),
                                  model_type=nncf.ModelType.TRANSFORMER, advanced_parameters=_advanced(nncf, isa))
    logger.info("QAT: %d NNCF quantizers inserted, ranges from %d texts", _count_quantizers(quantized),
                len(calibration_texts))
    return quantized


def _count_quantizers(model: torch.nn.Module) -> int:
    return sum(1 for m in model.modules() if type(m).__name__.endswith("Quantizer") and hasattr(m, "set_export_mode"))


@contextlib.contextmanager
def _qdq_export_mode(model: torch.nn.Module):
    """Quantizers trace as ONNX QuantizeLinear/DequantizeLinear pairs (not OpenVINO's FakeQuantize) inside."""
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    quantizers = [m for m in model.modules() if isinstance(m, BaseQuantizer)]
    previous = [q._export_mode for q in quantizers]
    for q in quantizers:
        q.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    try:
        yield
    finally:
        for q, mode in zip(quantizers, previous):
            q.set_export_mode(mode)


class _LogitsOnly(torch.nn.Module):
    """forward(input_ids, attention_mask, ...) -> logits, with named positional inputs for the TorchScript tracer."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs))).logits


def fold_weight_quantizers(path: str | Path) -> int:
    """Store every constant weight that feeds a QuantizeLinear as the int8 tensor it quantizes to.

    The exported graph quantizes its fp32 weights at run time (weight -> QuantizeLinear -> DequantizeLinear); the
    folded graph keeps the DequantizeLinear and an int8 initializer, as ONNX Runtime's own static quantizer writes
    it: a quarter of the file size, the same arithmetic. Returns the number of weights folded.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}

    def value_of(name: str) -> np.ndarray | None:
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        node = constants.get(name)
        if node is not None:
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    folded, keep = 0, []
    for node in graph.node:
        weight = value_of(node.input[0]) if node.op_type == "QuantizeLinear" else None
        if weight is None or weight.dtype != np.float32 or weight.ndim < 2:
            keep.append(node)
            continue
        scale = value_of(node.input[1])
        # ONNX: an omitted zero point is a uint8 0 of the scale's shape.
        zero_point = value_of(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        zero_point = np.broadcast_to(zero_point, scale.shape)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:  # per-channel: broadcast along `axis`
            shape = [1] * weight.ndim
            shape[axis] = scale.size
            scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
        info = np.iinfo(zero_point.dtype)
        quantized = np.clip(np.rint(weight / scale) + zero_point.astype(np.int32), info.min, info.max)
        graph.initializer.append(numpy_helper.from_array(quantized.astype(zero_point.dtype), node.output[0]))
        folded += 1
    del graph.node[:]
    graph.node.extend(keep)
    # Drop the fp32 weights (initializers or Constant nodes) nothing reads any more.
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    live = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    live_nodes = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(live_nodes)
    onnx.save(model, str(path))
    return folded


def export_qat_onnx(model: torch.nn.Module, tokenizer, output_dir: str | Path, *, overwrite: bool = False,
                    compression: dict[str, Any] | None = None) -> Path:
    """Write a QAT model (from `prepare_qat`, trained) as a static int8 ONNX folder: QDQ graph with int8 weights,
    config, tokenizer and compression.json (`quantization: qat`).

    NNCF's quantizers trace through the TorchScript exporter (torch.export cannot follow their data-dependent
    branches); the axes are checked to be dynamic as for every export.
    """
    if not is_qat_model(model):
        raise ModelError(format_error("Not a QAT model.", "a model returned by prepare_qat", type(model).__name__,
                                      "run prepare_qat (and train) before export_qat_onnx"))
    folder = prepare_output_dir(output_dir, overwrite=overwrite, replace=True, flag="--overwrite")
    model = model.eval().to("cpu")
    names = onnx_input_names(model, tokenizer)
    encoded = tokenizer(["a short sentence to trace the graph", "another one"], padding=True, return_tensors="pt")
    path = folder / ONNX_FILE_NAME
    with torch.no_grad(), _qdq_export_mode(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript exporter deprecation and tracer notes
        torch.onnx.export(_LogitsOnly(model, names), tuple(encoded[n] for n in names), str(path),
                          input_names=names, output_names=["logits"], opset_version=QAT_OPSET, dynamo=False,
                          dynamic_axes={n: {0: "batch_size", 1: "sequence_length"} for n in names},
                          do_constant_folding=True)
    _check_dynamic_axes(path)
    folded = fold_weight_quantizers(path)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_compression_info(folder, {**(compression or {}), "format": "onnx", "precision": "int8",
                                    "quantization": "qat", "exporter": "torchscript+nncf",
                                    "int8_weights": folded})
    return folder


def qat_torch_logits(model: torch.nn.Module, tokenizer, texts: list[str], max_length: int = 128,
                     batch_size: int = 32) -> np.ndarray:
    """Logits of the fake-quantized PyTorch model (what training optimised), for parity checks."""
    from nlp_reuse.predict import predict_logits

    return predict_logits(model, list(texts), tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)


__all__ = ["INSTALL_HINT", "export_qat_onnx", "fold_weight_quantizers", "is_qat_model", "prepare_qat",
           "qat_torch_logits", "require_nncf"]
