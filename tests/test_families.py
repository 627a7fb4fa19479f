"""BiLSTM and static-embedding students: shapes, padding invariance, save/load through the Auto classes and
`pipeline`, ONNX (fp32 and int8) parity, a few DistillationTrainer steps, and the embedding initialisations."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForSequenceClassification, DataCollatorWithPadding, pipeline

import nlp_reuse  # noqa: F401  (registers the Auto classes)
from conftest import make_examples
from nlp_reuse.compress.onnx_export import check_onnx_parity, export_onnx
from nlp_reuse.compress.pipeline import export_model
from nlp_reuse.config import DistillationArguments
from nlp_reuse.errors import ModelError
from nlp_reuse.families import (
    BiLSTMForSequenceClassification,
    StaticEmbeddingForSequenceClassification,
    build_student_family,
    encoder_static_embeddings,
    pca_project,
)
from nlp_reuse.modeling import load_teacher, load_tokenizer, num_layers
from nlp_reuse.trainers import DistillationTrainer

FAMILIES = {"bilstm": BiLSTMForSequenceClassification, "static": StaticEmbeddingForSequenceClassification}
TEXTS = [r["text"] for r in make_examples(6, seed=11)] + ["good", "the plot was dull and the acting was worse " * 2]


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    return load_teacher(str(tiny_teacher_dir)), load_tokenizer(tiny_teacher_dir)


def _student(kind, teacher, pooling=None, init="teacher", dim=16):
    model, tokenizer = teacher
    torch.manual_seed(0)
    return build_student_family(kind, model, tokenizer, embedding_dim=dim, hidden_size=8, classifier_hidden=12,
                                pooling=pooling, embedding_init=init).eval()


@pytest.mark.parametrize("kind", FAMILIES)
@pytest.mark.parametrize("pooling", ["max", "mean", "mean_max"])
def test_logits_shape_and_a_text_reads_the_same_alone_or_padded(teacher, kind, pooling):
    student, tokenizer = _student(kind, teacher, pooling), teacher[1]
    assert isinstance(student, FAMILIES[kind])
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = student(**batch).logits  # (batch, labels)
        assert logits.shape == (len(TEXTS), 3)
        for i, text in enumerate(TEXTS):  # padding never reaches a real token (backward LSTM included)
            alone = student(**tokenizer([text], return_tensors="pt")).logits[0]
            torch.testing.assert_close(alone, logits[i], atol=1e-5, rtol=1e-5)
    assert num_layers(student) == (1 if kind == "bilstm" else 0)


@pytest.mark.parametrize("kind", FAMILIES)
def test_save_load_through_auto_classes_and_pipeline(teacher, kind, tmp_path):
    student, tokenizer = _student(kind, teacher), teacher[1]
    student.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == f"nlp_reuse_{kind}"
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is FAMILIES[kind]
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, student(**batch).logits)
    predicted = pipeline("text-classification", model=str(tmp_path), device="cpu")(TEXTS[:2])
    assert {p["label"] for p in predicted} <= {"negative", "neutral", "positive"}


@pytest.mark.parametrize("kind", FAMILIES)
def test_onnx_fp32_parity_and_int8_export_load_in_plain_onnxruntime(teacher, kind, tmp_path):
    student, tokenizer = _student(kind, teacher), teacher[1]
    folder = export_onnx(student, tokenizer, tmp_path / "onnx")
    assert check_onnx_parity(student, tokenizer, folder, TEXTS) < 1e-4
    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    assert ("LSTM" in ops) == (kind == "bilstm")  # the recurrence is one ONNX LSTM node, not an unrolled loop

    student.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    texts, labels = [r["text"] for r in make_examples(12, 5)], [r["label"] for r in make_examples(12, 5)]
    result = export_model(tmp_path / "model", tmp_path / "out", quantization="dynamic", validation_texts=texts,
                          validation_labels=labels, max_length=32, max_accuracy_drop=1.0, seed=0)
    int8 = Path(result.quantized_dir) / "model.onnx"
    int8_ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    # The LSTM weights are constants in the graph, so dynamic quantization reaches them too.
    assert ("DynamicQuantizeLSTM" in int8_ops) == (kind == "bilstm") and "MatMulInteger" in int8_ops
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    encoded = tokenizer(TEXTS, padding=True, return_tensors="np")
    feeds = {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()}
    assert session.run(["logits"], feeds)[0].shape == (len(TEXTS), 3)


@pytest.mark.parametrize("kind", FAMILIES)
def test_distillation_trainer_moves_the_student_and_not_the_teacher(teacher, kind, tmp_path):
    model, tokenizer = teacher
    student = _student(kind, teacher).train()
    rows = make_examples(16, seed=3)
    label2id = model.config.label2id
    dataset = Dataset.from_dict({"text": [r["text"] for r in rows], "label": [label2id[r["label"]] for r in rows]})
    dataset = dataset.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])
    args = DistillationArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8,
                                 learning_rate=1e-2, report_to="none", save_strategy="no", use_cpu=True,
                                 kd_loss="mse", alpha=0.9)
    teacher_before = {k: v.clone() for k, v in model.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    DistillationTrainer(model=student, teacher_model=model, args=args, train_dataset=dataset,
                        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer).train()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in teacher_before.items())
    moved = [k for k, v in student_before.items() if not torch.equal(v, student.state_dict()[k])]
    assert "embeddings.weight" in moved and any(k.startswith("classifier") for k in moved)


def test_embedding_inits_come_from_the_teacher(teacher):
    model, tokenizer = teacher
    rows = model.get_input_embeddings().weight
    same_width = _student("static", teacher, dim=rows.shape[1])
    torch.testing.assert_close(same_width.get_input_embeddings().weight, rows)
    # PCA to k dims keeps a rank-k matrix exactly (up to rotation): pairwise distances survive.
    torch.manual_seed(1)
    low_rank = torch.randn(50, 4) @ torch.randn(4, 32)
    projected = pca_project(low_rank, 4)
    exact = "donot_use_mm_for_euclid_dist"
    torch.testing.assert_close(torch.cdist(projected, projected, compute_mode=exact),
                               torch.cdist(low_rank, low_rank, compute_mode=exact), atol=1e-3, rtol=1e-3)
    vectors = encoder_static_embeddings(model, tokenizer, 8, batch_size=64)
    assert vectors.shape == (rows.shape[0], 8)
    assert torch.unique(vectors.round(decimals=5), dim=0).shape[0] > 0.9 * rows.shape[0]  # distinct per token
    student = _student("bilstm", teacher, init="encoder", dim=8)
    torch.testing.assert_close(student.get_input_embeddings().weight, vectors)


def test_family_errors_name_the_valid_choices(teacher):
    model, tokenizer = teacher
    with pytest.raises(ModelError, match=r"one of \['bilstm', 'static'\]"):
        build_student_family("cnn", model, tokenizer, embedding_dim=8)
    with pytest.raises(ModelError, match=r"--student_embedding_dim <= 32"):
        build_student_family("static", model, tokenizer, embedding_dim=64)
    with pytest.raises(ModelError, match="one of \\('teacher', 'encoder', 'random'\\)"):
        build_student_family("static", model, tokenizer, embedding_dim=8, embedding_init="glove")


@pytest.mark.parametrize(("student_type", "flags", "message"), [
    ("bilstm", {"hidden_loss_weight": 1.0}, "Hidden-state and attention transfer need a transformer student"),
    ("static", {"strategy": "lora"}, "--strategy lora freezes or adapts transformer layers"),
    ("transformer", {"strategy": "lora", "trim": True}, "--trim_vocabulary rewrites the embedding matrix"),
])
def test_family_option_combinations_are_refused_before_any_model(student_type, flags, message):
    from nlp_reuse.errors import ConfigError
    from nlp_reuse.student_config import StudentFamilyArguments, check_family_options

    family = StudentFamilyArguments(trim_vocabulary=flags.get("trim", False))
    with pytest.raises(ConfigError, match=message):
        check_family_options(student_type, family, flags.get("hidden_loss_weight", 0.0), 0.0,
                             flags.get("strategy", "full"))


def test_student_sources_depend_on_the_family():
    from nlp_reuse.config import DistillScriptArguments

    DistillScriptArguments(teacher_model_name_or_path="t", student_type="bilstm")  # built from the teacher
    with pytest.raises(ValueError, match="--student_type bilstm builds its student from the teacher"):
        DistillScriptArguments(teacher_model_name_or_path="t", student_type="bilstm", student_num_layers=2)
    with pytest.raises(ValueError, match=r"or --student_type bilstm \| static\); found none"):
        DistillScriptArguments(teacher_model_name_or_path="t")


def test_an_export_that_fixes_the_sequence_length_is_refused(teacher, tmp_path, monkeypatch):
    # A plain nn.LSTM under torch.export (our symbolic path switched off): after the first such export in a process,
    # torch's LSTM decomposition fixes the sequence length; the exporter must say so instead of writing the graph.
    from nlp_reuse.families import bilstm

    student, tokenizer = _student("bilstm", teacher), teacher[1]
    monkeypatch.setattr(bilstm, "lstm_states", lambda lstm, x: lstm(x)[0])
    with pytest.raises(ModelError, match="fixed input sizes"):
        for attempt in range(2):  # the first plain-LSTM export of a process may still come out dynamic
            export_onnx(student, tokenizer, tmp_path / f"lstm{attempt}")


def test_precomputed_start_vectors_build_the_same_student(teacher):
    # The pipeline hands the student's start embeddings to the no-KD baseline instead of recomputing them.
    from nlp_reuse.families import initial_embeddings

    model, tokenizer = teacher
    vectors = initial_embeddings("encoder", model, tokenizer, 8)
    torch.manual_seed(0)
    given = build_student_family("bilstm", model, tokenizer, embedding_dim=8, hidden_size=4, embedding_init="encoder",
                                 vectors=vectors)
    torch.manual_seed(0)
    computed = build_student_family("bilstm", model, tokenizer, embedding_dim=8, hidden_size=4,
                                    embedding_init="encoder")
    for (name, a), b in zip(given.state_dict().items(), computed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_unknown_augmentation_is_a_flag_error():
    from nlp_reuse.errors import ConfigError
    from nlp_reuse.student_config import TransferSetArguments

    with pytest.raises(ConfigError, match=r"unknown method\(s\) \['mixup'\]; expected .*masking, ngram, replace"):
        TransferSetArguments(augment="masking,mixup")
