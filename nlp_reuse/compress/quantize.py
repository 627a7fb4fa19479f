"""int8 quantization of ONNX folders with `onnxruntime.quantization`, and the accuracy guard that vets the result.

Dynamic quantization stores int8 weights and quantizes activations on the fly (MatMulInteger, DynamicQuantize*);
static quantization also fixes activation ranges from calibration texts and writes a QDQ graph
(QuantizeLinear/DequantizeLinear pairs). The weight type and range are matched to the CPU's instruction set, as
Optimum's `AutoQuantizationConfig` matches them.
"""

from __future__ import annotations

import logging
import platform
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nlp_reuse.compress.artifacts import (
    ONNX_FILE_NAME,
    copy_side_files,
    find_onnx_file,
    format_error,
    load_tokenizer,
    read_compression_info,
    write_compression_info,
)
from nlp_reuse.errors import ModelError
from nlp_reuse.files import prepare_output_dir

logger = logging.getLogger(__name__)

CPU_ISAS = ("avx512_vnni", "avx512", "avx2", "arm64")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANTIZATION_MODES = ("none", "dynamic", "static")
# Dynamic quantization covers the matrix products and the embedding tables (Gather): in a small student the word
# embeddings are most of the parameters (11.7M of MiniLM-L3's 17.4M), so leaving them fp32 keeps 3/4 of the file.
# LSTM: a BiLSTM student's recurrent weights (DynamicQuantizeLSTM); transformer graphs have none.
DYNAMIC_OPERATORS = ("MatMul", "Gather", "LSTM")
# Static quantization calibrates and quantizes only these operators. A QDQ list that also covers the Sub/Mul/Add
# building BERT's additive attention mask lets its -3.4e38 entries overflow the percentile/entropy histograms and
# wipe out attention under minmax ranges, and LayerNorm/GELU arithmetic is fragile in int8; the matrix products and
# embedding tables carry the speed and size gains.
STATIC_OPERATORS = ("MatMul", "Gemm", "Gather")


@dataclass(frozen=True)
class IsaQuantization:
    """Weight type and range for one instruction set: u8 activations times s8 (or u8) weights."""

    weight_type: str  # "int8" or "uint8"
    reduce_range: bool  # 7-bit weights: avoids VPMADDUBSW saturation on CPUs without VNNI when needed


# AVX2 multiplies u8 x u8 without saturation; AVX512/VNNI and ARM64 use u8 x s8 (Optimum's AutoQuantizationConfig).
ISA_QUANTIZATION = {
    "arm64": IsaQuantization("int8", False),
    "avx2": IsaQuantization("uint8", False),
    "avx512": IsaQuantization("int8", False),
    "avx512_vnni": IsaQuantization("int8", False),
}


class AccuracyDropWarning(UserWarning):
    """Emitted when a quantized model loses more accuracy than allowed and the fp32 model is kept instead."""


def detect_cpu_isa(cpuinfo_path: str | Path = "/proc/cpuinfo") -> str:
    """The most capable int8 instruction set of this CPU among CPU_ISAS (arm64, avx512_vnni, avx512, avx2).

    Reads the x86 flags from /proc/cpuinfo; where that is unavailable (macOS, Windows) it falls back to avx2,
    the config that is correct (if not fastest) on any x86-64 CPU from the last decade.
    """
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    path = Path(cpuinfo_path)
    if not path.is_file():
        logger.warning("%s not found; assuming an AVX2 CPU for the quantization config.", path)
        return "avx2"
    flags: set[str] = set()
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    if "avx2" not in flags:
        logger.warning("CPU reports no AVX2; int8 kernels will be slow. Using the avx2 quantization config.")
    return "avx2"


def isa_quantization(isa: str | None = None) -> tuple[str, IsaQuantization]:
    """(isa, its weight settings) for the given or detected instruction set; an unknown name is an error."""
    isa = isa or detect_cpu_isa()
    if isa not in ISA_QUANTIZATION:
        raise ModelError(format_error("Unknown CPU instruction set for quantization.", f"one of {CPU_ISAS}",
                                      repr(isa), "leave it unset to detect it, or pass one of the expected values"))
    return isa, ISA_QUANTIZATION[isa]


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


# Symmetric weights (zero point 0), asymmetric u8 activations, as Optimum's CPU configs have them.
_EXTRA_OPTIONS = {"WeightSymmetric": True, "ActivationSymmetric": False}


