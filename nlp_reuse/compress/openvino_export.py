"""A second CPU runtime: OpenVINO IR folders made from the ONNX folders, and their int8 versions through NNCF.

`export_openvino` converts an ONNX folder (`openvino.convert_model` reads the graph the torch exporter wrote) and
either keeps its precision (a QAT/QDQ graph stays int8: OpenVINO turns the QuantizeLinear/DequantizeLinear pairs
into its FakeQuantize and runs integer kernels) or, with `quantization="ptq"`, quantizes a float graph with NNCF's
post-training quantization calibrated on training texts (`nncf.quantize`, transformer preset). The folder holds
`openvino_model.xml`/`.bin` beside the same config, tokenizer and compression.json as an ONNX folder, the layout
optimum-intel's `OVModelForSequenceClassification` reads.

OpenVINO and NNCF are optional (`pip install 'nlp_reuse[openvino]'`); optimum-intel itself is not used: its
releases pin transformers<5.6, and nlp_reuse runs on the current transformers.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from nlp_reuse.compress.artifacts import (
    copy_side_files,
    find_onnx_file,
    load_tokenizer,
    read_compression_info,
    write_compression_info,
)
from nlp_reuse.compress.onnx_export import OnnxClassifier, rust_batch_encoder
from nlp_reuse.compress.qat import INSTALL_HINT, require_nncf
from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.files import prepare_output_dir

logger = logging.getLogger(__name__)

OPENVINO_XML = "openvino_model.xml"
OPENVINO_BIN = "openvino_model.bin"
OPENVINO_QUANTIZATION = ("none", "ptq")


def require_openvino():
    """The `openvino` module, or a ModelError that says how to install it."""
    os.environ.setdefault("OPENVINO_TELEMETRY", "0")
    try:
        import openvino
    except ImportError as err:
        raise ModelError(format_error("The OpenVINO runtime is not installed.", "the openvino package",
                                      f"ImportError: {err}", INSTALL_HINT)) from err
    return openvino


def is_openvino_folder(folder: str | Path) -> bool:
    return (Path(folder) / OPENVINO_XML).is_file()


def export_openvino(onnx_dir: str | Path, output_dir: str | Path, *, quantization: str = "none",
                    calibration_texts: list[str] | None = None, max_length: int = 128,
                    overwrite: bool = False) -> Path:
    """OpenVINO IR of an ONNX folder in `output_dir`; `quantization="ptq"` makes a float graph int8 with NNCF.

    A graph that is already int8 (static QDQ, e.g. from QAT) keeps its trained scales: PTQ on top is refused.
    """
    if quantization not in OPENVINO_QUANTIZATION:
        raise ModelError(format_error("Unknown OpenVINO quantization.", f"one of {OPENVINO_QUANTIZATION}",
                                      repr(quantization), "pass none (keep the ONNX precision) or ptq"))
    source = Path(onnx_dir)
    onnx_path = find_onnx_file(source)
    info = read_compression_info(source)
    if quantization == "ptq" and info.get("precision") == "int8":
        raise ModelError(format_error(
            "The ONNX folder is already int8.", "a float ONNX folder for post-training quantization",
            f"{source} ({info.get('quantization')} int8)", "convert it with quantization='none' (its int8 is kept)",
        ))
    if quantization == "ptq" and not calibration_texts:
        raise ModelError(format_error("OpenVINO int8 needs calibration texts.", "a non-empty list of texts",
                                      "none", "pass --train_file (calibration samples come from it)"))
    ov = require_openvino()
    model = ov.convert_model(str(onnx_path))
    precision = info.get("precision", "fp32")
    if quantization == "ptq":
        nncf = require_nncf()
        tokenizer = load_tokenizer(source)
        names = [port.get_any_name() for port in model.inputs]
        batches = []
        for text in calibration_texts:
            encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="np")
            batches.append({name: encoded[name].astype(np.int64) for name in names})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches),
                                  model_type=nncf.ModelType.TRANSFORMER)
        precision = "int8"
    folder = prepare_output_dir(output_dir, overwrite=overwrite, replace=True, flag="--overwrite")
    ov.save_model(model, str(folder / OPENVINO_XML), compress_to_fp16=False)
    copy_side_files(source, folder)
    record = {**info, "format": "openvino", "precision": precision, "openvino": ov.__version__}
    if quantization == "ptq":
        record.update(quantization="static", calibration_method="nncf-ptq", calibration_samples=len(batches))
    write_compression_info(folder, record)
    return folder


class OpenVinoClassifier:
    """Text in, logits out, over an OpenVINO compiled model on CPU (same tokenization as `OnnxClassifier`)."""

    def __init__(self, folder: str | Path, num_threads: int | None = None, max_length: int = 128):
        from transformers import AutoConfig

        ov = require_openvino()
        self.folder = Path(folder)
        missing = [n for n in (OPENVINO_XML, OPENVINO_BIN) if not (self.folder / n).is_file()]
        if missing:
            raise FileNotFoundError(format_error(f"{self.folder} is not an OpenVINO folder.",
                                                 f"{OPENVINO_XML} and {OPENVINO_BIN}", f"no {', '.join(missing)}",
                                                 "make one with `nlp-reuse compress --openvino int8` or "
                                                 "nlp_reuse.compress.openvino_export.export_openvino"))
        self.config = AutoConfig.from_pretrained(self.folder, local_files_only=True)
        self.tokenizer = load_tokenizer(self.folder)
        core = ov.Core()
        # f32: on CPUs with AVX512-BF16 or AMX, OpenVINO otherwise runs float layers in bf16 by default, and an
        # fp32 artefact would be measured (accuracy and latency) as a bf16 one without a word.
        settings = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if num_threads:
            settings["INFERENCE_NUM_THREADS"] = int(num_threads)
        self.model_path = self.folder / OPENVINO_XML
        self.compiled = core.compile_model(str(self.model_path), "CPU", settings)
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.max_length = max_length
        self.batch_encoder = rust_batch_encoder(self.tokenizer, max_length)

    encode = OnnxClassifier.encode

    def logits(self, texts: list[str]) -> np.ndarray:
        """(batch, num_labels) float32 logits."""
        result = self.request.infer(self.encode(texts))
        return np.asarray(result[self.compiled.outputs[0]], dtype=np.float32)

    __call__ = logits

    def num_parameters(self) -> int:
        """Stored weight values: the elements of every Constant in the IR that is not a scalar."""
        ov = require_openvino()
        model = ov.Core().read_model(str(self.model_path))
        # Weight matrices and tables: Constants with two or more axes of size > 1 (not the (N, 1) ranges of a
        # FakeQuantize).
        return int(sum(int(np.prod(op.get_output_shape(0))) for op in model.get_ops()
                       if op.get_type_name() == "Constant"
                       and sum(1 for d in op.get_output_shape(0) if d > 1) >= 2))


__all__ = ["OPENVINO_BIN", "OPENVINO_QUANTIZATION", "OPENVINO_XML", "OpenVinoClassifier", "export_openvino",
           "is_openvino_folder", "require_openvino"]
