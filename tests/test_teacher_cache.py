"""Teacher-logit cache, half-precision teacher and the compiled path, on tiny models."""

import pytest
import torch
from datasets import DatasetDict
from transformers import AutoTokenizer, DataCollatorWithPadding

from conftest import build_tiny_bert
from nlp_reuse.config import DataArguments, DistillationArguments
from nlp_reuse.data import load_splits, tokenize_splits
from nlp_reuse.modeling import load_teacher, student_from_teacher_layers
from nlp_reuse.teacher_cache import LOGITS_COLUMN, attach_teacher_logits, fingerprint, load_or_compute
from nlp_reuse.trainers import DistillationTrainer

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def setup(tiny_data_dir, tiny_tokenizer_dir, tmp_path_factory):
    teacher_dir = build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("t"), hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    splits, _ = load_splits(DataArguments(train_file=str(tiny_data_dir / "train.jsonl")), label_names=LABELS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    return teacher_dir, splits, tokenizer


def counting(teacher):
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_computed_once_then_reused(setup, tmp_path):
    teacher_dir, splits, tokenizer = setup
    train = tokenize_splits(splits, tokenizer, 16)["train"]
    teacher = load_teacher(str(teacher_dir))
    calls = counting(teacher)
    collator = DataCollatorWithPadding(tokenizer)
    first, info1 = load_or_compute(teacher, train, collator, tmp_path, batch_size=16)
    assert info1["computed"] and len(calls) == 3  # 48 examples / 16
    second, info2 = load_or_compute(teacher, train, collator, tmp_path, batch_size=16)
    assert not info2["computed"] and len(calls) == 3  # no teacher forward the second time
    assert info1["fingerprint"] == info2["fingerprint"]
    assert second[LOGITS_COLUMN] == first[LOGITS_COLUMN]
    with torch.no_grad():
        expected = teacher(**collator([{k: train[0][k] for k in ("input_ids", "token_type_ids", "attention_mask")}]))
    torch.testing.assert_close(torch.tensor(second[0][LOGITS_COLUMN]), expected.logits[0], atol=1e-5, rtol=1e-5)


def test_length_sorted_batches_come_back_in_dataset_order(setup, tmp_path):
    teacher_dir, splits, tokenizer = setup
    texts = ["good", "the movie was really quite dull and the acting was worse " * 2, "fine plot", "bad"] * 3
    dataset = splits["train"].select(range(len(texts))).remove_columns("text").add_column("text", texts)
    train = tokenize_splits(DatasetDict({"train": dataset}), tokenizer, 32)["train"]
    teacher = load_teacher(str(teacher_dir))
    collator = DataCollatorWithPadding(tokenizer)
    cached, _ = load_or_compute(teacher, train, collator, tmp_path, batch_size=5)
    columns = ("input_ids", "token_type_ids", "attention_mask")
    with torch.no_grad():  # each row against the teacher on that example alone
        for i in range(len(texts)):
            alone = teacher(**collator([{k: train[i][k] for k in columns}])).logits[0]
            torch.testing.assert_close(torch.tensor(cached[i][LOGITS_COLUMN]), alone, atol=1e-5, rtol=1e-5)


def test_fingerprint_changes_with_teacher_and_tokenization(setup, tmp_path):
    teacher_dir, splits, tokenizer = setup
    teacher = load_teacher(str(teacher_dir))
    train16 = tokenize_splits(splits, tokenizer, 16)["train"]
    train6 = tokenize_splits(splits, tokenizer, 6)["train"]
    base = fingerprint(teacher, train16)
    assert fingerprint(teacher, train16) == base
    assert fingerprint(teacher, train6) != base  # a shorter max_length truncates: other inputs
    assert fingerprint(teacher, train16.select(range(10))) != base  # other data
    # Logits computed under bf16 autocast must never be reused by an fp32 run, nor the reverse.
    assert fingerprint(teacher, train16, torch.bfloat16) not in (base, fingerprint(teacher, train16, torch.float16))
    assert fingerprint(teacher, train16, None) == base
    with torch.no_grad():
        teacher.classifier.bias[0] += 1e-3
    assert fingerprint(teacher, train16) != base  # other weights
    _, info = load_or_compute(teacher, train16, DataCollatorWithPadding(tokenizer), tmp_path)
    assert info["computed"] and (tmp_path / info["fingerprint"]).is_dir()


def make_trainer(teacher_dir, train, tokenizer, tmp_path, **overrides):
    teacher = load_teacher(str(teacher_dir))
    student = student_from_teacher_layers(teacher, 2).eval()
    kwargs = dict(output_dir=str(tmp_path), use_cpu=True,
                  per_device_train_batch_size=8, max_steps=2, report_to="none", disable_tqdm=True, seed=0)
    kwargs.update(overrides)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=DistillationArguments(**kwargs),
                                  train_dataset=train, processing_class=tokenizer,
                                  data_collator=DataCollatorWithPadding(tokenizer))
    return trainer, teacher


