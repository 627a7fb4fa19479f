"""Reading and checking a run folder before anything is rendered or uploaded: its report, its student, its ONNX
folders."""

from __future__ import annotations

from pathlib import Path

from nlp_reuse.report import REPORT_FILE, RunReport

# Run subfolders that ship when they hold one .onnx file, and the name that file gets in the repo. Optimum 2.1 selects
# a subfolder's file by regex prefix, so `subfolder="onnx"` also matches `onnx_int8/model.onnx` and may load the int8
# model; giving the int8 file Optimum's own quantized name keeps `model.onnx` unique and both loads unambiguous.
ONNX_SUBFOLDERS = {"onnx": "model.onnx", "onnx_int8": "model_quantized.onnx"}
# What from_pretrained opens first: one weights file, or the index of the shards.
_LOADABLE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def load_run_report(run_dir: str | Path) -> RunReport:
    """Read and check ``RUN/report.json`` (every key the card and the upload read), before any other work."""
    run_dir = Path(run_dir)
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
    return RunReport.read(report_path)


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