def quantize_dynamic(onnx_dir: str | Path, output_dir: str | Path, *, isa: str | None = None,
                     per_channel: bool = True, overwrite: bool = False) -> Path:
    """int8 dynamic quantization of an ONNX folder (weights int8, activations quantized at run time)."""
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    source = Path(onnx_dir)
    onnx_path = find_onnx_file(source)
    isa, settings = isa_quantization(isa)
    folder = prepare_output_dir(output_dir, overwrite=overwrite, replace=True, flag="--overwrite")
    ort_quantize_dynamic(onnx_path, folder / ONNX_FILE_NAME, op_types_to_quantize=list(DYNAMIC_OPERATORS),
                         per_channel=per_channel, reduce_range=settings.reduce_range,
                         weight_type=_quant_type(settings.weight_type), extra_options=dict(_EXTRA_OPTIONS))
    copy_side_files(source, folder)
    write_compression_info(folder, {**read_compression_info(source), "precision": "int8",
                                    "quantization": "dynamic", "isa": isa, "per_channel": per_channel})
    return folder


def calibration_method(method: str):
    """onnxruntime `CalibrationMethod` for a calibration method name in CALIBRATION_METHODS."""
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ModelError(format_error("Unknown calibration method.", f"one of {CALIBRATION_METHODS}", repr(method),
                                      "pass --calibration_method minmax, entropy or percentile"))
    return methods[method]


class _TextCalibrationReader:
    """onnxruntime `CalibrationDataReader` over tokenized texts, one unpadded text per batch (no padding enters the
    ranges). `set_range` lets onnxruntime collect text by text (`CalibStridedMinMax`): the histogram calibrators
    (entropy, percentile) cannot stack outputs of different sequence lengths in one pass."""

    def __init__(self, tokenizer, texts: list[str], input_names: list[str], max_length: int):
        self._batches = [
            {name: np.asarray([encoded[name]], dtype=np.int64) for name in input_names}
            for encoded in (tokenizer(text, truncation=True, max_length=max_length) for text in texts)
        ]
        self.set_range(0, len(self._batches))

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._current = iter(self._batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._current, None)

    def rewind(self) -> None:
        self.set_range(0, len(self._batches))


def quantize_static(onnx_dir: str | Path, output_dir: str | Path, calibration_texts: list[str], *,
                    method: str = "minmax", isa: str | None = None, percentile: float = 99.999,
                    max_length: int = 128, per_channel: bool = True, overwrite: bool = False) -> Path:
    """int8 static quantization (QDQ) with activation ranges calibrated on `calibration_texts`."""
    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    if not calibration_texts:
        raise ModelError(format_error("Static quantization needs calibration texts.", "a non-empty list of texts",
                                      "an empty list", "pass --train_file (and --calibration_samples > 0)"))
    calibrate_method = calibration_method(method)  # an unknown method fails before any work
    source = Path(onnx_dir)
    onnx_path = find_onnx_file(source)
    isa, settings = isa_quantization(isa)
    tokenizer = load_tokenizer(source)
    input_names = [i.name for i in onnx.load(str(onnx_path), load_external_data=False).graph.input]
    reader = _TextCalibrationReader(tokenizer, list(calibration_texts), input_names, max_length)
    folder = prepare_output_dir(output_dir, overwrite=overwrite, replace=True, flag="--overwrite")
    ort_quantize_static(
        onnx_path, folder / ONNX_FILE_NAME, reader, quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(STATIC_OPERATORS), per_channel=per_channel, reduce_range=settings.reduce_range,
        activation_type=_quant_type("uint8"), weight_type=_quant_type(settings.weight_type),
        calibrate_method=calibrate_method,
        extra_options={**_EXTRA_OPTIONS, "CalibPercentile": percentile, "CalibStridedMinMax": 1},
    )
    copy_side_files(source, folder)
    write_compression_info(folder, {**read_compression_info(source), "precision": "int8",
                                    "quantization": "static", "calibration_method": method,
                                    "calibration_samples": len(calibration_texts), "isa": isa,
                                    "per_channel": per_channel})
    return folder


