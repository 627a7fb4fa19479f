"""The two multi-task jobs: fine-tune one shared encoder with a head per task (`nlp-reuse finetune --tasks`), and
distill such a model into a smaller multi-task student (`nlp-reuse distill --tasks`).

As in nlp_reuse.pipeline: arguments, tasks file, output folder and every task's data are checked before any model
is loaded. A run folder holds `joint/` (the joint checkpoint), `tasks/NAME/` (one standard model folder per task),
`report.json` and `run_args.json`; a distillation with `--export` adds `exports/NAME/onnx/` (and `onnx_int8/`).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from accelerate import PartialState
from datasets import DatasetDict, Value, concatenate_datasets
from transformers import AutoConfig, DataCollatorWithPadding, Trainer, set_seed

from nlp_reuse.config import DistillationArguments, DistillScriptArguments, FinetuneArguments
from nlp_reuse.data import describe, tokenize_splits
from nlp_reuse.errors import ConfigError, ModelError, StrategyError, format_error
from nlp_reuse.evaluation import compute_metrics, environment
from nlp_reuse.files import prepare_output_dir, staged_folder, write_json
from nlp_reuse.leak_check import check_adapted_splits
from nlp_reuse.modeling import (
    count_parameters,
    fit_max_length,
    load_for_finetuning,
    load_tokenizer,
    resolve_model_path,
)
from nlp_reuse.multitask.model import (
    EXPORTS_DIR,
    JOINT_DIR,
    TASKS_DIR,
    MultiTaskModel,
    joint_folder,
    load_multitask,
    multitask_student,
    read_multitask_info,
    save_multitask,
)
from nlp_reuse.multitask.tasks import (
    MultiTaskArguments,
    TaskData,
    TasksFile,
    TaskSpec,
    load_task_data,
    load_tasks_file,
)
from nlp_reuse.multitask.training import MultiTaskDistillationTrainer, MultiTaskTrainer, task_probabilities
from nlp_reuse.pipeline import _other_ranks_done, _trainer_args
from nlp_reuse.report import TEST_METRICS, ModelEntry, MultiTaskReport, TaskInfo, TaskResult
from nlp_reuse.run_entries import model_entry
from nlp_reuse.runs import CHECKPOINTS, check_rerun, checkpoint_dir, remove_empty_folders, resolve_resume
from nlp_reuse.strategies import measure_training
from nlp_reuse.student_config import StudentFamilyArguments, TransferSetArguments
from nlp_reuse.tables import render_table

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ shared steps
def tokenize_tasks(spec: TasksFile, data: dict[str, TaskData], tokenizer, config,
                   model_name: str) -> dict[str, DatasetDict]:
    """Each task's splits tokenized at its own max_length (capped to the model), with a `task_ids` column."""
    tokenized = {}
    for task_id, task in enumerate(spec.tasks):
        task.data.max_length = fit_max_length(task.data.max_length, config, model_name)
        splits = tokenize_splits(data[task.name].splits, tokenizer, task.data.max_length)
        # Plain integer labels: the tasks' ClassLabel features differ, and their datasets are concatenated.
        tokenized[task.name] = DatasetDict({
            split: ds.cast_column("label", Value("int64")).add_column("task_ids", [task_id] * len(ds))
            for split, ds in splits.items()})
    return tokenized


def _train(trainer_cls, model: MultiTaskModel, spec: TasksFile, tokenized: dict[str, DatasetDict], tokenizer,
           args, output_dir: Path, **trainer_kwargs):
    """Train `model` on every task's training set, each batch's task drawn by the tasks file's rule."""
    if args.train_sampling_strategy != "random":
        logger.warning("--train_sampling_strategy %s does not apply to multi-task runs: batches are drawn per task "
                       "(sampling: %s in %s).", args.train_sampling_strategy, spec.sampling, spec.source)
    trainer_args = _trainer_args(args, output_dir)
    if trainer_args.ddp_find_unused_parameters is None:
        trainer_args.ddp_find_unused_parameters = True  # each step uses one task's head only
    sizes = [len(tokenized[name]["train"]) for name in spec.names]
    trainer = trainer_cls(
        model=model, args=trainer_args, train_dataset=concatenate_datasets([tokenized[n]["train"] for n in spec.names]),
        eval_dataset={name: tokenized[name]["validation"] for name in spec.names}, processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics, task_sizes=sizes,
        task_probabilities=task_probabilities(sizes, spec.sampling_temperature), **trainer_kwargs)
    with measure_training(args.device) as cost:
        trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    cost.trainable_params, cost.total_params = count_parameters(model, trainable_only=True), count_parameters(model)
    return trainer, cost


