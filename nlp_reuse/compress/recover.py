"""Recovery by distillation: after pruning, and under quantization-aware training, the student learns again from
the teacher (`DistillationTrainer`: `alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE`), not from the labels
alone. The teacher's logits on the training texts are computed once (`teacher_logits_for`) and ride along in the
dataset, so importance scoring, pruning recovery and QAT share one teacher pass.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding

from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.predict import predict_logits
from nlp_reuse.teacher_cache import LOGITS_COLUMN

logger = logging.getLogger(__name__)


def teacher_logits_for(teacher: torch.nn.Module, tokenizer, texts: list[str], *, max_length: int = 128,
                       batch_size: int = 64) -> np.ndarray:
    """(len(texts), num_labels) float32 logits of the frozen teacher, in the order of `texts`."""
    teacher.eval()
    return predict_logits(teacher, list(texts), tokenizer=tokenizer, batch_size=batch_size, max_length=max_length,
                          desc="Teacher logits")


def _check_recovery_inputs(texts: list[str], labels: list[int], teacher_logits: np.ndarray, num_labels: int) -> None:
    if not texts or len(texts) != len(labels) or len(texts) != len(teacher_logits):
        raise ModelError(format_error(
            "Recovery by distillation needs labelled texts with the teacher's logits.",
            "as many labels and teacher-logit rows as texts, at least one",
            f"{len(texts)} texts, {len(labels)} labels, {len(teacher_logits)} teacher-logit rows",
            "pass --train_file with text and label columns",
        ))
    width = np.asarray(teacher_logits).shape[-1]
    if width != num_labels:
        raise ModelError(format_error(
            "Teacher and student disagree on the number of labels.", f"{num_labels} teacher logits per text",
            f"{width}", "use the teacher the student was distilled from",
        ))


def distill_recover(student: torch.nn.Module, teacher: torch.nn.Module, tokenizer, texts: list[str],
                    labels: list[int], teacher_logits: np.ndarray, *, num_train_epochs: float = 1.0,
                    learning_rate: float = 3e-5, temperature: float = 2.0, alpha: float = 0.5, batch_size: int = 32,
                    max_length: int = 128, seed: int = 42, output_dir: str | Path | None = None,
                    stage: str = "recovery", progress: bool = True) -> torch.nn.Module:
    """Train `student` in place on the distillation loss for `num_train_epochs` (teacher frozen, its logits given).

    Nothing is written to disk unless `output_dir` is given (checkpoints are off either way); `progress` shows
    Trainer's progress bar. Returns the student in eval mode.
    """
    from nlp_reuse.config import DistillationArguments
    from nlp_reuse.trainers import DistillationTrainer

    _check_recovery_inputs(texts, labels, teacher_logits, student.config.num_labels)
    encodings = tokenizer(list(texts), truncation=True, max_length=max_length)
    columns = {name: encodings[name] for name in encodings.keys()}
    dataset = Dataset.from_dict({**columns, "labels": [int(x) for x in labels],
                                 LOGITS_COLUMN: np.asarray(teacher_logits, dtype=np.float32).tolist()})
    with tempfile.TemporaryDirectory(prefix=f"nlp_reuse_{stage}_") as tmp:
        args = DistillationArguments(
            output_dir=str(output_dir or tmp), num_train_epochs=num_train_epochs, learning_rate=learning_rate,
            per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size, temperature=temperature,
            alpha=alpha, save_strategy="no", eval_strategy="no", report_to=[], logging_strategy="no", seed=seed,
            disable_tqdm=not progress, dataloader_pin_memory=torch.cuda.is_available(),
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=dataset,
                                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
        result = trainer.train()
    logger.info("%s: %.2f epochs of distillation, final training loss %.4f", stage, num_train_epochs,
                result.training_loss)
    return student.eval()


__all__ = ["distill_recover", "teacher_logits_for"]
