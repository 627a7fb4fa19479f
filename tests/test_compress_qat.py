"""Quantization-aware distillation (NNCF): QAT trains under DistillationTrainer with the teacher frozen, and the
exported static int8 ONNX model computes what the fake-quantized model computed."""

import copy

import numpy as np
import pytest
import torch
from compress_support import TEXTS, rows

from conftest import LABELS

pytest.importorskip("nncf", reason="the openvino extra (NNCF) is installed by `make install`")

from nlp_reuse.compress.artifacts import load_classifier, read_compression_info  # noqa: E402
from nlp_reuse.compress.onnx_export import OnnxClassifier, onnx_logits  # noqa: E402
from nlp_reuse.compress.qat import (  # noqa: E402
    export_qat_onnx,
    fold_weight_quantizers,
    is_qat_model,
    prepare_qat,
    qat_torch_logits,
)
from nlp_reuse.compress.quantize import count_quantized_ops  # noqa: E402
from nlp_reuse.compress.recover import distill_recover, teacher_logits_for  # noqa: E402
from nlp_reuse.errors import ModelError  # noqa: E402


def assert_same_decisions(reference: np.ndarray, other: np.ndarray) -> None:
    """Logits within a few int8 steps (5% of the logit range + 1e-3), and the same argmax wherever the reference's
    top-two margin is wider than that bound (a near-tie may flip by rounding in either runtime)."""
    bound = 0.05 * np.abs(reference).max() + 1e-3
    assert np.abs(reference - other).max() < bound
    top2 = np.sort(reference, axis=-1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2 * bound
    assert decided.sum() >= len(reference) // 2
    assert (reference.argmax(-1)[decided] == other.argmax(-1)[decided]).all()


@pytest.fixture(scope="module")
def qat_run(nncf_reference_kernels, trained_dir, tmp_path_factory):
    """The trained 2-layer model as teacher and (a second copy) as the student: QAT starts from a trained float
    model, whose logits are far enough apart for the int8 comparisons to mean something."""
    teacher, tokenizer = load_classifier(trained_dir)
    student, _ = load_classifier(trained_dir)
    texts, labels = rows(64, seed=3)
    ids = [LABELS.index(label) for label in labels]
    logits = teacher_logits_for(teacher, tokenizer, texts)
    teacher_before = copy.deepcopy(teacher.state_dict())
    qat = prepare_qat(student, tokenizer, texts[:16])
    scales_before = {n: p.detach().clone() for n, p in qat.named_parameters() if "scale" in n}
    distill_recover(qat, teacher, tokenizer, texts, ids, logits, num_train_epochs=2, learning_rate=1e-3,
                    batch_size=16, stage="qat", progress=False)
    folder = export_qat_onnx(qat, tokenizer, tmp_path_factory.mktemp("qat_export") / "onnx_int8")
    return {"teacher": teacher, "teacher_before": teacher_before, "qat": qat, "tokenizer": tokenizer,
            "folder": folder, "scales_before": scales_before}


def test_qat_trains_student_and_quantizer_scales_with_the_teacher_frozen(qat_run):
    teacher = qat_run["teacher"]
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in qat_run["teacher_before"].items())
    assert not any(p.requires_grad for p in teacher.parameters())
    qat = qat_run["qat"]
    assert is_qat_model(qat)
    scales_after = dict(qat.named_parameters())
    assert qat_run["scales_before"], "NNCF inserted no trainable quantizer scales"
    moved = [n for n, before in qat_run["scales_before"].items() if not torch.equal(before, scales_after[n])]
    assert len(moved) >= len(qat_run["scales_before"]) // 2


def test_exported_int8_model_matches_the_fake_quantized_model(qat_run):
    reference = qat_torch_logits(qat_run["qat"], qat_run["tokenizer"], TEXTS)
    exported = onnx_logits(OnnxClassifier(qat_run["folder"]), TEXTS)
    assert_same_decisions(reference, exported)


def test_exported_graph_is_static_int8_with_int8_weights(qat_run):
    ops = count_quantized_ops(qat_run["folder"] / "model.onnx")
    assert ops["dequantize_int8_weights"] >= 12  # q, k, v, attention output, two FFN matrices per layer
    assert ops["float_matmul_weights"] == 0
    info = read_compression_info(qat_run["folder"])
    assert info["quantization"] == "qat" and info["precision"] == "int8" and info["int8_weights"] >= 12


@pytest.mark.parametrize(("axis", "zero_point_dtype"), [(0, np.int8), (1, np.int8), (0, np.uint8), (1, None)])
def test_fold_weight_quantizers_computes_what_the_unfolded_graph_computes(tmp_path, axis, zero_point_dtype):
    """x @ DQ(Q(W)) with per-channel scales on either axis, int8/uint8 zero points or none: folding W into its int8
    values changes the stored tensor, not the result."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(axis)
    weight = rng.normal(size=(4, 3)).astype(np.float32)
    scale = (np.abs(weight).max(axis=1 - axis) / 100).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(scale, "s")]
    q_inputs = ["W", "s"]
    if zero_point_dtype is not None:
        offset = 0 if zero_point_dtype == np.int8 else 128
        inits.append(numpy_helper.from_array(np.full(scale.shape, offset, zero_point_dtype), "z"))
        q_inputs.append("z")
    nodes = [helper.make_node("QuantizeLinear", q_inputs, ["Wq"], axis=axis),
             helper.make_node("DequantizeLinear", ["Wq", *q_inputs[1:]], ["Wd"], axis=axis),
             helper.make_node("MatMul", ["x", "Wd"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], inits)
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = rng.normal(size=(5, 4)).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    def run() -> np.ndarray:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    before = run()
    assert fold_weight_quantizers(path) == 1
    folded = onnx.load(str(path)).graph
    assert [n.op_type for n in folded.node] == ["DequantizeLinear", "MatMul"]
    stored = {i.name: numpy_helper.to_array(i) for i in folded.initializer}
    assert "W" not in stored and stored["Wq"].dtype in (np.int8, np.uint8)
    np.testing.assert_array_equal(run(), before)
    assert fold_weight_quantizers(path) == 0  # nothing left to fold


def test_prepare_qat_refuses_without_texts_and_twice(qat_run, trained_dir):
    model, tokenizer = load_classifier(trained_dir)
    with pytest.raises(ModelError, match="calibration texts"):
        prepare_qat(model, tokenizer, [])
    with pytest.raises(ModelError, match="already carries NNCF quantizers"):
        prepare_qat(qat_run["qat"], qat_run["tokenizer"], ["a text"])
    with pytest.raises(ModelError, match="Not a QAT model"):
        export_qat_onnx(model, tokenizer, "unused")


def test_openvino_runs_the_qat_graph_as_int8_with_the_same_predictions(qat_run, tmp_path):
    pytest.importorskip("openvino")
    from nlp_reuse.compress.openvino_export import OpenVinoClassifier, export_openvino

    folder = export_openvino(qat_run["folder"], tmp_path / "openvino_int8")
    info = read_compression_info(folder)
    assert info["format"] == "openvino" and info["precision"] == "int8" and info["quantization"] == "qat"
    ort_logits = onnx_logits(OnnxClassifier(qat_run["folder"]), TEXTS)
    ov_logits = onnx_logits(OpenVinoClassifier(folder, num_threads=1), TEXTS)
    assert_same_decisions(ort_logits, ov_logits)
    with pytest.raises(ModelError, match="already int8"):
        export_openvino(qat_run["folder"], tmp_path / "again", quantization="ptq", calibration_texts=["x"])
