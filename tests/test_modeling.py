"""Student builders, layer maps and teacher/student compatibility checks on tiny models."""

import shutil

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertTokenizerFast

from conftest import build_tiny_bert
from nlp_reuse.layer_map import LayerMapError, LayerProjector, parse_layer_map
from nlp_reuse.modeling import (
    ModelError,
    check_compatibility,
    encoder_layers,
    evenly_spaced_layers,
    load_student,
    load_teacher,
    load_tokenizer,
    student_from_config,
    student_from_teacher_layers,
)


@pytest.fixture()
def teacher(tiny_teacher_dir):
    return load_teacher(str(tiny_teacher_dir))


def test_teacher_is_frozen_and_in_eval_mode(teacher):
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("n_teacher,n_student,expected", [(6, 3, [0, 2, 5]), (12, 6, [0, 2, 4, 7, 9, 11]),
                                                          (4, 2, [0, 3]), (4, 1, [3]), (4, 4, [0, 1, 2, 3])])
def test_evenly_spaced_layers(n_teacher, n_student, expected):
    assert evenly_spaced_layers(n_teacher, n_student) == expected


def test_student_num_layers_out_of_range():
    with pytest.raises(ModelError, match=r"between 1 and the teacher's 4 layers, got 5"):
        evenly_spaced_layers(4, 5)


def test_student_from_teacher_layers_copies_weights(teacher):
    student = student_from_teacher_layers(teacher, 2)
    assert len(encoder_layers(student)) == 2 and student.config.num_hidden_layers == 2
    t_layers, s_layers = encoder_layers(teacher), encoder_layers(student)
    for s_index, t_index in enumerate([0, 3]):
        for (name, p_s), p_t in zip(s_layers[s_index].named_parameters(), t_layers[t_index].parameters()):
            assert torch.equal(p_s, p_t), name
    torch.testing.assert_close(student.bert.embeddings.word_embeddings.weight,
                               teacher.bert.embeddings.word_embeddings.weight)
    torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight)
    assert student.config.id2label == teacher.config.id2label
    assert all(p.requires_grad for p in student.parameters())  # the copy is trainable, the teacher is not


def test_student_from_config_shapes_and_errors(teacher):
    student = student_from_config(teacher, {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2,
                                            "intermediate_size": 32})
    assert student.config.hidden_size == 16 and len(encoder_layers(student)) == 1
    assert student.config.vocab_size == teacher.config.vocab_size
    with pytest.raises(ModelError, match=r"key 'hiden_size' is not a field of BertConfig"):
        student_from_config(teacher, {"hiden_size": 16})
    with pytest.raises(ModelError, match=r"hidden_size 20 is not divisible by num_attention_heads 3"):
        student_from_config(teacher, {"hidden_size": 20, "num_attention_heads": 3})


def test_untuned_teacher_is_refused(tiny_tokenizer_dir, tmp_path):
    path = build_tiny_bert(tiny_tokenizer_dir, tmp_path / "raw", labels=None)
    with pytest.raises(ModelError, match=r"no named labels .*LABEL_0.*Fine-tune it first: nlp-reuse finetune"):
        load_teacher(str(path))


