"""Reading and checking a run folder before anything is rendered or uploaded: its report, its student, its ONNX
folders; for a multi-task run (`nlp-reuse distill --tasks`), the one task to publish."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path

from nlp_reuse.errors import ConfigError, format_error
from nlp_reuse.files import listing
from nlp_reuse.multitask.model import EXPORTS_DIR, TASKS_DIR
from nlp_reuse.report import REPORT_FILE, MultiTaskReport, ReportError, RunReport, read_json_object

# Run subfolders that ship when they hold one .onnx file, and the name that file gets in the repo. Optimum 2.1 selects
# a subfolder's file by regex prefix, so `subfolder="onnx"` also matches `onnx_int8/model.onnx` and may load the int8
# model; giving the int8 file Optimum's own quantized name keeps `model.onnx` unique and both loads unambiguous.
ONNX_SUBFOLDERS = {"onnx": "model.onnx", "onnx_int8": "model_quantized.onnx"}
# What `nlp-reuse export` decided for those folders (deliverable, accuracy guard, quantized ops).
EXPORT_RECORD = "export_report.json"
# What from_pretrained opens first: one weights file, or the index of the shards.
_LOADABLE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


@dataclass
class RunFolder:
    """What a push publishes from a run folder, checked: the report the card reads (for one task of a multi-task
    run, that task's single-task view), the model folder that ships, and its ONNX folders."""

    path: Path
    report: RunReport
    model_dir: Path
    onnx: dict[str, Path]
    task: str | None = None  # the task published, for a multi-task run
    multitask: MultiTaskReport | None = None  # the whole multi-task run: the card's lineage names the other tasks
    # What the run folder holds that describes another model than the one published, so it does not ship: for a
    # task, the run-level ONNX folders and EXPORT_RECORD (the task's own are in exports/TASK/).
    ignored: list[str] = dataclasses.field(default_factory=list)

    @property
    def export_dir(self) -> Path:
        """Where the published model's ONNX folders and EXPORT_RECORD are: the run folder, or for a task of a
        multi-task run (`distill --tasks --export`) exports/TASK/."""
        return self.path if self.task is None else self.path / EXPORTS_DIR / self.task


def _report_path(run_dir: Path) -> Path:
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"Expected a run folder written by `scripts/distill.py --output_dir RUN`; found no folder at {run_dir}. "
            "Fix: pass the --output_dir of a finished run."
        )
    report_path = run_dir / REPORT_FILE
    if not report_path.is_file():
        found = sorted(p.name for p in run_dir.iterdir())[:12]
        hint = ""
        if (run_dir / "config.json").is_file():
            hint = " This looks like a model folder: pass the run folder that contains it (its parent)."
        raise FileNotFoundError(
            f"Expected {report_path} (scripts/distill.py writes it when a run finishes); found only {found}. "
            f"Fix: finish the run or point --model_dir at the run folder, not at a model inside it.{hint}"
        )
    return report_path


def _read(run_dir: Path, task: str | None) -> tuple[RunReport, MultiTaskReport | None]:
    """The report the card reads, and the multi-task report it was cut from (None for a single-task run)."""
    report_path = _report_path(run_dir)
    data = read_json_object(report_path)
    if MultiTaskReport.KEY not in data:
        if task is not None:
            raise ConfigError(format_error(
                f"--task {task} picks one task of a multi-task run; {run_dir} is a single-task run.",
                "a run folder of `nlp-reuse distill --tasks` (its report.json has 'multitask' and 'tasks')",
                f"a single-task report (keys {sorted(data)})", "drop --task: the whole run is one model"))
        return RunReport.from_dict(data, source=report_path), None
    multitask = MultiTaskReport.from_dict(data, source=report_path)
    names = list(multitask.tasks)
    if not multitask.distilled:
        # Refused like a single-task fine-tuning run (a ReportError): push publishes distilled students.
        raise ReportError(format_error(
            f"{report_path} is a multi-task fine-tuning run (`nlp-reuse finetune --tasks`); push publishes the "
            "students of distill runs.",
            "the report of `nlp-reuse distill --tasks` (every task with 'teacher', 'student' and 'retention')",
            f"'{multitask.training_key}', and tasks {names} with a fine-tuned 'model' each",
            f"distill it first (nlp-reuse distill --tasks TASKS.yaml --teacher_model_name_or_path {run_dir} "
            "--student_num_layers N --output_dir OUT), then push OUT with --task NAME"))
    if task is None:
        raise ConfigError(format_error(
            f"{run_dir} is a multi-task run ({len(names)} tasks, one shared encoder): push publishes one task's "
            "model at a time.", f"--task NAME, one of {names}", "no --task",
            f"add --task NAME (e.g. --task {names[0]}); push each task to its own repo"))
    if task not in multitask.tasks:
        close = difflib.get_close_matches(task, names, n=2)
        raise ConfigError(format_error(
            f"{run_dir} has no task {task!r}.", f"--task one of {names}",
            f"--task {task}" + (f" (did you mean {', '.join(close)}?)" if close else ""),
            "pass one of the task names above (the tasks file's names, OUT/tasks/NAME)"))
    report = multitask.task_report(task)
    if report.student.path is None:  # the folder `nlp-reuse distill --tasks` writes for each task
        report.student = dataclasses.replace(report.student, path=f"{TASKS_DIR}/{task}")
    folder = run_dir / report.student.path
    if not folder.is_dir():
        tasks_dir = folder.parent
        raise FileNotFoundError(format_error(
            f"Task {task!r} of {run_dir} has no model folder.",
            f"{folder} (report.json tasks.{task}.student.path): the standard model folder `nlp-reuse distill "
            "--tasks` writes for each task",
            f"{tasks_dir} holds {listing(tasks_dir)}" if tasks_dir.is_dir() else f"no folder {tasks_dir}",
            "point --model_dir at the complete run folder, or re-run `nlp-reuse distill --tasks` to write it"))
    return report, multitask


