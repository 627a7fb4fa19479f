"""The run folder of a distillation: what a run writes there, what a rerun replaces, and how a killed run is
recognised and resumed. Final folders are written beside their name and renamed into place when complete."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from accelerate import PartialState
from transformers import PreTrainedModel, Trainer

from nlp_reuse.errors import format_error
from nlp_reuse.files import PARTIAL, stage_path, swap_in
from nlp_reuse.strategies import save_trained_model

logger = logging.getLogger(__name__)


# Everything a distillation run (and its --export) writes into its folder. A rerun with --overwrite_output_dir
# removes these first, so the folder never pairs a new report with an older run's student, baseline or ONNX
# files (which push would upload); files of the user's own in the folder are kept.
RUN_ARTEFACTS = ("report.json", "run_args.json", "export_report.json", "student", "student_adapter", "baseline",
                 "baseline_adapter", "onnx", "onnx_int8", "onnx_int8_rejected", "pytorch", "checkpoints")
# Trainer checkpoints live apart from the final model folders, which are written whole or not at all.
CHECKPOINTS = "checkpoints"


def checkpoint_dir(out: Path, name: str = "student") -> Path:
    """Where the Trainer of `name` (student, baseline, teacher) writes its checkpoints in run folder `out`."""
    return out / CHECKPOINTS / name


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint-N with the highest N under `folder` that Trainer finished writing, or None."""
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


def resolve_resume(out: Path, resume: str | None, name: str = "student") -> str | None:
    """`--resume_from_checkpoint last` means the newest checkpoint of the run folder's `name` (student; the model
    of a fine-tuning run)."""
    if resume != "last":
        return resume
    found = latest_checkpoint(checkpoint_dir(out, name))
    if found is None:
        raise FileNotFoundError(format_error(
            "--resume_from_checkpoint last found no checkpoint.", f"{checkpoint_dir(out, name)}/checkpoint-N",
            "none", "run without --resume_from_checkpoint, with --save_strategy steps|epoch to write checkpoints",
        ))
    return str(found)


def check_rerun(out: Path, overwrite: bool, resume: str | None, name: str = "student") -> bool:
    """Whether this run may write into `out`; an interrupted run's folder gets a message that says how to go on.

    Leftover staging folders of a killed run (never a finished artefact) are removed first. A folder is writable
    when it is empty, --overwrite_output_dir is given, or the run resumes from one of the folder's own checkpoints.
    """
    if not out.is_dir():
        return overwrite
    for stale in out.glob(f".*{PARTIAL}"):
        shutil.rmtree(stale)
    if resume is not None and (out.resolve() in Path(resume).resolve().parents):
        return True
    last = latest_checkpoint(checkpoint_dir(out, name))
    if not overwrite and last is not None and not (out / "report.json").is_file():
        raise FileExistsError(format_error(
            f"{out} holds a run that did not finish.", "a new or empty --output_dir, or a resumed run",
            f"checkpoints up to {last.relative_to(out)} and no report.json",
            "go on from the checkpoint with --resume_from_checkpoint last, or start over with "
            "--overwrite_output_dir true",
        ))
    return overwrite


@contextmanager
def staged_folders(*finals: Path) -> Iterator[list[Path]]:
    """`files.staged_folder` for code that runs on every rank: all ranks write (the main one saves), the main
    process swaps each completed stage in; an unused stage (an unmerged adapter run's merged folder) is skipped."""
    stages = [stage_path(final) for final in finals]
    state = PartialState()
    if state.is_main_process:
        for stage in stages:
            shutil.rmtree(stage, ignore_errors=True)
    state.wait_for_everyone()
    yield stages
    state.wait_for_everyone()
    if state.is_main_process:
        for stage, final in zip(stages, finals):
            if stage.is_dir():
                swap_in(stage, final)
    state.wait_for_everyone()


def remove_empty_folders(root: Path) -> None:
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def save_final(applied, trainer: Trainer, folder: Path, adapter_folder: Path, merge: bool) -> PreTrainedModel:
    """save_trained_model into staging folders, swapped in whole."""
    with staged_folders(folder, adapter_folder) as (stage, adapter_stage):
        model = save_trained_model(applied, trainer, stage, adapter_stage, merge=merge)
    return model


def clear_run_artefacts(out: Path, keep: tuple[str, ...] = (), inputs: tuple[str | None, ...] = ()) -> list[str]:
    """Remove the RUN_ARTEFACTS of an earlier run from `out` (except `keep`); returns what was removed.

    `inputs` are paths this run reads (teacher, cache, checkpoint): one inside an artefact to remove is an error.
    """
    for given in filter(None, inputs):
        path = Path(given).resolve()
        for name in RUN_ARTEFACTS:
            target = (out / name).resolve()
            if name not in keep and target.exists() and (path == target or target in path.parents):
                raise FileExistsError(
                    f"--overwrite_output_dir would delete {out / name}, which this run reads ({given}). Expected "
                    f"inputs outside the run's own artefacts; fix: copy it elsewhere first, or choose another "
                    "--output_dir."
                )
    removed = []
    for name in RUN_ARTEFACTS:
        path = out / name
        if name in keep or not path.exists():
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removed.append(name)
    if removed:
        logger.warning("--overwrite_output_dir: removed %s of an earlier run from %s", ", ".join(removed), out)
    return removed