def _evaluate(trainer: Trainer, tokenized: dict[str, DatasetDict]) -> dict[str, dict[str, dict]]:
    """Per task, the validation and test metrics (eval_accuracy, ..., test_accuracy, ...)."""
    return {name: {"validation": trainer.evaluate(splits["validation"], metric_key_prefix="eval"),
                   "test": trainer.predict(splits["test"], metric_key_prefix="test").metrics}
            for name, splits in tokenized.items()}


def _sampling(spec: TasksFile, trainer: MultiTaskTrainer) -> dict:
    sampler = trainer.task_sampler
    return {"rule": spec.sampling, "temperature": spec.sampling_temperature,
            "probabilities": {n: round(float(p), 6) for n, p in zip(spec.names, trainer.task_probabilities)},
            "batches_per_epoch": {n: b for n, b in zip(spec.names, sampler.batches_per_task)},
            "batches_drawn": {n: d for n, d in zip(spec.names, sampler.drawn)}}


def _save(model: MultiTaskModel, tokenizer, out: Path, info: dict) -> None:
    """OUT/joint/ and OUT/tasks/NAME/, each written beside its name and swapped in whole."""
    with staged_folder(out / JOINT_DIR) as stage:
        save_multitask(model, stage, tokenizer, info)
    with staged_folder(out / TASKS_DIR) as stage:
        for name in model.task_names:
            model.task_model(name).save_pretrained(stage / name)
            tokenizer.save_pretrained(stage / name)


def _task_info(task: TaskSpec, data: TaskData) -> TaskInfo:
    sizes = describe(data.splits)
    return TaskInfo(dataset=task.data.dataset_name or task.data.train_file, labels=data.labels,
                    text_column=task.data.text_column, num_train=sizes["num_train"],
                    num_validation=sizes["num_validation"], num_test=sizes["num_test"],
                    extra={"max_length": task.data.max_length, **data.extra_train})


def _entry(model: MultiTaskModel, task: TaskSpec, results: dict, folder: Path | None, tokenizer, data: TaskData,
           latency_samples: int, **fields) -> ModelEntry:
    """The report entry of `task`'s model: size, test metrics, batch-1 CPU latency (after every evaluation: this
    moves the model to the CPU)."""
    return model_entry(model.task_model(task.name), results[task.name]["test"], folder, tokenizer,
                       data.splits["test"]["text"][:latency_samples], task.data.max_length, **fields)


def _joint_summary(model: MultiTaskModel, spec: TasksFile) -> dict:
    return {"path": JOINT_DIR, "tasks_file": spec.source, "tasks": spec.names, "params": count_parameters(model),
            "encoder_params": count_parameters(model.encoder)}


def _finish(report: MultiTaskReport, out: Path, run_args: dict) -> dict:
    payload = report.to_dict()
    remove_empty_folders(out / CHECKPOINTS)  # save_strategy "no": Trainer made the folders, nothing is in them
    write_json(out / "report.json", payload)
    write_json(out / "run_args.json", run_args)
    print(format_multitask_table(payload))
    PartialState().wait_for_everyone()
    return payload


def _run_args(spec: TasksFile, args, script=None) -> dict:
    # TrainingArguments.to_dict() masks tokens (hub_token -> "<HUB_TOKEN>").
    return {"tasks_file": spec.source, "sampling": spec.sampling, "sampling_temperature": spec.sampling_temperature,
            "tasks": {t.name: dataclasses.asdict(t.data) for t in spec.tasks},
            **({"run": dataclasses.asdict(script)} if script is not None else {}), "training": args.to_dict()}


