"""DistillationTrainer on tiny models: what trains, what stays frozen, the loss value, gradient accumulation."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, DataCollatorWithPadding

from conftest import build_tiny_bert
from nlp_reuse.config import DataArguments, DistillationArguments
from nlp_reuse.data import load_splits, tokenize_splits
from nlp_reuse.losses import kd_loss
from nlp_reuse.modeling import load_teacher, student_from_config, student_from_teacher_layers
from nlp_reuse.trainers import DistillationTrainer


@pytest.fixture(scope="module")
def no_dropout_teacher_dir(tiny_tokenizer_dir, tmp_path_factory):
    return build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("t0"), hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def tokenized(tiny_data_dir, tiny_tokenizer_dir):
    splits, _ = load_splits(DataArguments(train_file=str(tiny_data_dir / "train.jsonl"),
                                          test_file=str(tiny_data_dir / "test.jsonl")),
                            label_names=["negative", "neutral", "positive"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    return tokenize_splits(splits, tokenizer, max_length=16), tokenizer


def make_trainer(teacher, student, tokenized, tmp_path, **overrides):
    data, tokenizer = tokenized
    kwargs = dict(output_dir=str(tmp_path),
                  per_device_train_batch_size=8, num_train_epochs=1, learning_rate=1e-3, report_to="none",
                  use_cpu=True, seed=0, disable_tqdm=True, warmup_ratio=0.0)
    kwargs.update(overrides)
    args = DistillationArguments(**kwargs)
    return DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data["train"],
                               eval_dataset=data["test"], processing_class=tokenizer,
                               data_collator=DataCollatorWithPadding(tokenizer))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_student_trains_teacher_stays_frozen(no_dropout_teacher_dir, tokenized, tmp_path):
    teacher = load_teacher(str(no_dropout_teacher_dir))
    student = student_from_teacher_layers(teacher, 2)
    teacher_before, student_before = snapshot(teacher), snapshot(student)
    trainer = make_trainer(teacher, student, tokenized, tmp_path, max_steps=3)
    trainer.train()
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, student_before[k])]
    assert any("encoder.layer.0" in k for k in changed) and any("classifier" in k for k in changed)


def test_loss_matches_formula_on_a_batch(no_dropout_teacher_dir, tokenized, tmp_path):
    teacher = load_teacher(str(no_dropout_teacher_dir))
    student = student_from_teacher_layers(teacher, 2).eval()
    trainer = make_trainer(teacher, student, tokenized, tmp_path, temperature=3.0, alpha=0.25)
    batch = trainer.data_collator([tokenized[0]["train"][i] for i in range(6)])
    loss = trainer.compute_loss(student, dict(batch))
    features = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        expected = kd_loss(student(**features).logits, teacher(**features).logits, batch["labels"], 3.0, 0.25).mean()
    torch.testing.assert_close(loss, expected)
    # Masked (-100) examples drop out of the mean instead of dragging it to zero.
    batch["labels"][:3] = -100
    masked = trainer.compute_loss(student, dict(batch))
    with torch.no_grad():
        per = kd_loss(student(**features).logits, teacher(**features).logits, batch["labels"], 3.0, 0.25)
    torch.testing.assert_close(masked, per[3:].mean())


def test_gradient_accumulation_equals_large_batch(no_dropout_teacher_dir, tokenized, tmp_path):
    """One SGD step on a batch of 8 == one step of 2 x 4 accumulated (SGD, unlike Adam, shows a scale error)."""
    teacher = load_teacher(str(no_dropout_teacher_dir))
    results = []
    for batch, accumulation in ((8, 1), (4, 2)):
        student = student_from_teacher_layers(teacher, 2)
        trainer = make_trainer(teacher, student, tokenized, tmp_path / f"ga{accumulation}", optim="sgd",
                               per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                               max_steps=1, learning_rate=0.5, hidden_loss_weight=1.0, lr_scheduler_type="constant",
                               max_grad_norm=0.0)
        trainer.get_train_dataloader = _sequential_loader(trainer)
        trainer.train()
        results.append(snapshot(student))
    before = snapshot(student_from_teacher_layers(teacher, 2))
    assert any(not torch.equal(results[0][k], before[k]) for k in before)
    for key in before:
        torch.testing.assert_close(results[0][key], results[1][key], atol=1e-6, rtol=1e-5)


def _sequential_loader(trainer):
    """The same examples in the same order whatever the micro-batch size."""
    from torch.utils.data import DataLoader

    def loader():
        ds = trainer._remove_unused_columns(trainer.train_dataset, description="training")
        return trainer.accelerator.prepare(DataLoader(ds, batch_size=trainer.args.per_device_train_batch_size,
                                                      collate_fn=trainer.data_collator, shuffle=False))
    return loader


def test_hidden_distillation_with_projection_trains_projector_not_saved(tiny_teacher_dir, tokenized, tmp_path):
    teacher = load_teacher(str(tiny_teacher_dir))
    student = student_from_config(teacher, {"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2,
                                            "intermediate_size": 32})
    trainer = make_trainer(teacher, student, tokenized, tmp_path, max_steps=3, hidden_loss_weight=1.0,
                           hidden_loss="cosine")
    assert trainer.layer_pairs == [(1, 2), (2, 4)]
    projector_before = snapshot(trainer.projector)
    trainer.train()
    assert any(not torch.equal(v, projector_before[k]) for k, v in trainer.projector.state_dict().items())
    trainer.save_model(str(tmp_path / "student"))
    keys = load_file(str(tmp_path / "student" / "model.safetensors")).keys()
    assert keys and not any("proj" in k for k in keys)
    assert sum(v.numel() for k, v in load_file(str(tmp_path / "student" / "model.safetensors")).items()) == sum(
        p.numel() for p in student.parameters())


def test_attention_transfer_runs(tiny_teacher_dir, tokenized, tmp_path):
    teacher = load_teacher(str(tiny_teacher_dir), attn_implementation="eager")
    student = student_from_teacher_layers(teacher, 2)
    trainer = make_trainer(teacher, student, tokenized, tmp_path, max_steps=2, attention_loss_weight=1.0)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))


def test_evaluation_reports_accuracy(tiny_teacher_dir, tokenized, tmp_path):
    from nlp_reuse.evaluation import compute_metrics

    teacher = load_teacher(str(tiny_teacher_dir))
    trainer = make_trainer(teacher, student_from_teacher_layers(teacher, 2), tokenized, tmp_path,
                           hidden_loss_weight=0.5)
    trainer.compute_metrics = compute_metrics
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_macro_f1" in metrics and metrics["eval_loss"] > 0


def test_half_precision_teacher_is_a_copy_the_callers_model_stays_fp32(no_dropout_teacher_dir, tokenized, tmp_path):
    """--teacher_dtype bfloat16 must not cast the caller's teacher: the report measures it, the baseline copies it."""
    teacher = load_teacher(str(no_dropout_teacher_dir))
    before = snapshot(teacher)
    trainer = make_trainer(teacher, student_from_teacher_layers(teacher, 2), tokenized, tmp_path, max_steps=1,
                           teacher_dtype="bfloat16")
    assert {p.dtype for p in trainer.teacher.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in teacher.parameters()} == {torch.float32}
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    trainer.train()
    assert {p.dtype for p in teacher.parameters()} == {torch.float32}


