"""Multi-task training: which task each batch comes from (`TaskBatchSampler`), and the Trainers that use it.

Every batch holds examples of one task (MT-DNN, Liu et al. 2019); the task of each batch is drawn with
p_i ∝ n_i^(1/T) (n_i: the task's training examples; T = 1 proportional, T -> inf uniform, the temperature rule of
multilingual BERT / Arivazhagan et al. 2019). An epoch is the sum of the per-task batch counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer

from nlp_reuse.errors import ConfigError, format_error
from nlp_reuse.trainers import DistillationTrainer


def task_probabilities(sizes: Sequence[int], temperature: float = 1.0) -> np.ndarray:
    """p_i ∝ n_i^(1/T) over the tasks' training-set sizes `sizes`."""
    if temperature <= 0:
        raise ValueError(f"The sampling temperature must be > 0, got {temperature}.")
    weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    return weights / weights.sum()


class TaskBatchSampler(Sampler[list[int]]):
    """Batches of one task each over a concatenation of the tasks' datasets (task i: rows offset_i ..
    offset_i + n_i - 1), the task of each batch drawn with `probabilities`.

    Seeded by (seed, epoch), so every process of a data-parallel run draws the same sequence (accelerate then hands
    each process its share of the batches). A task that runs out of batches within an epoch starts a fresh shuffled
    pass over its examples. `drawn` counts the batches drawn per task since the sampler was made.
    """

    def __init__(self, task_sizes: Sequence[int], batch_size: int, probabilities: Sequence[float], seed: int = 0,
                 drop_last: bool = False):
        if drop_last and min(task_sizes) < batch_size:
            raise ValueError(f"With drop_last every task needs a full batch of {batch_size}; task sizes are "
                             f"{list(task_sizes)}. Lower the batch size or keep the last partial batches.")
        self.task_sizes, self.batch_size, self.seed, self.drop_last = list(task_sizes), batch_size, seed, drop_last
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.offsets = np.cumsum([0, *self.task_sizes[:-1]])
        self.batches_per_task = [n // batch_size if drop_last else math.ceil(n / batch_size) for n in task_sizes]
        self.drawn = [0] * len(self.task_sizes)
        self.epoch = 0

    def __len__(self) -> int:
        return sum(self.batches_per_task)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _task_pass(self, task: int, rng: np.random.Generator) -> list[list[int]]:
        """One shuffled pass over task `task`'s rows, as batches in reverse order (popped from the end)."""
        rows = (rng.permutation(self.task_sizes[task]) + self.offsets[task]).tolist()
        batches = [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches[::-1]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        pending = [[] for _ in self.task_sizes]
        for task in rng.choice(len(self.task_sizes), size=len(self), p=self.probabilities):
            if not pending[task]:
                pending[task] = self._task_pass(task, rng)
            self.drawn[task] += 1
            yield pending[task].pop()


class MultiTaskTrainer(Trainer):
    """A `Trainer` over a `MultiTaskModel` whose training batches come from `TaskBatchSampler`.

    `train_dataset` is the concatenation of the tasks' training sets in task order (`task_sizes` rows each) with a
    `task_ids` column; the loss is the task model's own. Evaluate a task by passing its dataset to
    evaluate/predict (`eval_dataset` may be a dict name -> dataset: Trainer then evaluates each under its name).
    """

    def __init__(self, *args, task_sizes: Sequence[int], task_probabilities: Sequence[float], **kwargs):
        super().__init__(*args, **kwargs)
        self.task_sizes, self.task_probabilities = list(task_sizes), list(task_probabilities)
        self.task_sampler: TaskBatchSampler | None = None

    def get_train_dataloader(self) -> DataLoader:
        if self.args.world_size > 1:
            # accelerate's batch-sampler sharding assumes full batches of one size: with each task's last partial
            # batch anywhere in the epoch it drops batches and pads a short one with rows of another task.
            raise ConfigError(format_error(
                "Multi-task training runs in one process.", "a single process (world size 1)",
                f"world size {self.args.world_size}", "launch it without accelerate launch / torchrun (one GPU or "
                "the CPU), or train the tasks in separate runs"))
        self.task_sampler = TaskBatchSampler(
            self.task_sizes, self._train_batch_size, self.task_probabilities, drop_last=self.args.dataloader_drop_last,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)
        dataset = self._remove_unused_columns(self.train_dataset, description="Training")
        return self.accelerator.prepare(DataLoader(
            dataset, batch_sampler=self.task_sampler, collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory))


class MultiTaskDistillationTrainer(MultiTaskTrainer, DistillationTrainer):
    """DistillationTrainer's loss (`nlp_reuse.losses.kd_loss` per example against the frozen teacher) on
    MultiTaskTrainer's batches: the teacher is a MultiTaskModel too, so each batch meets the teacher's head of its
    own task."""
