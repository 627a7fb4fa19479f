"""The lineage sentences of a model card: how the model and its teacher were made.

Joint training with other tasks, a teacher ensemble, and what a local teacher's report.json says of its own making
(domain alignment, extra training rows, continued masked-LM pretraining). The teacher-report readers and
`format_metric` live here because `nlp_reuse.hub.card` shares them and imports this module, not the reverse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlp_reuse.report import ModelEntry, MultiTaskReport, read_json_object


def format_metric(value: float) -> str:
    """A metric as the card and the commit message show it."""
    return f"{value:.4f}"


def read_teacher_report(teacher_name_or_path: str) -> dict[str, Any]:
    """The report.json scripts/finetune.py left in a local teacher folder, or {} (Hub teacher, or none found).

    Read as plain JSON, not as a FinetuneReport: only what it was fine-tuned from (`teacher_base`), its domain
    alignment and its command are used, and a teacher folder made by other tools may hold a partial one.
    """
    path = Path(teacher_name_or_path).expanduser() / "report.json"
    return read_json_object(path) if path.is_file() else {}


def teacher_base(teacher_report: dict[str, Any]) -> Any:
    """What a teacher's report.json says it was fine-tuned from: model.name_or_path, or for a multi-task teacher
    (`nlp-reuse finetune --tasks`, one model for all tasks) finetuning.model_name_or_path; None if it does not say."""
    if MultiTaskReport.KEY in teacher_report:
        return teacher_report.get("finetuning", {}).get("model_name_or_path")
    return teacher_report.get("model", {}).get("name_or_path")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def describe_joint_training(multitask: MultiTaskReport, task: str) -> str:
    """Task `task` of a multi-task distillation in one card sentence: the tasks it was trained with on one shared
    encoder and how each batch's task was drawn, what the repo holds, the multi-task teacher's accuracy on this task,
    and the other tasks' student accuracies."""
    sampling = multitask.sampling
    if sampling["rule"] == "temperature":
        rule = (f"temperature {sampling['temperature']}, each batch's task drawn with probability ∝ "
                f"n^(1/{sampling['temperature']}), n its training-set size")
    else:
        rule = "proportional, each batch's task drawn with probability ∝ its training-set size"
    tasks = _join([f"`{name}`" for name in multitask.tasks])
    others = _join([f"`{name}` {format_metric(result.models['student'].test['accuracy'])}"
                    for name, result in multitask.tasks.items() if name != task])
    teacher = multitask.tasks[task].models["teacher"]
    return (f"**Multi-task:** trained jointly with tasks {tasks} on one shared encoder (sampling: {rule}); this repo "
            f"holds task `{task}`'s head and the shared encoder. The multi-task teacher's own `{task}` head reaches "
            f"test accuracy {format_metric(teacher.test['accuracy'])}; the other tasks' heads on this student's "
            f"encoder reach test accuracy {others}.")


def describe_lineage(teacher: ModelEntry, teacher_report: dict[str, Any], multitask: MultiTaskReport | None = None,
                     task: str | None = None) -> list[str]:
    """Which transfer produced the model, as card sentences: training jointly with other tasks (`multitask`, the
    run that `task` was published from, see :func:`describe_joint_training`), an ensemble of teachers (with each
    one's weight and accuracy), and what the (first) teacher's report.json says of its own making: alignment with
    unlabeled target-domain texts, and an encoder adapted by continued masked-LM pretraining (`nlp-reuse adapt`)."""
    lines = [describe_joint_training(multitask, task)] if multitask is not None else []
    ensemble = teacher.extra.get("ensemble")
    if ensemble:
        members = "; ".join(f"`{m['name_or_path']}` (weight {m['weight']:.2f}, test accuracy "
                            f"{format_metric(m['test']['accuracy'])})" for m in ensemble["teachers"])
        lines.append(f"**Teachers:** an ensemble of {len(ensemble['teachers'])}: {members}. The soft targets are the "
                     f"{ensemble['combination']}; the ensemble's test accuracy is "
                     f"{format_metric(teacher.test['accuracy'])}. A student built from teacher layers takes the "
                     "first teacher's.")
    domain = teacher_report.get("domain_adaptation")
    if isinstance(domain, dict):
        count = domain.get("num_target_texts")
        lines.append(f"**Domain alignment:** the teacher was fine-tuned on "
                     f"`{teacher_report.get('task', {}).get('dataset', 'its labelled data')}` while aligning its "
                     f"features with {f'{count:,}' if isinstance(count, int) else 'the'} unlabeled target-domain "
                     f"texts of `{Path(str(domain.get('target_unlabeled_file'))).name}` by the "
                     f"`{domain.get('domain_loss')}` loss (weight {domain.get('domain_loss_weight')}).")
    extra = describe_extra_train(teacher_report.get("task"), "teacher")
    if extra:
        lines.append(extra)
    base = teacher_base(teacher_report)
    adapted = read_teacher_report(base) if isinstance(base, str) else {}
    if "masked_lm_loss" in adapted:
        sources = ", ".join(f"{s.get('name')} ({s.get('texts')} texts)"
                            for s in adapted.get("texts", {}).get("sources", []))
        model = adapted.get("model", {})
        loss = adapted["masked_lm_loss"].get("heldout", {})
        measured = ""
        if "before" in loss and "after" in loss:
            # A head initialised for the run starts at a random head's loss: the drop is not all the encoder's.
            head = " (the MLM head was new, so the first value is a random head's)" if model.get(
                "head_initialised") else ""
            measured = f"; held-out masked-token loss {loss['before']:.3f} → {loss['after']:.3f}{head}"
        lines.append(f"**Continued pretraining:** the teacher's encoder `{base}` is `{model.get('name_or_path')}` "
                     f"after masked-LM training on unlabeled target-domain texts: {sources or 'unrecorded'}"
                     f"{measured}.")
    return lines


def describe_extra_train(task: Any, who: str) -> str | None:
    """A card sentence for training rows added by --extra_train_file (`task`: a report's task dict), with how they
    were labelled when the file was `nlp-reuse pseudo-label` output (recorded at training time)."""
    if not isinstance(task, dict) or not task.get("extra_train_file"):
        return None
    extra, total = task.get("num_extra_train"), task.get("num_train")
    parts = [f"**Extra training rows:** {f'{extra:,}' if isinstance(extra, int) else 'some'} of the {who}'s"]
    if isinstance(total, int):
        parts.append(f"{total:,}")
    parts.append(f"training examples came from `{Path(str(task['extra_train_file'])).name}`")
    made = task.get("extra_train_labelled_by")
    if isinstance(made, dict):
        labeller = str(made.get("model_name_or_path"))
        kept = (f"the same number of each predicted class ({made.get('fraction')} of an even share), its most "
                "confident" if made.get("balance") == "equal" else
                f"the most confident {made.get('fraction')} of each predicted class")
        parts[-1] += (f": pseudo-labels of `{Path(str(made.get('unlabeled_file'))).name}` by "
                      f"`{Path(labeller).name if Path(labeller).is_absolute() else labeller}`, {kept} (self-training)")
    return " ".join(parts) + "."
