"""The two jobs the scripts run: fine-tune a classifier, and distill a teacher into a student (with a baseline).

Order matters: arguments, output folder and data are checked before any model is loaded, and models and
tokenizers are checked against each other before any training step.
"""

import copy
import dataclasses
import logging
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import DatasetDict
from transformers import AutoConfig, DataCollatorWithPadding, PreTrainedModel, Trainer, set_seed

from nlp_reuse import measurement_cache
from nlp_reuse.config import (
    DataArguments,
    DistillationArguments,
    DistillScriptArguments,
    FinetuneArguments,
    NlpReuseTrainingArguments,
)
from nlp_reuse.data import load_splits_with_extra, tokenize_splits
from nlp_reuse.domain import DomainAdaptationTrainer, load_target_texts, tokenize_target_texts
from nlp_reuse.ensemble import check_ensemble_options, ensemble_entry, load_ensemble, teachers_of
from nlp_reuse.evaluation import compute_metrics, environment, format_table
from nlp_reuse.families import build_student_family
from nlp_reuse.files import prepare_output_dir, write_json
from nlp_reuse.leak_check import check_adapted_splits
from nlp_reuse.modeling import (
    check_compatibility,
    classifier_labels,
    fit_max_length,
    load_for_finetuning,
    load_student,
    load_teacher,
    load_tokenizer,
    resolve_model_path,
    student_from_config,
    student_from_teacher_layers,
)
from nlp_reuse.report import TEST_METRICS, DistillationSettings, FinetuneReport, ModelEntry, RunReport
from nlp_reuse.run_entries import _run_args, _task_entry, extra_train_entry, model_entry
from nlp_reuse.runs import (
    CHECKPOINTS,
    check_rerun,
    checkpoint_dir,
    clear_run_artefacts,
    remove_empty_folders,
    resolve_resume,
    save_final,
)
from nlp_reuse.strategies import (
    TrainingCost,
    apply_strategy,
    check_strategy_combination,
    finetune_features,
    measure_training,
    save_trained_model,
    strategy_summary,
    strategy_trainer_kwargs,
)
from nlp_reuse.student_config import StudentFamilyArguments, TransferSetArguments, check_family_options
from nlp_reuse.teacher_cache import with_teacher_cache
from nlp_reuse.trainers import DistillationTrainer, resolve_teacher_dtype
from nlp_reuse.transfer import build_transfer_set, trim_student, with_transfer_examples

logger = logging.getLogger(__name__)


def _trainer_args(args: NlpReuseTrainingArguments, output_dir: Path) -> NlpReuseTrainingArguments:
    """A copy of `args` for one Trainer: its own folder, Hub pushes left to nlp_reuse.hub (deliverables only), and
    no token: Trainer pickles its arguments into training_args.bin beside the model and in every checkpoint."""
    trainer_args = copy.copy(args)
    trainer_args.output_dir = str(output_dir)
    trainer_args.push_to_hub = False
    trainer_args.hub_token = None
    return trainer_args