def test_encoder_without_a_trained_head_is_refused(tiny_tokenizer_dir, tmp_path):
    """A plain encoder folder with named labels would teach from a random classifier head."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    labels = ["negative", "neutral", "positive"]
    config = BertConfig(vocab_size=AutoTokenizer.from_pretrained(tiny_tokenizer_dir).vocab_size, hidden_size=16,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    BertModel(config).save_pretrained(tmp_path / "encoder")
    with pytest.raises(ModelError, match=r"not a trained classifier: .*missing and randomly initialised "
                                         r"\(classifier\.bias, classifier\.weight\).*Fine-tune it first"):
        load_teacher(str(tmp_path / "encoder"))


def test_missing_local_folder_is_refused():
    with pytest.raises(ModelError, match="does not exist: expected a local model folder or a Hub id"):
        load_teacher("./no/such/teacher")


def test_label_mismatch_is_refused(teacher, tiny_teacher_dir, tiny_tokenizer_dir, tmp_path):
    other = AutoModelForSequenceClassification.from_pretrained(
        build_tiny_bert(tiny_tokenizer_dir, tmp_path / "s", labels=["positive", "negative", "neutral"]))
    tok = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    with pytest.raises(ModelError, match=r"label sets differ: teacher \['negative', 'neutral', 'positive'\]"):
        check_compatibility(teacher, tok, other, tok)


def test_vocab_mismatch_is_refused(teacher, tiny_teacher_dir, tmp_path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    other_tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    tok = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    with pytest.raises(ModelError, match=r"tokenizers differ \(vocabulary sizes \d+ vs 7"):
        check_compatibility(teacher, tok, student_from_teacher_layers(teacher, 2), other_tok)


def test_layer_maps():
    assert parse_layer_map("uniform", 3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert parse_layer_map("uniform", 2, 4, include_embeddings=True) == [(0, 0), (1, 2), (2, 4)]
    assert parse_layer_map("1:1, 2:4", 2, 4) == [(1, 1), (2, 4)]
    with pytest.raises(LayerMapError, match=r"item 'a:b' is not of the form STUDENT:TEACHER"):
        parse_layer_map("a:b", 2, 4)
    with pytest.raises(LayerMapError, match=r"pair 3:4 is out of range: the student has hidden states 0..2"):
        parse_layer_map("3:4", 2, 4)
    with pytest.raises(LayerMapError, match="maps one student layer twice"):
        parse_layer_map("1:1,1:2", 2, 4)


def test_projector_only_when_sizes_differ():
    assert LayerProjector(2, 32, 32).proj is None
    proj = LayerProjector(2, 16, 32)
    out = proj([torch.zeros(3, 5, 16), torch.zeros(3, 5, 16)])
    assert [o.shape for o in out] == [torch.Size([3, 5, 32])] * 2


def test_one_tokenizer_loader_for_names_and_folders(tiny_teacher_dir):
    import nlp_reuse.compress
    import nlp_reuse.compress.artifacts

    assert nlp_reuse.compress.load_tokenizer is load_tokenizer is nlp_reuse.compress.artifacts.load_tokenizer
    from_path, from_str = load_tokenizer(tiny_teacher_dir), load_tokenizer(str(tiny_teacher_dir))
    assert from_path.get_vocab() == from_str.get_vocab() == AutoTokenizer.from_pretrained(tiny_teacher_dir).get_vocab()


def test_folder_without_tokenizer_is_refused(tiny_teacher_dir, tmp_path):
    """transformers 5 builds an empty 5-token tokenizer from config.json alone: refused with what the folder holds."""
    from nlp_reuse.compress import check_model_dir

    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_teacher_dir / name, tmp_path / name)
    for load in (load_tokenizer, check_model_dir):
        with pytest.raises(FileNotFoundError, match=rf"No tokenizer in {tmp_path}\.") as err:
            load(str(tmp_path))
        message = str(err.value)
        assert "found:    config.json, model.safetensors\n" in message
        assert f"tokenizer.save_pretrained('{tmp_path}')" in message
        assert f"the teacher's: AutoTokenizer.from_pretrained(TEACHER).save_pretrained('{tmp_path}')" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors_is_refused(tiny_teacher_dir, tmp_path, damage):
    from nlp_reuse.compress import check_model_dir, load_classifier

    folder = shutil.copytree(tiny_teacher_dir, tmp_path / "model")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"0123456789")
    size = weights.stat().st_size
    loaders = {"teacher": load_teacher, "student": lambda p: load_student(p, ["negative", "neutral", "positive"]),
               "model_dir": check_model_dir, "classifier": load_classifier}
    for role, load in loaders.items():
        with pytest.raises(ModelError, match=r"The weights of .*model cannot be read: the file is truncated or corrupt"
                           ) as err:
            load(str(folder))
        message = str(err.value)
        assert f"found:    {weights} ({size:,} bytes): " in message, role
        assert "save the model again with model.save_pretrained(folder), or copy / download the folder again" \
            in message, role