# Operators that only appear in a graph whose MatMul/Gemm weights were quantized to 8 bit.
_INT8_MATMUL_OPS = ("MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                    "QGemm", "QAttention")


def count_quantized_ops(onnx_path: str | Path) -> dict[str, int]:
    """Count evidence of int8 matrix weights in an ONNX graph.

    Returns counts of the integer MatMul/Gemm operators (`_INT8_MATMUL_OPS`), of DequantizeLinear nodes whose
    input is an int8/uint8 initializer (QDQ weights), of all 8-bit initializers, and of fp32 MatMul/Gemm nodes
    whose weight is still a float initializer, and of Gather nodes that read a float table (fp32 embeddings).
    """
    import onnx

    model = onnx.load(str(onnx_path))
    graph = model.graph
    int8_types = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    init_types = {init.name: init.data_type for init in graph.initializer}
    counts = {op: 0 for op in _INT8_MATMUL_OPS}
    counts.update(dequantize_int8_weights=0, int8_initializers=0, float_matmul_weights=0, float_gather_tables=0)
    counts["int8_initializers"] = sum(1 for t in init_types.values() if t in int8_types)
    for node in graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
        elif node.op_type == "DequantizeLinear" and init_types.get(node.input[0]) in int8_types:
            counts["dequantize_int8_weights"] += 1
        elif node.op_type in ("MatMul", "Gemm") and any(
                init_types.get(name) == onnx.TensorProto.FLOAT for name in node.input[1:2]):
            counts["float_matmul_weights"] += 1
        elif node.op_type == "Gather" and init_types.get(node.input[0]) == onnx.TensorProto.FLOAT:
            counts["float_gather_tables"] += 1  # an embedding table still stored in fp32
    return counts


@dataclass
class GuardResult:
    """Outcome of comparing a quantized model with its fp32 reference on labelled validation texts."""

    fp32_accuracy: float
    quantized_accuracy: float
    drop_points: float  # (fp32 - quantized) accuracy, in percentage points
    max_accuracy_drop: float
    prediction_agreement: float  # fraction of texts where both models predict the same label
    num_examples: int
    triggered: bool  # True: the quantized model was rejected

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_guard(fp32_dir: str | Path, quantized_dir: str | Path, texts: list[str], labels: list[int], *,
                   max_accuracy_drop: float = 1.0, max_length: int = 128, batch_size: int = 32) -> GuardResult:
    """Evaluate both ONNX folders on (texts, labels); trigger when accuracy drops more than `max_accuracy_drop`
    points. A triggered guard emits an `AccuracyDropWarning`."""
    from nlp_reuse.compress.onnx_export import OnnxClassifier, onnx_logits

    if len(texts) == 0 or len(texts) != len(labels):
        raise ModelError(format_error("The accuracy guard needs labelled validation texts.",
                                      "as many labels as texts, at least one", f"{len(texts)} texts, "
                                      f"{len(labels)} labels", "pass --validation_file with text and label columns"))
    gold = np.asarray(labels)
    fp32_pred = onnx_logits(OnnxClassifier(fp32_dir, max_length=max_length), texts, batch_size).argmax(-1)
    int8_pred = onnx_logits(OnnxClassifier(quantized_dir, max_length=max_length), texts, batch_size).argmax(-1)
    fp32_acc = float((fp32_pred == gold).mean())
    int8_acc = float((int8_pred == gold).mean())
    drop = (fp32_acc - int8_acc) * 100
    result = GuardResult(fp32_accuracy=fp32_acc, quantized_accuracy=int8_acc, drop_points=round(drop, 4),
                         max_accuracy_drop=max_accuracy_drop,
                         prediction_agreement=float((fp32_pred == int8_pred).mean()), num_examples=len(texts),
                         triggered=drop > max_accuracy_drop)
    if result.triggered:
        warnings.warn(
            f"ACCURACY GUARD: int8 model {quantized_dir} drops {drop:.2f} accuracy points "
            f"({fp32_acc:.4f} -> {int8_acc:.4f}) on {len(texts)} validation texts, more than the allowed "
            f"{max_accuracy_drop}. Keeping the fp32 ONNX model {fp32_dir} as the deliverable.",
            AccuracyDropWarning, stacklevel=2,
        )
    return result


__all__ = [
    "CALIBRATION_METHODS",
    "CPU_ISAS",
    "QUANTIZATION_MODES",
    "AccuracyDropWarning",
    "GuardResult",
    "DYNAMIC_OPERATORS",
    "ISA_QUANTIZATION",
    "STATIC_OPERATORS",
    "IsaQuantization",
    "accuracy_guard",
    "calibration_method",
    "count_quantized_ops",
    "detect_cpu_isa",
    "isa_quantization",
    "quantize_dynamic",
    "quantize_static",
]