def run_finetune(data_args: DataArguments, args: FinetuneArguments, command: str = "") -> dict:
    """Fine-tune `args.model_name_or_path` on the data under `args.strategy`; save a standard model folder with
    report.json in it (lora/ia3: also OUT/adapter/; features: OUT/encoder/ + the fitted linear layer). With
    --domain_loss, every step also aligns a batch of --target_unlabeled_file texts (nlp_reuse.domain)."""
    check_strategy_combination(args)
    check_adapted_splits(args.model_name_or_path, data_args)
    out = Path(args.output_dir)
    args.resume_from_checkpoint = resolve_resume(out, args.resume_from_checkpoint, name="model")
    out = prepare_output_dir(out, overwrite=check_rerun(out, args.overwrite_output_dir, args.resume_from_checkpoint,
                                                        name="model"))
    splits, labels, num_extra = load_splits_with_extra(data_args)
    extra_train = extra_train_entry(data_args, num_extra)
    target_texts = None if args.domain_loss == "none" else load_target_texts(
        args.target_unlabeled_file, data_args.text_column, data_args.text_pair_column)
    tokenizer = load_tokenizer(args.model_name_or_path)
    data_args.max_length = fit_max_length(
        data_args.max_length, AutoConfig.from_pretrained(resolve_model_path(args.model_name_or_path)),
        args.model_name_or_path)
    set_seed(args.seed)
    tokenized = tokenize_splits(splits, tokenizer, data_args.max_length)
    # Tokenized like the source texts, before the model loads.
    domain_kwargs = {} if target_texts is None else {
        "target_dataset": tokenize_target_texts(target_texts, tokenizer, data_args.max_length)}

    if args.strategy == "features":
        model, validation, test, cost = finetune_features(args, tokenized, labels, tokenizer, out)
        if args.process_index != 0:
            return _other_ranks_done()
    else:
        applied = apply_strategy(load_for_finetuning(args.model_name_or_path, labels), args)
        trainer = (DomainAdaptationTrainer if domain_kwargs else Trainer)(
            model=applied.model, args=_trainer_args(args, checkpoint_dir(out, "model")),
            train_dataset=tokenized["train"],
            eval_dataset=tokenized["validation"], processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
            **strategy_trainer_kwargs(applied, args), **domain_kwargs,
        )
        with measure_training(args.device) as cost:
            trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        cost.trainable_params, cost.total_params = applied.trainable_params, applied.total_params
        model = save_trained_model(applied, trainer, out, out / "adapter", merge=args.merge_adapter)
        validation = trainer.evaluate()
        test = trainer.predict(tokenized["test"], metric_key_prefix="test").metrics
        if not trainer.is_world_process_zero():
            return _other_ranks_done()
    report = FinetuneReport(
        task=_task_entry(data_args, labels, splits, extra_train),
        model=model_entry(
            model, test, out, tokenizer, splits["test"]["text"][: args.latency_samples],
            data_args.max_length, name_or_path=args.model_name_or_path, path=".",
            validation={k: validation[f"eval_{k}"] for k in TEST_METRICS},
            train_runtime_s=round(cost.train_runtime_s, 2),
        ),
        finetuning={**strategy_summary(args), **cost.as_dict(), "num_train_epochs": args.num_train_epochs,
                    "learning_rate": args.learning_rate, "per_device_train_batch_size":
                    args.per_device_train_batch_size, "seed": args.seed},
        domain_adaptation=None if target_texts is None else {
            "target_unlabeled_file": args.target_unlabeled_file, "num_target_texts": len(target_texts),
            "domain_loss": args.domain_loss, "domain_loss_weight": args.domain_loss_weight},
        command=command, environment=environment(),
    ).to_dict()
    remove_empty_folders(out / CHECKPOINTS)  # save_strategy "no": Trainer made the folders, nothing is in them
    write_json(out / "report.json", report)
    write_json(out / "run_args.json", _run_args(data_args, args))
    print(format_table(report))
    PartialState().wait_for_everyone()
    return report


def _other_ranks_done() -> dict:
    """Non-main ranks wait for the main one to finish its report: a rank that exits early can abort gloo."""
    PartialState().wait_for_everyone()
    return {}


def release_distributed() -> None:
    """End of a script: tear the process group down on every rank (call once, when no run follows)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def build_student(script: DistillScriptArguments, family: StudentFamilyArguments, seed: int,
                  teacher: PreTrainedModel, teacher_tokenizer, labels: list[str], vectors=None,
                  **model_kwargs) -> tuple[PreTrainedModel, object]:
    """The student named by the arguments, and its tokenizer (seeded, so a baseline gets the same init).
    `vectors`: a bilstm/static student's start embeddings when the caller already has them (the baseline)."""
    set_seed(seed)
    if script.student_type != "transformer":
        student = build_student_family(
            script.student_type, teacher, teacher_tokenizer,
            embedding_dim=family.student_embedding_dim or teacher.config.hidden_size,
            hidden_size=family.student_hidden_size, embedding_init=family.student_embedding_init,
            classifier_hidden=family.student_classifier_hidden, pooling=family.student_pooling, vectors=vectors,
        )
        return student, teacher_tokenizer
    if script.student_num_layers is not None:
        return student_from_teacher_layers(teacher, script.student_num_layers), teacher_tokenizer
    if script.student_config is not None:
        return student_from_config(teacher, script.student_config), teacher_tokenizer
    student = load_student(script.student_model_name_or_path, labels, **model_kwargs)
    student.config.nlp_reuse_init = f"pretrained:{script.student_model_name_or_path}"
    return student, load_tokenizer(script.student_model_name_or_path)


