"""The run reports (``report.json``) as dataclasses: what `nlp-reuse distill` and `nlp-reuse finetune` write (with
``--tasks``: a `MultiTaskReport`), and what `nlp-reuse push` and the model card read.

``from_dict`` checks a report once, where it is read: a missing key or a value of the wrong JSON type is a
`ReportError` naming the key's path (``student.test.accuracy``) and the file. Keys a class does not know are kept
in its ``extra`` dict, so a report written by an older or newer version round-trips unchanged:
``RunReport.from_dict(d).to_dict() == d``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from nlp_reuse.errors import format_error
from nlp_reuse.report_fields import (
    FIX,
    INT,
    LAYER_PAIRS,
    NUMBER,
    OBJECT,
    STR,
    STR_LIST,
    Fields,
    ReportError,
    present,
    read_json_object,
)

REPORT_FILE = "report.json"
# The metrics every model entry has on the test split (the card's table and model-index read them).
TEST_METRICS = ("accuracy", "macro_f1")


# ------------------------------------------------------------------------------------------------ the schema


@dataclass
class ModelEntry:
    """One measured model: the teacher, the student, the baseline, an exported artefact, or a fine-tuned model."""

    params: int
    num_layers: int
    size_mb: float  # weights on disk, 10^6 bytes
    test: dict[str, float]  # test-split metrics: TEST_METRICS at least
    latency_ms: float  # batch-1 CPU latency
    name_or_path: str | None = None  # as given (teacher, fine-tuned model) or the folder measured (artefact)
    local_path: str | None = None  # absolute path of a local teacher: the card finds it from any directory
    path: str | None = None  # the model's folder inside the run folder ("student", "onnx_int8", "." for finetune)
    validation: dict[str, float] | None = None  # finetune: validation-split metrics
    train_runtime_s: float | None = None  # finetune
    extra: dict[str, Any] = field(default_factory=dict)

    REQUIRED: ClassVar[tuple[str, ...]] = ("params", "num_layers", "size_mb", "test", "latency_ms")

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str | Path = REPORT_FILE, where: str = "model",
                  require: tuple[str, ...] = ()) -> ModelEntry:
        """Check and read one entry; `where` is its path in the report, `require` names optional keys that this
        entry must have (the teacher's name_or_path)."""
        return cls._read(Fields(d, where, str(source)), require)

    @classmethod
    def _read(cls, f: Fields, require: tuple[str, ...] = ()) -> ModelEntry:
        f.require(cls.REQUIRED + require)
        validation = f.nested("validation")
        return cls(
            params=f.get("params", INT), num_layers=f.get("num_layers", INT), size_mb=f.get("size_mb", NUMBER),
            test=f.nested("test").require(TEST_METRICS).all_of(NUMBER), latency_ms=f.get("latency_ms", NUMBER),
            name_or_path=f.get("name_or_path", STR), local_path=f.get("local_path", STR), path=f.get("path", STR),
            validation=validation.all_of(NUMBER) if validation is not None else None,
            train_runtime_s=f.get("train_runtime_s", NUMBER), extra=f.extra(),
        )

    def to_dict(self) -> dict[str, Any]:
        return present({
            "name_or_path": self.name_or_path, "local_path": self.local_path, "path": self.path,
            "validation": self.validation, "train_runtime_s": self.train_runtime_s, "params": self.params,
            "num_layers": self.num_layers, "size_mb": self.size_mb, "test": self.test, "latency_ms": self.latency_ms,
        }, self.extra)


@dataclass
class TaskInfo:
    """The data a run used: where it came from, its labels in id order, and the size of each split."""

    dataset: str  # Hub id, builtin:NAME, or the training file
    labels: list[str]
    text_column: str
    num_train: int
    num_validation: int
    num_test: int
    extra: dict[str, Any] = field(default_factory=dict)

    REQUIRED: ClassVar[tuple[str, ...]] = (
        "dataset", "labels", "text_column", "num_train", "num_validation", "num_test",
    )

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str | Path = REPORT_FILE, where: str = "task") -> TaskInfo:
        return cls._read(Fields(d, where, str(source)))

    @classmethod
    def _read(cls, f: Fields) -> TaskInfo:
        f.require(cls.REQUIRED)
        return cls(dataset=f.get("dataset", STR), labels=f.get("labels", STR_LIST),
                   text_column=f.get("text_column", STR), num_train=f.get("num_train", INT),
                   num_validation=f.get("num_validation", INT), num_test=f.get("num_test", INT), extra=f.extra())

    def to_dict(self) -> dict[str, Any]:
        return present({"dataset": self.dataset, "labels": self.labels, "text_column": self.text_column,
                         "num_train": self.num_train, "num_validation": self.num_validation,
                         "num_test": self.num_test}, self.extra)


