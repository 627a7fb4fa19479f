"""Training-throughput benchmark: nlp_reuse's distillation path against a hand-written loop and a naive Trainer.

A development harness, not part of the installed package: run it from a checkout through
scripts/benchmark_training.py. Each variant runs in its own process (`python -m benchmarks.training_throughput
VARIANT JSON_SPEC`, from the repository root) so its peak memory and compiled state are its own; `run_benchmark`
runs them one after the other, side by side in one call, on random-weight BERT pairs and synthetic fixed-length
data of a chosen shape.
"""

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from itertools import cycle
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from nlp_reuse.config import DistillationArguments
from nlp_reuse.losses import kd_loss
from nlp_reuse.teacher_cache import LOGITS_COLUMN, compute_teacher_logits
from nlp_reuse.trainers import DistillationTrainer

ROOT = Path(__file__).resolve().parents[1]  # the checkout: `-m benchmarks.training_throughput` resolves from here

SHAPES = {
    # name: (hidden, heads, intermediate, teacher layers, student layers)
    "minilm": (384, 12, 1536, 6, 3),
    "bert-base": (768, 12, 3072, 12, 6),
    "tiny": (32, 4, 64, 4, 2),  # for tests
}
VARIANTS = ("hand_finetune", "trainer_finetune", "hand_kd", "naive_trainer_kd", "nlp_reuse_live",
            "nlp_reuse_bf16_teacher", "nlp_reuse_cached", "nlp_reuse_compiled")


@dataclass
class BenchSpec:
    shape: str = "minilm"
    seq_len: int = 64
    batch_size: int = 32
    steps: int = 20
    warmup: int = 3
    precision: str = "fp32"  # fp32 | bf16
    num_labels: int = 6
    vocab_size: int = 30522
    compile_backend: str = "inductor"

    @property
    def device(self) -> str:
        return "cuda" if torch.cuda.is_available() else "cpu"


def build_pair(spec: BenchSpec) -> tuple[BertForSequenceClassification, BertForSequenceClassification]:
    hidden, heads, intermediate, t_layers, s_layers = SHAPES[spec.shape]
    common = dict(vocab_size=spec.vocab_size, hidden_size=hidden, num_attention_heads=heads,
                  intermediate_size=intermediate, num_labels=spec.num_labels, max_position_embeddings=512)
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(BertConfig(num_hidden_layers=t_layers, **common)).eval()
    teacher.requires_grad_(False)
    student = BertForSequenceClassification(BertConfig(num_hidden_layers=s_layers, **common))
    return teacher, student


def synthetic_dataset(spec: BenchSpec) -> Dataset:
    n = spec.batch_size * (spec.steps + spec.warmup)
    g = torch.Generator().manual_seed(0)
    return Dataset.from_dict({
        "input_ids": torch.randint(min(1000, spec.vocab_size // 2), spec.vocab_size, (n, spec.seq_len),
                                   generator=g).tolist(),
        "attention_mask": torch.ones(n, spec.seq_len, dtype=torch.long).tolist(),
        "token_type_ids": torch.zeros(n, spec.seq_len, dtype=torch.long).tolist(),
        "labels": torch.randint(0, spec.num_labels, (n,), generator=g).tolist(),
    })


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _amp(spec: BenchSpec):
    return torch.autocast(device_type=spec.device, dtype=torch.bfloat16, enabled=spec.precision == "bf16")


def hand_loop(spec: BenchSpec, student, teacher, dataset: Dataset) -> float:
    """The reference: a plain torch loop (AdamW, autocast), with the teacher when given. Returns seconds timed."""
    device = spec.device
    student.to(device).train()
    if teacher is not None:
        teacher.to(device, dtype=torch.bfloat16 if spec.precision == "bf16" else torch.float32)
    loader = cycle(DataLoader(dataset.with_format("torch"), batch_size=spec.batch_size, shuffle=True, drop_last=True,
                              collate_fn=default_data_collator))
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-5)
    start = 0.0
    for step in range(spec.warmup + spec.steps):
        if step == spec.warmup:
            _sync(device)
            start = time.perf_counter()
        batch = {k: v.to(device) for k, v in next(loader).items()}
        labels = batch.pop("labels")
        with _amp(spec):
            logits = student(**batch).logits
            if teacher is None:
                loss = F.cross_entropy(logits.float(), labels)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(**batch).logits
                loss = kd_loss(logits, teacher_logits, labels, temperature=2.0, alpha=0.5).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - start