def load_run_report(run_dir: str | Path, task: str | None = None) -> RunReport:
    """Read and check ``RUN/report.json`` (every key the card and the upload read), before any other work.

    For a multi-task run `task` names the task to publish and the report is that task's single-task view
    (`MultiTaskReport.task_report`); it is required there and refused for a single-task run.
    """
    return _read(Path(run_dir), task)[0]


def read_run_folder(run_dir: str | Path, task: str | None = None) -> RunFolder:
    """The checked run folder (`task`: as for :func:`load_run_report`): report, model folder and ONNX folders.

    A task of a multi-task run ships ``tasks/NAME/`` and the ONNX folders of ``exports/NAME/`` that its report
    entry lists (`nlp-reuse distill --tasks --export`); a run-level ``onnx/`` (and its ``export_report.json``)
    would describe some other model than this task's: those present are listed in `RunFolder.ignored`.
    """
    run_dir = Path(run_dir)
    report, multitask = _read(run_dir, task)
    ignored, onnx = [], onnx_folders(run_dir)
    if multitask is not None:
        ignored = [f"{name}/" for name in ONNX_SUBFOLDERS if (run_dir / name).is_dir()]
        ignored += [EXPORT_RECORD] if (run_dir / EXPORT_RECORD).is_file() else []
        onnx = {name: path for name, path in onnx_folders(run_dir / EXPORTS_DIR / task).items()
                if name in (report.artefacts or {})}
    return RunFolder(path=run_dir, report=report, model_dir=student_dir(run_dir, report), onnx=onnx, task=task,
                     multitask=multitask, ignored=ignored)


def student_dir(run_dir: Path, report: RunReport) -> Path:
    """The run's student folder, checked to hold safetensors weights, config.json and a tokenizer."""
    folder = run_dir / (report.student.path or "student")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Expected the student model folder {folder} (report.json student.path); found no folder. "
            "Fix: point --model_dir at a complete run folder, or re-run scripts/distill.py to save the student."
        )
    if not any((folder / name).is_file() for name in _LOADABLE_WEIGHTS):
        found = sorted(p.name for p in folder.iterdir())
        raise FileNotFoundError(
            f"Expected safetensors weights (model.safetensors) in {folder}; found {found}. "
            "Fix: save the student with save_pretrained(..., safe_serialization=True)."
        )
    if not (folder / "config.json").is_file() or not (folder / "tokenizer_config.json").is_file():
        raise FileNotFoundError(
            f"Expected config.json and tokenizer files in {folder}; found "
            f"{sorted(p.name for p in folder.iterdir())}. Fix: save the tokenizer next to the student "
            "(tokenizer.save_pretrained(student_dir))."
        )
    return folder


def onnx_folders(run_dir: Path) -> dict[str, Path]:
    """ONNX subfolders present in the run folder -> their one .onnx file."""
    found = {}
    for name in ONNX_SUBFOLDERS:
        onnx_files = sorted((run_dir / name).glob("*.onnx")) if (run_dir / name).is_dir() else []
        if len(onnx_files) > 1:
            raise ValueError(
                f"Expected one .onnx file in {run_dir / name}; found {[p.name for p in onnx_files]}. "
                "Fix: keep only the model to publish in that folder."
            )
        if onnx_files:
            found[name] = onnx_files[0]
    return found