def run_distillation(data_args: DataArguments, script: DistillScriptArguments, args: DistillationArguments,
                     command: str = "", family: StudentFamilyArguments | None = None,
                     transfer: TransferSetArguments | None = None) -> dict:
    """Distill the teacher into the student (and, with --run_baseline, train the student without the teacher).

    Writes RUN/student/ (and RUN/baseline/) model folders and RUN/report.json; returns the report. With
    --strategy lora/ia3 the adapters go to RUN/student_adapter/ (RUN/baseline_adapter/) and the merged models
    to RUN/student/ (RUN/baseline/). `transfer` adds teacher-labelled texts to the student's training set (the
    baseline trains on the gold-labelled texts only); `family` sizes bilstm/static students and trims vocabularies.
    """
    family, transfer = family or StudentFamilyArguments(), transfer or TransferSetArguments()
    check_strategy_combination(args)
    check_family_options(script.student_type, family, args.hidden_loss_weight, args.attention_loss_weight,
                         args.strategy)
    if script.student_model_name_or_path is not None:
        check_adapted_splits(script.student_model_name_or_path, data_args, flag="--student_model_name_or_path")
    out = Path(args.output_dir)
    args.resume_from_checkpoint = resolve_resume(out, args.resume_from_checkpoint)
    out = prepare_output_dir(out, overwrite=check_rerun(out, args.overwrite_output_dir, args.resume_from_checkpoint))
    teacher_names = script.teacher_model_name_or_path
    check_ensemble_options(teacher_names, args)
    teacher_paths = [resolve_model_path(name) for name in teacher_names]
    teacher_path = teacher_paths[0]  # a student built from teacher layers (or embeddings) takes the first teacher's
    labels = classifier_labels(AutoConfig.from_pretrained(teacher_path))
    if labels is None:
        load_teacher(teacher_path)  # raises the "fine-tune it first" error
    splits, labels, num_extra = load_splits_with_extra(data_args, label_names=labels)
    extra_train = extra_train_entry(data_args, num_extra)
    teacher_tokenizer = load_tokenizer(teacher_path)
    transfer_set = build_transfer_set(transfer, list(splits["train"]["text"]), teacher_tokenizer.mask_token,
                                      data_args.split_seed, data_args.text_column,
                                      has_pairs="text_pair" in splits["train"].column_names)
    # Attention maps are only returned by the eager attention implementation.
    model_kwargs = {"attn_implementation": "eager"} if args.attention_loss_weight > 0 else {}
    teacher = load_teacher(teacher_path, **model_kwargs)
    # What the student learns from: the teacher, or the ensemble of all (checked: one label order, one tokenizer).
    kd_teacher = teacher if len(teacher_paths) == 1 else load_ensemble(
        teacher, teacher_tokenizer, teacher_names, teacher_paths, script.teacher_weights, args)
    student, student_tokenizer = build_student(script, family, args.seed, teacher, teacher_tokenizer, labels,
                                               **model_kwargs)
    check_compatibility(teacher, teacher_tokenizer, student, student_tokenizer)
    teacher_labels = ["the teacher"] if len(teacher_names) == 1 else [f"the teacher {n}" for n in teacher_names]
    for name, config in [*((n, t.config) for n, t in zip(teacher_labels, teachers_of(kd_teacher))),
                         ("the student", student.config)]:
        data_args.max_length = fit_max_length(data_args.max_length, config, name)
    student_init = student.config.nlp_reuse_init
    start_embeddings = (student.get_input_embeddings().weight.detach().clone()
                        if script.student_type != "transformer" and script.run_baseline else None)
    applied = apply_strategy(student, args)
    tokenized = tokenize_splits(splits, teacher_tokenizer, data_args.max_length)
    collator = DataCollatorWithPadding(teacher_tokenizer)
    common = {"train_dataset": tokenized["train"], "eval_dataset": tokenized["validation"],
              "processing_class": teacher_tokenizer, "data_collator": collator, "compute_metrics": compute_metrics}

    kd_train = with_transfer_examples(tokenized["train"], transfer_set, teacher_tokenizer, data_args.max_length)
    cache_info = None
    if script.teacher_cache is not None:
        kd_train, cache_info = with_teacher_cache(args, script.teacher_cache, kd_teacher, kd_train, collator,
                                                  resolve_teacher_dtype(args))
    if PartialState().is_main_process:
        # Only now, with every input checked: a resumed run keeps the student's checkpoints it resumes from.
        clear_run_artefacts(out, keep=(CHECKPOINTS,) if args.resume_from_checkpoint else (),
                            inputs=(*teacher_paths, script.teacher_cache, args.resume_from_checkpoint))
    PartialState().wait_for_everyone()

    trainer = DistillationTrainer(model=applied.model, teacher_model=kd_teacher,
                                  args=_trainer_args(args, checkpoint_dir(out, "student")),
                                  **{**common, "train_dataset": kd_train}, **strategy_trainer_kwargs(applied, args))
    # Trimming keeps the tokens of the texts the student learnt from; the baseline keeps the same ones.
    trim = (list(splits["train"]["text"]) + transfer_set.texts) if family.trim_vocabulary else None
    test = _TestSplit(tokenized["test"], splits["test"], data_args.max_length)
    student = _train_save_test(trainer, applied, out, "student", test, args.resume_from_checkpoint, trim=trim)
    # The teacher's numbers only change with the teacher, the test data or the settings: reuse them when cached.
    measurement_key, reused = measurement_cache.lookup(script.teacher_cache, args, data_args.max_length,
                                                       kd_teacher, tokenized["test"])
    if reused is None:
        teacher_test = Trainer(model=kd_teacher, args=_trainer_args(args, checkpoint_dir(out, "teacher")),
                               **common).predict(tokenized["test"], metric_key_prefix="test").metrics
    baseline = None
    if script.run_baseline:  # the same student, init and budget, without the teacher
        # The student's start embeddings are the baseline's: no second pass of the teacher over the vocabulary.
        baseline_applied = apply_strategy(build_student(script, family, args.seed, teacher, teacher_tokenizer,
                                                        labels, start_embeddings, **model_kwargs)[0], args)
        baseline_trainer = Trainer(model=baseline_applied.model,
                                   args=_trainer_args(args, checkpoint_dir(out, "baseline")), **common,
                                   **strategy_trainer_kwargs(baseline_applied, args))
        # --resume_from_checkpoint names a student checkpoint; the baseline reruns.
        baseline = _train_save_test(baseline_trainer, baseline_applied, out, "baseline", test, trim=trim)
    if not trainer.is_world_process_zero():
        return _other_ranks_done()

    entry = {"tokenizer": teacher_tokenizer, "latency_texts": splits["test"]["text"][: args.latency_samples],
             "max_length": data_args.max_length}
    measured = (ModelEntry.from_dict(reused, source=measurement_cache.entry_path(script.teacher_cache,
                                                                                 measurement_key), where="teacher")
                if reused is not None else
                model_entry(teacher, teacher_test, teacher_path, **entry) if kd_teacher is teacher else
                ensemble_entry(kd_teacher, teacher_paths, teacher_test, tokenized["test"], collator, **entry))
    if measurement_key is not None and reused is None:
        measurement_cache.write_measurements(script.teacher_cache, measurement_key, measured.to_dict())
    report = RunReport(
        task=_task_entry(data_args, labels, splits, extra_train),
        teacher=dataclasses.replace(measured, name_or_path=teacher_names[0], local_path=str(
            Path(teacher_path).resolve()) if Path(teacher_path).is_dir() else None),
        student=model_entry(student.model, student.test, out / "student", path="student",
                            **{**entry, "tokenizer": student.tokenizer}),
        baseline=None if baseline is None else model_entry(
            baseline.model, baseline.test, out / "baseline", path="baseline",
            **{**entry, "tokenizer": baseline.tokenizer}),
        retention=0.0,  # below, from the measured entries
        distillation=DistillationSettings(
            temperature=args.temperature, alpha=args.alpha, hidden_loss_weight=args.hidden_loss_weight,
            hidden_loss=args.hidden_loss, attention_loss_weight=args.attention_loss_weight,
            layer_map=[list(p) for p in trainer.layer_pairs], student_init=student_init,
            strategy=args.strategy, strategy_config=strategy_summary(args), num_train_epochs=args.num_train_epochs,
            learning_rate=args.learning_rate, per_device_train_batch_size=args.per_device_train_batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps, world_size=args.world_size,
            distributed_type=PartialState().distributed_type.value, seed=args.seed,
            student_type=script.student_type, kd_loss=args.kd_loss,
        ),
        training_cost={"student": student.cost.as_dict(),
                       **({"baseline": baseline.cost.as_dict()} if baseline is not None else {})},
        teacher_cache=cache_info,
        teacher_measurements=None if measurement_key is None else {"key": measurement_key,
                                                                   "reused": reused is not None},
        transfer_set=transfer_set.to_dict() if transfer.enabled else None,
        vocabulary=None if student.vocabulary is None else {
            **student.vocabulary, **({"baseline_untrimmed_test": baseline.vocabulary["untrimmed_test"]}
                                     if baseline is not None else {})},
        command=command, environment=environment(),
    )
    report.retention = round(report.student.test["accuracy"] / report.teacher.test["accuracy"], 4)
    if script.export != "none":
        from nlp_reuse.compress.deliverables import export_student

        report.artefacts, report.export = export_student(out, script.export, args, splits, data_args.max_length)
    remove_empty_folders(out / CHECKPOINTS)  # save_strategy "no": Trainer made the folders, nothing is in them
    report = report.to_dict()
    write_json(out / "report.json", report)
    write_json(out / "run_args.json", _run_args(data_args, args, script))
    print(format_table(report))
    if args.push_to_hub:
        from nlp_reuse.hub import push_from_training_args

        print(f"Pushed to {push_from_training_args(str(out), args)}")
    PartialState().wait_for_everyone()
    return report


