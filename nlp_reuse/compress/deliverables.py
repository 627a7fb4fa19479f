"""The deliverables of a distillation run: RUN/student exported to ONNX (and int8 behind the accuracy guard), each
artefact measured on the test split like the teacher and the student, as report entries."""

from pathlib import Path

import torch

from nlp_reuse.compress.benchmark import benchmark_folder, report_entry
from nlp_reuse.compress.pipeline import export_model
from nlp_reuse.report import ModelEntry


def export_student(out: Path, export: str, args, splits, max_length: int,
                   model_dir: Path | None = None) -> tuple[dict[str, ModelEntry], dict]:
    """ONNX (and int8, behind the accuracy guard) of `model_dir` (RUN/student by default) into OUT/onnx/ (and
    OUT/onnx_int8/), measured on the test split like the others.

    Returns the report entries of the artefacts and what the export decided (deliverable, guard, int8 op counts).
    """
    result = export_model(
        model_dir or out / "student", out, quantization="dynamic" if export == "onnx_int8" else "none",
        validation_texts=splits["validation"]["text"], validation_labels=splits["validation"]["label"],
        max_length=max_length, overwrite=args.overwrite_output_dir, seed=args.seed,
    )
    texts, labels = splits["test"]["text"], splits["test"]["label"]
    artefacts = {}
    for folder in filter(None, (result.onnx_dir, result.quantized_dir if not result.guard_triggered else None)):
        row = benchmark_folder(folder, texts, labels, num_threads=torch.get_num_threads(), max_length=max_length,
                               latency_calls=max(args.latency_samples, 1))
        name = Path(folder).name
        artefacts[name] = ModelEntry.from_dict(report_entry(row, path=name), where=f"artefacts.{name}")
    decision = {"deliverable": Path(result.deliverable).name, "guard_triggered": result.guard_triggered,
                "guard": result.guard, "quantized_ops": result.quantized_ops, "isa": result.isa}
    return artefacts, decision
