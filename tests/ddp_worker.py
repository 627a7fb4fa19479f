"""Run by tests/test_ddp.py under `accelerate launch --multi_gpu --num_processes 2` on CPU.

Trains a tiny student with logit + hidden-state distillation (a learned projection) for a few steps and writes
each rank's final student and projector weights, so the test can check both ranks ended identical.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, DataCollatorWithPadding

from nlp_reuse.config import DataArguments, DistillationArguments
from nlp_reuse.data import load_splits, tokenize_splits
from nlp_reuse.modeling import load_teacher, student_from_config
from nlp_reuse.pipeline import release_distributed
from nlp_reuse.trainers import DistillationTrainer


def main(teacher_dir: str, data_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    splits, _ = load_splits(DataArguments(train_file=f"{data_dir}/train.jsonl"),
                            label_names=["negative", "neutral", "positive"])
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    data = tokenize_splits(splits, tokenizer, max_length=16)
    teacher = load_teacher(teacher_dir)
    torch.manual_seed(0)
    student = student_from_config(teacher, {"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2,
                                            "intermediate_size": 32})
    args = DistillationArguments(
        output_dir=str(out / "trainer"), hidden_loss_weight=1.0, use_cpu=True, ddp_find_unused_parameters=False,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2, max_steps=4, learning_rate=1e-3, report_to="none", disable_tqdm=True, seed=0,
    )
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data["train"],
                                  processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer))
    result = trainer.train()
    rank = trainer.args.process_index
    state = {f"student.{k}": v for k, v in trainer.accelerator.unwrap_model(trainer.model).state_dict().items()}
    projector = trainer.accelerator.unwrap_model(trainer.projector)
    state.update({f"projector.{k}": v for k, v in projector.state_dict().items()})
    torch.save(state, out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world_size": trainer.args.world_size, "distributed_type": str(trainer.accelerator.distributed_type),
        "global_step": trainer.state.global_step, "train_loss": result.training_loss}))
    trainer.accelerator.wait_for_everyone()  # no rank exits while another still talks to it


if __name__ == "__main__":
    main(*sys.argv[1:4])
    release_distributed()