@dataclasses.dataclass
class _Trained:
    model: PreTrainedModel
    test: dict  # Trainer.predict metrics on the test split (test_accuracy, ...)
    cost: TrainingCost
    tokenizer: object  # the teacher's, or the trimmed one
    vocabulary: dict | None = None  # --trim_vocabulary: sizes and the untrimmed model's test metrics


@dataclasses.dataclass
class _TestSplit:
    tokenized: object  # Dataset, tokenized with the teacher's tokenizer
    raw: object  # Dataset with the texts, for a trimmed tokenizer
    max_length: int


def _train_save_test(trainer: Trainer, applied, out: Path, name: str, test: _TestSplit,
                     resume: str | None = None, trim: list[str] | None = None) -> _Trained:
    """Train (from `resume` when given), trim the vocabulary to the texts `trim` when given, save RUN/<name>/
    whole, and measure the test split: the one sequence the student and the baseline share."""
    with measure_training(trainer.args.device) as cost:
        trainer.train(resume_from_checkpoint=resume)
    cost.trainable_params, cost.total_params = applied.trainable_params, applied.total_params
    tokenizer, vocabulary, test_dataset = trainer.processing_class, None, test.tokenized
    if trim is not None:
        # A plain Trainer: the distillation trainer's evaluation would run the teacher for a loss nobody reads, and
        # the trimmed ids below mean nothing to the teacher.
        trainer = Trainer(model=trainer.model, args=trainer.args, processing_class=tokenizer,
                          data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics)
        untrimmed = trainer.predict(test_dataset, metric_key_prefix="test").metrics
        trimmed = trim_student(trainer.model, tokenizer, trim, {k: untrimmed[f"test_{k}"] for k in TEST_METRICS})
        tokenizer, vocabulary = trimmed.tokenizer, trimmed.vocabulary
        trainer.model, trainer.processing_class = trimmed.model, tokenizer
        trainer.data_collator = DataCollatorWithPadding(tokenizer)
        test_dataset = tokenize_splits(DatasetDict({"test": test.raw}), tokenizer, test.max_length)["test"]
    model = save_final(applied, trainer, out / name, out / f"{name}_adapter", merge=trainer.args.merge_adapter)
    return _Trained(model, trainer.predict(test_dataset, metric_key_prefix="test").metrics, cost, tokenizer,
                    vocabulary)