def _narrow_student(teacher):
    torch.manual_seed(0)
    return student_from_config(teacher, {"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2,
                                         "intermediate_size": 32})


def test_resume_restores_the_projector_and_matches_the_uninterrupted_run(no_dropout_teacher_dir, tokenized, tmp_path):
    """Hidden-state KD through a learned projection (student 16 -> teacher 32), checkpoint at step 2 of 4."""
    teacher = load_teacher(str(no_dropout_teacher_dir))
    hidden = dict(hidden_loss_weight=1.0, max_steps=4, save_strategy="steps", save_steps=2)
    full = make_trainer(teacher, _narrow_student(teacher), tokenized, tmp_path / "full", **hidden)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert (checkpoint / "projector.safetensors").is_file()
    # Zeroed after every optimizer step like the student's (Trainer only zeroes the model it wraps).
    assert all(p.grad is None for p in full.projector.parameters())

    resumed = make_trainer(teacher, _narrow_student(teacher), tokenized, tmp_path / "resumed", **hidden)
    with torch.no_grad():  # whatever the new projector starts as, resuming must replace it
        for p in resumed.projector.parameters():
            p.add_(1.0)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 4
    for a, b in [(full.model, resumed.model), (full.projector, resumed.projector)]:
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_grad_norm_and_clipping_cover_the_projector(no_dropout_teacher_dir, tokenized, tmp_path):
    teacher = load_teacher(str(no_dropout_teacher_dir))
    trainer = make_trainer(teacher, _narrow_student(teacher), tokenized, tmp_path, hidden_loss_weight=1.0,
                           max_grad_norm=1e-3)
    batch = trainer.data_collator([tokenized[0]["train"][i] for i in range(8)])
    trainer.compute_loss(trainer.model, batch).backward()
    params = [*trainer.model.parameters(), *trainer.projector.parameters()]
    expected = torch.sqrt(sum(p.grad.pow(2).sum() for p in params if p.grad is not None))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.projector.parameters())
    assert float(trainer._get_grad_norm(trainer.model)) == pytest.approx(float(expected), rel=1e-5)
    trainer._clip_grad_norm(trainer.model)
    clipped = torch.sqrt(sum(p.grad.pow(2).sum() for p in params if p.grad is not None))
    assert float(clipped) == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("save_only_model", [False, True])
def test_best_checkpoint_brings_its_projector_back(no_dropout_teacher_dir, tokenized, tmp_path, save_only_model):
    teacher = load_teacher(str(no_dropout_teacher_dir))
    trainer = make_trainer(teacher, _narrow_student(teacher), tokenized, tmp_path, hidden_loss_weight=1.0,
                           save_only_model=save_only_model,
                           max_steps=4, save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2,
                           load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=True)
    trainer.train()  # greater_is_better on the loss: the best checkpoint is the earlier, worse one (step 2)
    best = Path(trainer.state.best_model_checkpoint)
    assert best.name == "checkpoint-2"
    saved = load_file(str(best / "projector.safetensors"))
    for name, value in trainer.projector.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