def format_multitask_table(report: dict) -> str:
    """A multi-task report as an aligned text table: one row per task."""
    drawn = report["sampling"]["batches_drawn"]
    if "distillation" in report:
        header = ("task", "teacher acc", "student acc", "retention", "student macro-F1", "teacher ms", "student ms",
                  "batches")
        rows = [(name, f"{r['teacher']['test']['accuracy']:.4f}", f"{r['student']['test']['accuracy']:.4f}",
                 f"{r['retention']:.4f}", f"{r['student']['test']['macro_f1']:.4f}",
                 f"{r['teacher']['latency_ms']:.2f}", f"{r['student']['latency_ms']:.2f}", str(drawn[name]))
                for name, r in report["tasks"].items()]
        text = render_table(header, rows) + f"\nmean retention (student / teacher accuracy): {report['retention']:.4f}"
        exported = [(name, artefact, entry) for name, r in report["tasks"].items()
                    for artefact, entry in (r.get("artefacts") or {}).items()]
        if exported:
            text += "\n\n" + render_table(
                ("task", "artefact", "test acc", "student acc", "size MB", "latency ms", "deliverable"),
                [(name, f"{EXPORTS_DIR}/{name}/{artefact}", f"{entry['test']['accuracy']:.4f}",
                  f"{report['tasks'][name]['student']['test']['accuracy']:.4f}", f"{entry['size_mb']:.1f}",
                  f"{entry['latency_ms']:.2f}", "yes" if report["tasks"][name]["export"]["deliverable"] == artefact
                  else "") for name, artefact, entry in exported])
        return text
    header = ("task", "classes", "train", "p(batch)", "batches", "val acc", "test acc", "test macro-F1", "latency ms")
    rows = [(name, str(len(r["task"]["labels"])), str(r["task"]["num_train"]),
             f"{report['sampling']['probabilities'][name]:.3f}", str(drawn[name]),
             f"{r['model']['validation']['accuracy']:.4f}", f"{r['model']['test']['accuracy']:.4f}",
             f"{r['model']['test']['macro_f1']:.4f}", f"{r['model']['latency_ms']:.2f}")
            for name, r in report["tasks"].items()]
    return render_table(header, rows)


# ------------------------------------------------------------------------------------------------ fine-tuning
def run_multitask_finetune(tasks_args: MultiTaskArguments, args: FinetuneArguments, command: str = "") -> dict:
    """Fine-tune `args.model_name_or_path` on every task of the tasks file at once: one shared encoder, one head
    per task. Writes OUT/joint/, OUT/tasks/NAME/, OUT/report.json and OUT/run_args.json; returns the report."""
    if args.domain_loss != "none":
        raise ConfigError(format_error(
            "Multi-task fine-tuning has no target domain to align with.", "--domain_loss none",
            f"--domain_loss {args.domain_loss} (--target_unlabeled_file {args.target_unlabeled_file})",
            "drop --domain_loss and --target_unlabeled_file, or align one task in a single-task run"))
    if args.strategy != "full" or args.layerwise_lr_decay != 1.0:
        raise StrategyError(format_error(
            "Multi-task fine-tuning trains the shared encoder and every head.",
            "--strategy full and --layerwise_lr_decay 1.0", f"--strategy {args.strategy}, --layerwise_lr_decay "
            f"{args.layerwise_lr_decay}", "drop those flags (they apply to single-task runs)"))
    spec = load_tasks_file(tasks_args.tasks)
    for task in spec.tasks:
        try:
            check_adapted_splits(args.model_name_or_path, task.data)
        except ConfigError as err:
            raise ConfigError(f"Task {task.name!r} of {spec.source}: {err}") from err
    out = Path(args.output_dir)
    args.resume_from_checkpoint = resolve_resume(out, args.resume_from_checkpoint, name="model")
    out = prepare_output_dir(out, overwrite=check_rerun(out, args.overwrite_output_dir, args.resume_from_checkpoint,
                                                        name="model"))
    data = load_task_data(spec)
    tokenizer = load_tokenizer(args.model_name_or_path)
    config = AutoConfig.from_pretrained(resolve_model_path(args.model_name_or_path))
    tokenized = tokenize_tasks(spec, data, tokenizer, config, args.model_name_or_path)

    set_seed(args.seed)
    model = MultiTaskModel({t.name: load_for_finetuning(args.model_name_or_path, data[t.name].labels)
                            for t in spec.tasks})
    trainer, cost = _train(MultiTaskTrainer, model, spec, tokenized, tokenizer, args, checkpoint_dir(out, "model"))
    results = _evaluate(trainer, tokenized)
    if not trainer.is_world_process_zero():
        return _other_ranks_done()
    _save(model, tokenizer, out, {"model_name_or_path": args.model_name_or_path})
    tasks = {task.name: TaskResult(task=_task_info(task, data[task.name]), models={"model": _entry(
        model, task, results, out / TASKS_DIR / task.name, tokenizer, data[task.name], args.latency_samples,
        name_or_path=args.model_name_or_path, path=f"{TASKS_DIR}/{task.name}",
        validation={k: results[task.name]["validation"][f"eval_{k}"] for k in TEST_METRICS})})
        for task in spec.tasks}
    report = MultiTaskReport(
        tasks=tasks, sampling=_sampling(spec, trainer), joint=_joint_summary(model, spec),
        training_key="finetuning", training={
            "model_name_or_path": args.model_name_or_path, "strategy": args.strategy, **cost.as_dict(),
            "num_train_epochs": args.num_train_epochs, "learning_rate": args.learning_rate,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps, "world_size": args.world_size,
            "seed": args.seed},
        command=command, environment=environment())
    return _finish(report, out, _run_args(spec, args))