@dataclass
class DistillationSettings:
    """How the student was distilled: the loss settings, the layer map, the init, the strategy and the schedule."""

    temperature: float
    alpha: float
    hidden_loss_weight: float
    hidden_loss: str
    layer_map: list[list[int]]  # [student_layer, teacher_layer] pairs of the hidden-state loss
    student_init: str  # e.g. "teacher_layers:[0, 2, 4]", "random:...", "pretrained:NAME"
    strategy: str
    num_train_epochs: float
    learning_rate: float
    per_device_train_batch_size: int
    seed: int
    # Written since later versions; optional so that older run folders still publish.
    attention_loss_weight: float | None = None
    strategy_config: dict[str, Any] | None = None  # nlp_reuse.strategies.strategy_summary
    gradient_accumulation_steps: int | None = None
    world_size: int | None = None
    distributed_type: str | None = None
    student_type: str | None = None  # transformer | bilstm | static
    kd_loss: str | None = None  # kl | mse
    extra: dict[str, Any] = field(default_factory=dict)

    REQUIRED: ClassVar[tuple[str, ...]] = (
        "temperature", "alpha", "hidden_loss_weight", "hidden_loss", "layer_map", "student_init", "strategy",
        "num_train_epochs", "learning_rate", "per_device_train_batch_size", "seed",
    )

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str | Path = REPORT_FILE,
                  where: str = "distillation") -> DistillationSettings:
        return cls._read(Fields(d, where, str(source)))

    @classmethod
    def _read(cls, f: Fields) -> DistillationSettings:
        f.require(cls.REQUIRED)
        return cls(
            temperature=f.get("temperature", NUMBER), alpha=f.get("alpha", NUMBER),
            hidden_loss_weight=f.get("hidden_loss_weight", NUMBER), hidden_loss=f.get("hidden_loss", STR),
            layer_map=f.get("layer_map", LAYER_PAIRS), student_init=f.get("student_init", STR),
            strategy=f.get("strategy", STR), num_train_epochs=f.get("num_train_epochs", NUMBER),
            learning_rate=f.get("learning_rate", NUMBER),
            per_device_train_batch_size=f.get("per_device_train_batch_size", INT), seed=f.get("seed", INT),
            attention_loss_weight=f.get("attention_loss_weight", NUMBER),
            strategy_config=f.get("strategy_config", OBJECT),
            gradient_accumulation_steps=f.get("gradient_accumulation_steps", INT),
            world_size=f.get("world_size", INT), distributed_type=f.get("distributed_type", STR),
            student_type=f.get("student_type", STR), kd_loss=f.get("kd_loss", STR), extra=f.extra(),
        )

    def to_dict(self) -> dict[str, Any]:
        return present({
            "temperature": self.temperature, "alpha": self.alpha, "hidden_loss_weight": self.hidden_loss_weight,
            "hidden_loss": self.hidden_loss, "attention_loss_weight": self.attention_loss_weight,
            "layer_map": self.layer_map, "student_init": self.student_init, "strategy": self.strategy,
            "strategy_config": self.strategy_config, "num_train_epochs": self.num_train_epochs,
            "learning_rate": self.learning_rate, "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps, "world_size": self.world_size,
            "distributed_type": self.distributed_type, "seed": self.seed, "student_type": self.student_type,
            "kd_loss": self.kd_loss,
        }, self.extra)