class NaiveDistillationTrainer(Trainer):
    """What a first attempt looks like: the teacher moved to the device and called inside compute_loss, fp32."""

    def __init__(self, *args, teacher=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        with torch.no_grad():
            teacher_logits = self.teacher(**inputs).logits
        soft = F.kl_div(F.log_softmax(outputs.logits / 2.0, -1), F.softmax(teacher_logits / 2.0, -1),
                        reduction="batchmean") * 4.0
        loss = 0.5 * soft + 0.5 * F.cross_entropy(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


class StepTimer(TrainerCallback):
    """Wall time from the end of the warm-up steps to the end of training."""

    def __init__(self, warmup: int, device: str):
        self.warmup, self.device, self.start, self.end = warmup, device, 0.0, 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            _sync(self.device)
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        _sync(self.device)
        self.end = time.perf_counter()


def _trainer_args(spec: BenchSpec, cls=TrainingArguments, **extra):
    return cls(output_dir="/tmp/nlp_reuse_bench", per_device_train_batch_size=spec.batch_size,
               max_steps=spec.warmup + spec.steps, learning_rate=5e-5, logging_steps=10_000, save_strategy="no",
               report_to="none", disable_tqdm=True, use_cpu=spec.device == "cpu", bf16=spec.precision == "bf16",
               dataloader_num_workers=0, seed=0, **extra)


def run_variant(variant: str, spec: BenchSpec) -> dict:
    """Train `spec.warmup + spec.steps` steps with one variant; return its throughput and peak memory."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown benchmark variant {variant!r}: expected one of {list(VARIANTS)}.")
    teacher, student = build_pair(spec)
    dataset = synthetic_dataset(spec)
    extra = {}
    if variant in ("hand_finetune", "hand_kd"):
        seconds = hand_loop(spec, student, teacher if variant == "hand_kd" else None, dataset)
    else:
        timer = StepTimer(spec.warmup, spec.device)
        distill = dict(cls=DistillationArguments, temperature=2.0, alpha=0.5)
        if variant == "trainer_finetune":
            trainer = Trainer(model=student, args=_trainer_args(spec), train_dataset=dataset, callbacks=[timer])
        elif variant == "naive_trainer_kd":
            trainer = NaiveDistillationTrainer(model=student, args=_trainer_args(spec), train_dataset=dataset,
                                               teacher=teacher, callbacks=[timer])
        else:
            if variant == "nlp_reuse_cached":
                start = time.perf_counter()
                teacher.to(spec.device)
                logits = compute_teacher_logits(teacher, dataset, default_data_collator, batch_size=256,
                                                dtype=torch.bfloat16 if spec.precision == "bf16" else None)
                extra["cache_seconds"] = round(time.perf_counter() - start, 3)
                dataset = dataset.add_column(LOGITS_COLUMN, logits.tolist())
            compile_args = ({"torch_compile": True, "torch_compile_backend": spec.compile_backend}
                            if variant == "nlp_reuse_compiled" else {})
            if variant == "nlp_reuse_bf16_teacher":  # fp32 student, bf16 teacher weights (AMX / tensor cores)
                compile_args["teacher_dtype"] = "bfloat16"
            trainer = DistillationTrainer(model=student, teacher_model=teacher,
                                          args=_trainer_args(spec, **distill, **compile_args),
                                          train_dataset=dataset, data_collator=default_data_collator, callbacks=[timer])
        trainer.train()
        seconds = timer.end - timer.start
    samples = spec.steps * spec.batch_size
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if spec.device == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"variant": variant, "samples_per_s": samples / seconds, "step_ms": 1e3 * seconds / spec.steps,
            "peak_mb": round(peak_mb, 1), **extra}


def run_benchmark(spec: BenchSpec, variants: tuple[str, ...] = VARIANTS, timeout_s: int = 1800) -> list[dict]:
    """Every variant in a fresh process, one after the other (never concurrently: they would share the cores)."""
    results = []
    for variant in variants:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.training_throughput", variant,
                               json.dumps(asdict(spec))], capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"Benchmark variant {variant} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def add_ratios(results: list[dict]) -> list[dict]:
    """Ratios of samples/s against the references that exist in `results`."""
    by_name = {r["variant"]: r["samples_per_s"] for r in results}
    for r in results:
        for ref in ("hand_kd", "naive_trainer_kd", "hand_finetune", "trainer_finetune"):
            if ref in by_name:
                r[f"x_{ref}"] = r["samples_per_s"] / by_name[ref]
    return results


def format_results(results: list[dict], spec: BenchSpec) -> str:
    refs = [k for k in ("x_hand_kd", "x_naive_trainer_kd", "x_hand_finetune", "x_trainer_finetune") if k in results[0]]
    header = ["variant", "samples/s", "step ms", "peak MB", *refs]
    rows = [[r["variant"], f"{r['samples_per_s']:.1f}", f"{r['step_ms']:.1f}", f"{r['peak_mb']:.0f}",
             *[f"{r[k]:.2f}" for k in refs]] for r in results]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    title = (f"shape={spec.shape} seq={spec.seq_len} batch={spec.batch_size} precision={spec.precision} "
             f"device={spec.device} threads={torch.get_num_threads()} steps={spec.steps} (+{spec.warmup} warm-up)")
    return "\n".join([title, line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


if __name__ == "__main__":
    print(json.dumps(run_variant(sys.argv[1], BenchSpec(**json.loads(sys.argv[2])))))