# ------------------------------------------------------------------------------------------------ distillation
def _changed_flags(arguments) -> list[str]:
    """The flags of a dataclass of arguments that differ from their defaults."""
    default = type(arguments)()
    return [f"--{f.name}" for f in dataclasses.fields(arguments)
            if getattr(arguments, f.name) != getattr(default, f.name)]


def check_multitask_distillation(script: DistillScriptArguments, args: DistillationArguments,
                                 family: StudentFamilyArguments, transfer: TransferSetArguments) -> str:
    """What multi-task distillation supports (logit KD into a student built from the teacher's layers); returns
    the teacher's path."""
    teachers = script.teacher_model_name_or_path
    teachers = teachers if isinstance(teachers, list) else [teachers]
    found = [f"{len(teachers)} teachers"] if len(teachers) != 1 else []
    found += [f"--student_type {script.student_type}"] if script.student_type != "transformer" else []
    found += [f"--{n}" for n in ("student_config", "student_model_name_or_path", "teacher_cache")
              if getattr(script, n) is not None]
    found += ["--run_baseline true"] if script.run_baseline else []
    found += [f"--{n} {getattr(args, n)}" for n in ("hidden_loss_weight", "attention_loss_weight")
              if getattr(args, n) > 0]
    found += [f"--strategy {args.strategy}"] if args.strategy != "full" else []
    found += [f"--layerwise_lr_decay {args.layerwise_lr_decay}"] if args.layerwise_lr_decay != 1.0 else []
    found += _changed_flags(family) + _changed_flags(transfer)
    if found:
        raise ConfigError(format_error(
            "Multi-task distillation supports logit KD into a student built from the teacher's layers only.",
            "one multi-task teacher, --student_num_layers N, with --temperature, --alpha, --kd_loss and the "
            "training flags", ", ".join(found),
            "drop those flags, or distill one task's folder (TEACHER/tasks/NAME) with a single-task run"))
    return teachers[0]


def _check_teacher_outside_output(out: Path, teacher_joint: Path) -> None:
    teacher = teacher_joint.resolve()
    for name in (JOINT_DIR, TASKS_DIR, EXPORTS_DIR):
        target = (out / name).resolve()
        if teacher == target or target in teacher.parents:
            raise FileExistsError(format_error(
                f"This run would replace {out / name}, which holds its teacher.",
                "a teacher outside the run's joint/, tasks/ and exports/", str(teacher_joint),
                "choose another --output_dir"))