@dataclass
class RunReport:
    """``RUN/report.json`` of `nlp-reuse distill`: the teacher, the student (and baseline, and exported artefacts)
    measured on the same test split, how the student was distilled, and how to reproduce the run."""

    task: TaskInfo
    teacher: ModelEntry  # name_or_path is required here
    student: ModelEntry
    retention: float  # student / teacher test accuracy
    distillation: DistillationSettings
    command: str
    baseline: ModelEntry | None = None  # the student's shape trained without the teacher (--run_baseline)
    artefacts: dict[str, ModelEntry] | None = None  # "onnx", "onnx_int8" (--export)
    export: dict[str, Any] | None = None  # what the export decided: deliverable, guard, quantized ops, isa
    training_cost: dict[str, Any] | None = None  # "student"/"baseline" -> TrainingCost.as_dict()
    teacher_cache: dict[str, Any] | None = None  # the logits cache used: fingerprint, path, computed, seconds
    teacher_measurements: dict[str, Any] | None = None  # the measurement-cache key and whether it was reused
    transfer_set: dict[str, Any] | None = None  # augmented / unlabeled texts the teacher labelled (TransferSet)
    vocabulary: dict[str, Any] | None = None  # --trim_vocabulary: before, after, untrimmed_test
    environment: dict[str, Any] | None = None  # nlp_reuse.evaluation.environment()
    extra: dict[str, Any] = field(default_factory=dict)

    REQUIRED: ClassVar[tuple[str, ...]] = ("task", "teacher", "student", "retention", "distillation", "command")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | Path = REPORT_FILE) -> RunReport:
        """Check and read a report object; `source` (the file it came from) is named in every error."""
        f = Fields(d, "", str(source)).require(cls.REQUIRED)
        baseline, artefacts = f.nested("baseline"), f.nested("artefacts")
        return cls(
            task=TaskInfo._read(f.nested("task")),
            teacher=ModelEntry._read(f.nested("teacher"), require=("name_or_path",)),  # the card names it
            student=ModelEntry._read(f.nested("student")),
            retention=f.get("retention", NUMBER),
            distillation=DistillationSettings._read(f.nested("distillation")),
            command=f.get("command", STR),
            baseline=ModelEntry._read(baseline) if baseline is not None else None,
            artefacts=None if artefacts is None else {
                name: ModelEntry._read(artefacts.nested(name)) for name in artefacts.keys()
            },
            export=f.get("export", OBJECT), training_cost=f.get("training_cost", OBJECT),
            teacher_cache=f.get("teacher_cache", OBJECT), teacher_measurements=f.get("teacher_measurements", OBJECT),
            transfer_set=f.get("transfer_set", OBJECT), vocabulary=f.get("vocabulary", OBJECT),
            environment=f.get("environment", OBJECT), extra=f.extra(),
        )

    @classmethod
    def read(cls, path: str | Path) -> RunReport:
        """Read and check a report.json file."""
        return cls.from_dict(read_json_object(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        artefacts = None if self.artefacts is None else {k: e.to_dict() for k, e in self.artefacts.items()}
        return present({
            "task": self.task.to_dict(), "teacher": self.teacher.to_dict(), "student": self.student.to_dict(),
            "baseline": self.baseline.to_dict() if self.baseline is not None else None, "artefacts": artefacts,
            "export": self.export, "retention": self.retention, "distillation": self.distillation.to_dict(),
            "training_cost": self.training_cost, "teacher_cache": self.teacher_cache,
            "teacher_measurements": self.teacher_measurements, "transfer_set": self.transfer_set,
            "vocabulary": self.vocabulary, "command": self.command, "environment": self.environment,
        }, self.extra)


@dataclass
class FinetuneReport:
    """``OUT/report.json`` of `nlp-reuse finetune`: the fine-tuned model measured on the test split, and how it
    was trained (strategy, cost, schedule)."""

    task: TaskInfo
    model: ModelEntry  # name_or_path: the model it was fine-tuned from
    finetuning: dict[str, Any]  # strategy_summary + TrainingCost.as_dict() + epochs, learning rate, batch, seed
    command: str
    environment: dict[str, Any] | None = None
    # --domain_loss: target_unlabeled_file, num_target_texts, domain_loss, domain_loss_weight (nlp_reuse.domain)
    domain_adaptation: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    REQUIRED: ClassVar[tuple[str, ...]] = ("task", "model", "finetuning", "command")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | Path = REPORT_FILE) -> FinetuneReport:
        f = Fields(d, "", str(source)).require(cls.REQUIRED)
        return cls(
            task=TaskInfo._read(f.nested("task")),
            model=ModelEntry._read(f.nested("model"), require=("name_or_path",)),
            finetuning=f.get("finetuning", OBJECT), command=f.get("command", STR),
            environment=f.get("environment", OBJECT), domain_adaptation=f.get("domain_adaptation", OBJECT),
            extra=f.extra(),
        )

    @classmethod
    def read(cls, path: str | Path) -> FinetuneReport:
        return cls.from_dict(read_json_object(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        return present({"task": self.task.to_dict(), "model": self.model.to_dict(), "finetuning": self.finetuning,
                         "domain_adaptation": self.domain_adaptation, "command": self.command,
                         "environment": self.environment}, self.extra)


# Settings multi-task distillation does not record because it allows no other value (nlp_reuse.multitask.pipeline.
# check_multitask_distillation refuses the flags): the single-task view of one task fills them in.
MULTITASK_DISTILLATION_FIXED = {"hidden_loss_weight": 0.0, "hidden_loss": "mse", "attention_loss_weight": 0.0,
                                "layer_map": [], "strategy": "full", "student_type": "transformer"}


@dataclass
class TaskResult:
    """One task of a multi-task report: its data, its measured model(s), and (distillation) the retention."""

    task: TaskInfo
    models: dict[str, ModelEntry]  # "model" (fine-tuning) or "teacher" and "student" (distillation)
    retention: float | None = None  # student / teacher test accuracy
    artefacts: dict[str, ModelEntry] | None = None  # "onnx", "onnx_int8" of the task's student (--export)
    export: dict[str, Any] | None = None  # what that export decided: deliverable, guard, quantized ops, isa
    extra: dict[str, Any] = field(default_factory=dict)

    MODEL_KEYS: ClassVar[tuple[str, ...]] = ("model", "teacher", "student")

    @classmethod
    def _read(cls, f: Fields, distilled: bool) -> TaskResult:
        f.require(("task", "teacher", "student", "retention") if distilled else ("task", "model"))
        present = [key for key in cls.MODEL_KEYS if key in f.keys()]
        artefacts = f.nested("artefacts")
        return cls(
            task=TaskInfo._read(f.nested("task")),
            models={key: ModelEntry._read(f.nested(key), require=("name_or_path",) if key == "teacher" else ())
                    for key in present},
            retention=f.get("retention", NUMBER),
            artefacts=None if artefacts is None else {
                name: ModelEntry._read(artefacts.nested(name)) for name in artefacts.keys()},
            export=f.get("export", OBJECT), extra=f.extra(),
        )

    def to_dict(self) -> dict[str, Any]:
        artefacts = None if self.artefacts is None else {k: e.to_dict() for k, e in self.artefacts.items()}
        return present({"task": self.task.to_dict(), **{name: e.to_dict() for name, e in self.models.items()},
                         "retention": self.retention, "artefacts": artefacts, "export": self.export}, self.extra)


@dataclass
class MultiTaskReport:
    """``OUT/report.json`` of `nlp-reuse finetune --tasks` or `nlp-reuse distill --tasks`: every task's data and
    measured model(s), the rule that drew each batch's task, the joint checkpoint, and how it was trained."""

    tasks: dict[str, TaskResult]  # in the tasks file's order
    # rule, temperature, per-task probabilities, batches per epoch, and the batches this run's sampler drew (all
    # processes together; a run resumed from a checkpoint counts from the epoch it resumes in)
    sampling: dict[str, Any]
    joint: dict[str, Any]  # the "multitask" key: the joint checkpoint's path, tasks, parameters (encoder once)
    training_key: str  # "finetuning" or "distillation"
    training: dict[str, Any]
    command: str
    environment: dict[str, Any] | None
    retention: float | None = None  # mean over tasks (distillation)
    extra: dict[str, Any] = field(default_factory=dict)

    KEY: ClassVar[str] = "multitask"  # the key that tells a multi-task report from a single-task one
    REQUIRED: ClassVar[tuple[str, ...]] = ("multitask", "tasks", "sampling", "command")
    TRAINING_KEYS: ClassVar[tuple[str, ...]] = ("distillation", "finetuning")

    @property
    def distilled(self) -> bool:
        return self.training_key == "distillation"

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | Path = REPORT_FILE) -> MultiTaskReport:
        f = Fields(d, "", str(source)).require(cls.REQUIRED)
        training_key = next((key for key in cls.TRAINING_KEYS if key in f.keys()), None)
        if training_key is None:
            raise ReportError(format_error(
                f"{source} lacks the multi-task run's training settings.",
                f"one of {list(cls.TRAINING_KEYS)} (`nlp-reuse distill --tasks` or `nlp-reuse finetune --tasks`)",
                f"the keys {sorted(f.keys())}", FIX))
        training = f.get(training_key, OBJECT)
        if training_key == "distillation":  # checked here, so that every task's view reads
            DistillationSettings._read(Fields({**MULTITASK_DISTILLATION_FIXED, **training}, training_key,
                                               str(source)))
        f.nested("sampling").require(("rule", "temperature"))  # the card states the rule
        tasks = f.nested("tasks")
        if not tasks.keys():
            raise ReportError(format_error(f"{source}: 'tasks' is empty.", "one entry per task of the run", "{}",
                                           FIX))
        return cls(
            tasks={name: TaskResult._read(tasks.nested(name), training_key == "distillation")
                   for name in tasks.keys()},
            sampling=f.get("sampling", OBJECT), joint=f.get("multitask", OBJECT), training_key=training_key,
            training=training, command=f.get("command", STR), environment=f.get("environment", OBJECT),
            retention=f.get("retention", NUMBER), extra=f.extra(),
        )

    @classmethod
    def read(cls, path: str | Path) -> MultiTaskReport:
        return cls.from_dict(read_json_object(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        return present({"multitask": self.joint, "tasks": {name: r.to_dict() for name, r in self.tasks.items()},
                         "sampling": self.sampling, self.training_key: self.training, "retention": self.retention,
                         "command": self.command, "environment": self.environment}, self.extra)

    def task_report(self, name: str) -> RunReport:
        """Task `name` of a multi-task distillation as a single-task `RunReport`, the report `nlp-reuse push --task`
        publishes and the card reads: that task's data, its teacher head, its student, retention and exported
        artefacts, and the run's distillation settings (with MULTITASK_DISTILLATION_FIXED), command and environment."""
        result = self.tasks[name]
        return RunReport(
            task=result.task, teacher=result.models["teacher"], student=result.models["student"],
            retention=result.retention, artefacts=result.artefacts, export=result.export,
            distillation=DistillationSettings.from_dict({**MULTITASK_DISTILLATION_FIXED, **self.training}),
            command=self.command, environment=self.environment,
        )


__all__ = [
    "MULTITASK_DISTILLATION_FIXED", "REPORT_FILE", "TEST_METRICS", "DistillationSettings", "FinetuneReport",
    "ModelEntry", "MultiTaskReport", "ReportError", "RunReport", "TaskInfo", "TaskResult", "read_json_object",
]