def test_cached_column_survives_column_removal_and_gives_the_live_loss(setup, tmp_path):
    teacher_dir, splits, tokenizer = setup
    train = tokenize_splits(splits, tokenizer, 16)["train"]
    collator = DataCollatorWithPadding(tokenizer)
    cached, _ = load_or_compute(load_teacher(str(teacher_dir)), train, collator, tmp_path / "cache")
    train_cached = attach_teacher_logits(train, cached)
    trainer, teacher = make_trainer(teacher_dir, train_cached, tokenizer, tmp_path)
    kept = trainer._remove_unused_columns(train_cached, description="training")
    assert LOGITS_COLUMN in kept.column_names
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch[LOGITS_COLUMN].shape == (8, 3)
    calls = counting(trainer.teacher)
    cached_loss = trainer.compute_loss(trainer.model, dict(batch))
    assert calls == []  # no teacher forward with cached logits
    live = {k: v for k, v in batch.items() if k != LOGITS_COLUMN}
    live_loss = trainer.compute_loss(trainer.model, live)
    assert len(calls) == 1
    torch.testing.assert_close(cached_loss, live_loss, atol=1e-5, rtol=1e-5)
    trainer.train()
    assert len(calls) == 1  # two training steps, still no teacher forward


def test_bf16_teacher_logits_close_to_fp32(setup, tmp_path):
    teacher_dir, splits, tokenizer = setup
    train = tokenize_splits(splits, tokenizer, 16)["train"]
    trainer, _ = make_trainer(teacher_dir, train, tokenizer, tmp_path, teacher_dtype="bfloat16")
    assert next(trainer.teacher.parameters()).dtype == torch.bfloat16
    fp32 = load_teacher(str(teacher_dir))
    batch = DataCollatorWithPadding(tokenizer)([{k: v for k, v in train[i].items() if k != "label"}
                                                 for i in range(16)])
    with torch.no_grad(), trainer._half_precision():
        half = trainer.teacher(**batch).logits.float()
    with torch.no_grad():
        full = fp32(**batch).logits
    # bf16 keeps 8 bits of mantissa: logits of this tiny model agree to a few hundredths.
    assert (half - full).abs().max().item() < 0.05
    assert torch.equal(half.argmax(-1), full.argmax(-1))


def test_compiled_path_trains(setup, tmp_path):
    teacher_dir, splits, tokenizer = setup
    train = tokenize_splits(splits, tokenizer, 16)["train"]
    trainer, _ = make_trainer(teacher_dir, train, tokenizer, tmp_path, torch_compile=True,
                              torch_compile_backend="aot_eager")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    after = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in after.items())


def test_distill_pipeline_reuses_the_cache(setup, tiny_data_dir, tmp_path):
    from nlp_reuse.commands import distill

    teacher_dir, _, _ = setup
    flags = ["--teacher_model_name_or_path", str(teacher_dir), "--train_file", str(tiny_data_dir / "train.jsonl"),
             "--test_file", str(tiny_data_dir / "test.jsonl"), "--student_num_layers", "2", "--num_train_epochs", "1",
             "--latency_samples", "2", "--teacher_cache", str(tmp_path / "cache"), "--disable_tqdm", "true"]
    first = distill.main([*flags, "--output_dir", str(tmp_path / "a")])
    second = distill.main([*flags, "--output_dir", str(tmp_path / "b")])
    assert first["teacher_cache"]["computed"] and not second["teacher_cache"]["computed"]
    assert first["teacher_cache"]["fingerprint"] == second["teacher_cache"]["fingerprint"]
    assert first["student"]["test"] == second["student"]["test"]  # same seed, same cached targets
