"""The multi-task model: one shared encoder, one head per task, and its joint checkpoint.

Each task is exactly an `AutoModelForSequenceClassification` of the base architecture whose `base_model` is the one
shared encoder module, so a task saves as a standard model folder with `save_pretrained` and the head code is the
architecture's own (pooler, dropout, classifier: whatever the family has).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from safetensors.torch import load_model, save_model
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.files import listing, write_json
from nlp_reuse.modeling import classifier_labels, label_maps, readable_weights, student_from_teacher_layers

MULTITASK_FILE = "multitask.json"
# Not model.safetensors: `AutoModelForSequenceClassification.from_pretrained(joint)` must fail loudly, not build a
# randomly initialised single-task model from a folder whose weights it cannot read.
JOINT_WEIGHTS = "multitask.safetensors"
JOINT_DIR = "joint"
TASKS_DIR = "tasks"
EXPORTS_DIR = "exports"  # `distill --tasks --export`: exports/NAME/onnx/ (and onnx_int8/) of tasks/NAME/


class MultiTaskModel(nn.Module):
    """One encoder shared by every task and one head per task; `forward` takes a batch of one task (`task_ids`).

    The parameters are registered once: the encoder as `encoder`, task i's head modules under `heads.i`; the
    per-task models are kept unregistered and reach the same modules.
    """

    def __init__(self, task_models: dict[str, PreTrainedModel]):
        super().__init__()
        models = list(task_models.values())
        kinds = {type(m).__name__ for m in models}
        if len(kinds) != 1:
            raise ModelError(f"The tasks' models must share one architecture to share an encoder; found {kinds}.")
        self.encoder = models[0].base_model
        self.heads = nn.ModuleList()
        for model in models:
            setattr(model, model.base_model_prefix, self.encoder)  # model.base_model is now the shared module
            self.heads.append(nn.ModuleDict({n: m for n, m in model.named_children() if m is not self.encoder}))
        self.task_names = list(task_models)
        self._task_models = dict(task_models)  # a plain dict: their parameters are the ones registered above

    def task_model(self, task: str | int) -> PreTrainedModel:
        """Task `task` (name or id) as a standard sequence classifier that uses the shared encoder."""
        return self._task_models[self.task_names[task] if isinstance(task, int) else task]

    def labels(self, task: str | int) -> list[str]:
        return classifier_labels(self.task_model(task).config)

    def train(self, mode: bool = True) -> MultiTaskModel:
        super().train(mode)
        for model in self._task_models.values():  # the unregistered wrappers' own flags too
            model.train(mode)
        return self

    def forward(self, task_ids, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                output_hidden_states=None, output_attentions=None):
        task = int(task_ids[0])
        if bool((task_ids != task).any()):
            raise ValueError(f"A multi-task batch holds examples of one task; found task ids {task_ids.tolist()}. "
                             "Batch with TaskBatchSampler (MultiTaskTrainer does).")
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.task_model(task)(**{k: v for k, v in inputs.items() if v is not None}, labels=labels,
                                     output_hidden_states=output_hidden_states, output_attentions=output_attentions)

    def subset(self, names: list[str]) -> MultiTaskModel:
        """The same modules (nothing copied) for `names`, in that order: task ids follow `names`."""
        return MultiTaskModel({name: self.task_model(name) for name in names})


def multitask_student(teacher: MultiTaskModel, num_layers: int) -> MultiTaskModel:
    """The teacher's embeddings and N evenly spaced layers as the shared encoder, each task's head copied from the
    teacher's (DistilBERT-style, per task; every task's copy of the encoder is the same, the first is kept)."""
    return MultiTaskModel({name: student_from_teacher_layers(teacher.task_model(name), num_layers)
                           for name in teacher.task_names})


def save_multitask(model: MultiTaskModel, folder: str | Path, tokenizer=None, info: dict | None = None) -> Path:
    """The joint checkpoint: the encoder's config, the shared encoder once and every head (JOINT_WEIGHTS), the
    tasks with their labels in id order (MULTITASK_FILE, plus `info`), and the tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.task_model(0).config)
    for key in ("id2label", "label2id"):  # labels are per task, in MULTITASK_FILE
        setattr(config, key, None)
    config.save_pretrained(folder)
    save_model(model, str(folder / JOINT_WEIGHTS))
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    tasks = [{"name": name, "labels": model.labels(name)} for name in model.task_names]
    write_json(folder / MULTITASK_FILE, {**(info or {}), "format_version": 1, "tasks": tasks})
    return folder


def joint_folder(path: str | Path) -> Path:
    """The joint checkpoint of a multi-task run folder (OUT or OUT/joint)."""
    path = Path(path)
    for folder in (path, path / JOINT_DIR):
        if (folder / MULTITASK_FILE).is_file():
            return folder
    raise ModelError(format_error(
        f"{path} holds no multi-task checkpoint.", f"a run folder of `nlp-reuse finetune --tasks` (with "
        f"{JOINT_DIR}/{MULTITASK_FILE}) or its {JOINT_DIR}/ folder",
        listing(path) if path.is_dir() else "no such folder",
        "fine-tune one first: nlp-reuse finetune --tasks tasks.yaml --output_dir OUT, then pass OUT"))


def read_multitask_info(path: str | Path) -> dict:
    """MULTITASK_FILE of a joint checkpoint (OUT or OUT/joint): `tasks` (name, labels) and what the run added."""
    return json.loads((joint_folder(path) / MULTITASK_FILE).read_text(encoding="utf-8"))


def load_multitask(path: str | Path) -> MultiTaskModel:
    """The MultiTaskModel saved by `save_multitask` (OUT or OUT/joint), with every weight restored."""
    folder = joint_folder(path)
    config = AutoConfig.from_pretrained(folder)
    task_models = {}
    for task in read_multitask_info(folder)["tasks"]:
        task_config = copy.deepcopy(config)
        for key, value in label_maps(task["labels"]).items():
            setattr(task_config, key, value)
        task_models[task["name"]] = AutoModelForSequenceClassification.from_config(task_config)
    model = MultiTaskModel(task_models)
    with readable_weights(folder):
        load_model(model, str(folder / JOINT_WEIGHTS))  # strict: a missing or unexpected key is an error
    return model.eval()