def run_multitask_distillation(tasks_args: MultiTaskArguments, script: DistillScriptArguments,
                               args: DistillationArguments, command: str = "",
                               family: StudentFamilyArguments | None = None,
                               transfer: TransferSetArguments | None = None) -> dict:
    """Distill a multi-task teacher (a `nlp-reuse finetune --tasks` run folder) into a multi-task student that
    keeps `--student_num_layers` of its layers; every head learns from the teacher's head of its task by
    `nlp_reuse.losses.kd_loss`. Writes OUT/joint/, OUT/tasks/NAME/, OUT/report.json (per task: teacher and
    student accuracy, retention, exported artefacts) and OUT/run_args.json, and with `--export` each task's student
    as ONNX (int8 behind the accuracy guard) in OUT/exports/NAME/; returns the report."""
    teacher_path = check_multitask_distillation(script, args, family or StudentFamilyArguments(),
                                                transfer or TransferSetArguments())
    spec = load_tasks_file(tasks_args.tasks)
    teacher_joint = joint_folder(teacher_path)
    teacher_labels = {t["name"]: t["labels"] for t in read_multitask_info(teacher_joint)["tasks"]}
    unknown = [name for name in spec.names if name not in teacher_labels]
    if unknown:
        raise ModelError(format_error(
            f"The teacher {teacher_path} has no head for task(s) of {spec.source}.",
            f"task names among the teacher's: {sorted(teacher_labels)}", ", ".join(unknown),
            "rename the tasks in the tasks file as the teacher's run named them"))
    out = Path(args.output_dir)
    _check_teacher_outside_output(out, teacher_joint)
    args.resume_from_checkpoint = resolve_resume(out, args.resume_from_checkpoint)
    out = prepare_output_dir(out, overwrite=check_rerun(out, args.overwrite_output_dir, args.resume_from_checkpoint))
    data = load_task_data(spec, label_names=teacher_labels)
    if (out / EXPORTS_DIR).exists() and PartialState().is_main_process:  # an earlier run's: never shipped as this one's
        shutil.rmtree(out / EXPORTS_DIR)
        logger.warning("Removed %s of an earlier run (this run's students replace its models).", out / EXPORTS_DIR)
    tokenizer = load_tokenizer(teacher_joint)

    teacher = load_multitask(teacher_joint).subset(spec.names)  # task ids follow the tasks file
    teacher.requires_grad_(False)
    tokenized = tokenize_tasks(spec, data, tokenizer, teacher.task_model(0).config, "the teacher")
    set_seed(args.seed)
    student = multitask_student(teacher, script.student_num_layers)
    trainer, cost = _train(MultiTaskDistillationTrainer, student, spec, tokenized, tokenizer, args,
                           checkpoint_dir(out, "student"), teacher_model=teacher)
    student_results = _evaluate(trainer, tokenized)
    teacher_results = _evaluate(Trainer(model=teacher, args=_trainer_args(args, checkpoint_dir(out, "teacher")),
                                        processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                                        compute_metrics=compute_metrics), tokenized)
    if not trainer.is_world_process_zero():
        return _other_ranks_done()
    _save(student, tokenizer, out, {"teacher": str(teacher_path)})
    # As single-task distill records it: the teacher as typed, and where it is, so that the card finds its report
    # (its base model, its command, its lineage) from any working directory.
    teacher_local = str(Path(teacher_path).resolve()) if Path(teacher_path).is_dir() else None
    tasks = {}
    for task in spec.tasks:
        teacher_folder = teacher_joint.parent / TASKS_DIR / task.name  # its standard folder, for the size on disk
        entries = {
            "teacher": _entry(teacher, task, teacher_results, teacher_folder if teacher_folder.is_dir() else None,
                              tokenizer, data[task.name], args.latency_samples, name_or_path=str(teacher_path),
                              local_path=teacher_local),
            "student": _entry(student, task, student_results, out / TASKS_DIR / task.name, tokenizer,
                              data[task.name], args.latency_samples, path=f"{TASKS_DIR}/{task.name}"),
        }
        retention = round(entries["student"].test["accuracy"] / entries["teacher"].test["accuracy"], 4)
        tasks[task.name] = TaskResult(task=_task_info(task, data[task.name]), models=entries, retention=retention)
    if script.export != "none":
        from nlp_reuse.compress.deliverables import export_student

        for task in spec.tasks:  # each task's student alone, as a single-task run exports its student
            tasks[task.name].artefacts, tasks[task.name].export = export_student(
                out / EXPORTS_DIR / task.name, script.export, args, data[task.name].splits, task.data.max_length,
                model_dir=out / TASKS_DIR / task.name)
    report = MultiTaskReport(
        tasks=tasks, sampling=_sampling(spec, trainer), joint=_joint_summary(student, spec),
        training_key="distillation", training={
            "teacher": str(teacher_path), "student_num_layers": script.student_num_layers,
            "student_init": student.task_model(0).config.nlp_reuse_init, "temperature": args.temperature,
            "alpha": args.alpha, "kd_loss": args.kd_loss, **cost.as_dict(), "num_train_epochs": args.num_train_epochs,
            "learning_rate": args.learning_rate, "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps, "world_size": args.world_size,
            "seed": args.seed},
        command=command, environment=environment(),
        retention=round(sum(t.retention for t in tasks.values()) / len(tasks), 4))
    return _finish(report, out, _run_args(spec, args, script))
