"""Multi-task fine-tuning and distillation (MT-DNN, Liu et al. 2019; MT-DNN KD, Liu et al. 2019): one shared encoder,
one classification head per task, several datasets at once.

- `tasks`: the tasks file (`--tasks tasks.yaml`), each task's data, and the `--tasks` side of the command line
- `model`: `MultiTaskModel` (each task a standard sequence classifier over the shared encoder), its joint checkpoint
- `training`: `TaskBatchSampler` (one task per batch, p_i ∝ n_i^(1/T)) and the Trainers that use it
- `pipeline`: `run_multitask_finetune` and `run_multitask_distillation`
"""

from nlp_reuse.multitask.model import MultiTaskModel, load_multitask, multitask_student, save_multitask
from nlp_reuse.multitask.pipeline import run_multitask_distillation, run_multitask_finetune
from nlp_reuse.multitask.tasks import MultiTaskArguments, TasksFile, load_tasks_file, parse_multitask_args
from nlp_reuse.multitask.training import (
    MultiTaskDistillationTrainer,
    MultiTaskTrainer,
    TaskBatchSampler,
    task_probabilities,
)

__all__ = [
    "MultiTaskArguments", "MultiTaskDistillationTrainer", "MultiTaskModel", "MultiTaskTrainer", "TaskBatchSampler",
    "TasksFile", "load_multitask", "load_tasks_file", "multitask_student", "parse_multitask_args",
    "run_multitask_distillation", "run_multitask_finetune", "save_multitask", "task_probabilities",
]
