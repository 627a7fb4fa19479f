"""OpenVINO as a second CPU runtime: IR folders from ONNX folders, NNCF post-training int8, QAT graphs kept int8,
and the benchmark reading them beside ONNX Runtime."""

import numpy as np
import pytest
from compress_support import TEXTS, rows

pytest.importorskip("openvino", reason="the openvino extra is installed by `make install`")

from nlp_reuse.compress.artifacts import load_classifier, read_compression_info  # noqa: E402
from nlp_reuse.compress.benchmark import benchmark_folder, load_predictor  # noqa: E402
from nlp_reuse.compress.onnx_export import OnnxClassifier, export_onnx, onnx_logits, torch_logits  # noqa: E402
from nlp_reuse.compress.openvino_export import OpenVinoClassifier, export_openvino  # noqa: E402
from nlp_reuse.errors import ModelError  # noqa: E402


def _op_counts(folder) -> dict[str, int]:
    import openvino as ov

    counts: dict[str, int] = {}
    for op in ov.Core().read_model(str(folder / "openvino_model.xml")).get_ops():
        counts[op.get_type_name()] = counts.get(op.get_type_name(), 0) + 1
    return counts


@pytest.fixture(scope="module")
def onnx_fp32(trained_dir, tmp_path_factory):
    model, tokenizer = load_classifier(trained_dir)
    return export_onnx(model, tokenizer, tmp_path_factory.mktemp("ov_src") / "onnx")


def test_openvino_fp32_matches_pytorch(trained_dir, onnx_fp32, tmp_path):
    folder = export_openvino(onnx_fp32, tmp_path / "openvino")
    model, tokenizer = load_classifier(trained_dir)
    reference = torch_logits(model, tokenizer, TEXTS)
    predictor = load_predictor(folder, num_threads=1)
    assert isinstance(predictor, OpenVinoClassifier)
    got = onnx_logits(predictor, TEXTS)
    assert np.abs(reference - got).max() < 1e-4
    assert "FakeQuantize" not in _op_counts(folder)
    assert read_compression_info(folder)["format"] == "openvino"


def test_openvino_ptq_is_int8_and_keeps_the_predictions(onnx_fp32, tmp_path):
    texts, _ = rows(48, seed=5)
    folder = export_openvino(onnx_fp32, tmp_path / "openvino_int8", quantization="ptq", calibration_texts=texts)
    assert _op_counts(folder).get("FakeQuantize", 0) >= 6  # the matrix products of two layers
    info = read_compression_info(folder)
    assert info["precision"] == "int8" and info["calibration_samples"] == 48
    fp32 = onnx_logits(OnnxClassifier(onnx_fp32), TEXTS)
    int8 = onnx_logits(OpenVinoClassifier(folder, num_threads=1), TEXTS)
    assert (fp32.argmax(-1) == int8.argmax(-1)).mean() >= 0.8
    assert np.abs(fp32 - int8).max() < 0.25 * np.abs(fp32).max()


def test_benchmark_measures_an_openvino_folder(onnx_fp32, tmp_path):
    folder = export_openvino(onnx_fp32, tmp_path / "openvino")
    texts, labels = rows(12, seed=9)
    row = benchmark_folder(folder, texts, labels, num_threads=1, latency_calls=3, throughput_calls=1)
    assert row.variant.startswith("OpenVINO fp32")
    assert row.size_mb > 0 and row.params > 1000 and row.latency_b1_p50_ms > 0 and 0 <= row.accuracy <= 1


def test_openvino_export_refuses_bad_requests(onnx_fp32, tmp_path):
    with pytest.raises(ModelError, match="Unknown OpenVINO quantization"):
        export_openvino(onnx_fp32, tmp_path / "a", quantization="dynamic")
    with pytest.raises(ModelError, match="needs calibration texts"):
        export_openvino(onnx_fp32, tmp_path / "b", quantization="ptq")
    with pytest.raises(FileNotFoundError, match="not an OpenVINO folder"):
        OpenVinoClassifier(onnx_fp32)
