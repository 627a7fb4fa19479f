"""Joint compression of a distilled student, in one command: prune structure by distillation importance -> recover
by distillation -> quantization-aware distillation -> static int8, beside the post-training int8 variants and an
OpenVINO runtime, every artefact measured side by side in one process.

Stages (each optional but the export):
1. teacher logits on the training texts, once (they score importance and feed both recovery runs);
2. structured pruning: attention heads and feed-forward neurons whose gates matter least to the distillation loss
   (`structured.prune_structure`), then `recovery_epochs` of distillation (`recover.distill_recover`);
3. ONNX fp32, dynamic int8 and (`ptq_static`) min-max static int8 of that model, each int8 behind the accuracy guard;
4. QAT (`qat_epochs` > 0): NNCF fake quantizers, distillation with the teacher frozen, static int8 QDQ export
   (`onnx_qat_int8/`), behind the same guard;
5. OpenVINO (`openvino`): the QAT graph (or NNCF post-training int8 of the float graph) as an IR folder;
6. benchmark: teacher, the student as given (and its dynamic int8 when pruned: the speed-up pruning buys is measured
   against it), every artefact; compress_report.json and compress.md name how each artefact was made.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from nlp_reuse.compress.artifacts import check_model_dir, load_classifier, write_compression_info
from nlp_reuse.compress.benchmark import BenchmarkRow, benchmark_folder, write_benchmark
from nlp_reuse.compress.labels import encode_labels
from nlp_reuse.compress.onnx_export import check_onnx_parity, export_onnx
from nlp_reuse.compress.quantize import accuracy_guard, count_quantized_ops, quantize_dynamic, quantize_static
from nlp_reuse.errors import ConfigError, ModelError, format_error
from nlp_reuse.files import prepare_output_dir
from nlp_reuse.tables import render_table

logger = logging.getLogger(__name__)

COMPRESS_REPORT_NAME = "compress_report.json"
OpenVinoMode = Literal["none", "int8", "all"]


@dataclass
class CompressArguments:
    """scripts/compress.py: prune -> distill-recover -> QAT -> int8 (+ OpenVINO), all measured."""

    model_dir: str = field(default=None, metadata={"help": "The distilled student folder (e.g. RUN/student)."})
    teacher_model_name_or_path: str = field(default=None, metadata={"help": "The teacher it was distilled from: "
                                                                            "importance, recovery and QAT learn "
                                                                            "from its logits."})
    output_dir: str = field(default=None, metadata={"help": "New folder for pytorch/, onnx/, onnx_int8/, "
                                                            "onnx_qat_int8/, openvino_int8/ and the reports."})
    prune_heads_fraction: float = field(default=0.0, metadata={"help": "Fraction of attention heads to remove, "
                                                                       "least important to the KD loss first."})
    prune_ffn_fraction: float = field(default=0.0, metadata={"help": "Fraction of feed-forward neurons to remove "
                                                                     "in every layer, least important first."})
    importance_samples: int = field(default=1024, metadata={"help": "Training texts scored for importance."})
    recovery_epochs: float = field(default=2.0, metadata={"help": "Epochs of distillation after pruning "
                                                                  "(ignored without pruning)."})
    recovery_learning_rate: float = field(default=5e-5, metadata={"help": "Learning rate of the recovery run."})
    qat_epochs: float = field(default=0.0, metadata={"help": "Epochs of quantization-aware distillation (NNCF); "
                                                             "0 skips QAT."})
    qat_learning_rate: float = field(default=1e-5, metadata={"help": "Learning rate of the QAT run."})
    temperature: float = field(default=2.0, metadata={"help": "Distillation temperature T (importance, recovery, "
                                                              "QAT)."})
    alpha: float = field(default=0.5, metadata={"help": "Weight of the soft (teacher) term; 1 - alpha on labels."})
    batch_size: int = field(default=32, metadata={"help": "Training batch size of the recovery and QAT runs."})
    calibration_samples: int = field(default=256, metadata={"help": "Training texts calibrating static int8 and "
                                                                    "the QAT quantizer ranges."})
    ptq_static: bool = field(default=True, metadata={"help": "Also write post-training static int8 "
                                                             "(onnx_static_int8/) for comparison."})
    openvino: OpenVinoMode = field(default="none", metadata={"help": "none | int8: OpenVINO IR of the int8 model "
                                                                     "(the QAT graph, else NNCF post-training "
                                                                     "int8) | all: also fp32 and PTQ IR."})
    max_accuracy_drop: float = field(default=1.0, metadata={"help": "Largest validation accuracy drop (points) of "
                                                                    "an int8 model vs the fp32 ONNX model."})
    benchmark: bool = field(default=True, metadata={"help": "Measure teacher, student and every artefact on the "
                                                            "test split (one process, --num_threads)."})
    num_threads: int = field(default=2, metadata={"help": "CPU threads for training and the benchmark."})
    latency_calls: int = field(default=200, metadata={"help": "Timed batch-1 calls per artefact."})
    throughput_calls: int = field(default=20, metadata={"help": "Timed batch-32 calls per artefact."})
    seed: int = field(default=42, metadata={"help": "Seed of the calibration sample and the training runs."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output_dir."})

    def __post_init__(self):
        missing = [n for n in ("model_dir", "teacher_model_name_or_path", "output_dir") if not getattr(self, n)]
        if missing:
            raise ConfigError(format_error("Missing arguments.", "--model_dir, --teacher_model_name_or_path and "
                                           "--output_dir", f"missing {', '.join('--' + m for m in missing)}",
                                           "pass all three"))
        for name in ("prune_heads_fraction", "prune_ffn_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(format_error(f"--{name} out of range.", "a fraction in [0, 1)", repr(value),
                                               f"pass e.g. --{name} 0.5"))
        for name in ("recovery_epochs", "qat_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(format_error(f"--{name} is negative.", ">= 0", repr(getattr(self, name)),
                                               "pass 0 to skip the stage"))
        for name in ("importance_samples", "batch_size", "calibration_samples", "num_threads", "latency_calls",
                     "throughput_calls"):
            if getattr(self, name) < 1:
                raise ConfigError(format_error(f"--{name} too small.", ">= 1", repr(getattr(self, name)),
                                               f"pass a positive --{name}"))
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise ConfigError(format_error("Bad distillation settings.", "0 <= --alpha <= 1 and --temperature > 0",
                                           f"alpha={self.alpha}, temperature={self.temperature}",
                                           "pass e.g. --alpha 0.5 --temperature 2"))
        if self.openvino not in ("none", "int8", "all"):
            raise ConfigError(format_error("Unknown --openvino mode.", "none, int8 or all", repr(self.openvino),
                                           "pass --openvino int8"))
        if self.max_accuracy_drop < 0:
            raise ConfigError(format_error("--max_accuracy_drop is negative.", "points >= 0",
                                           repr(self.max_accuracy_drop), "pass e.g. --max_accuracy_drop 1"))

    @property
    def prunes(self) -> bool:
        return self.prune_heads_fraction > 0 or self.prune_ffn_fraction > 0


def check_optional_libraries(args: CompressArguments) -> None:
    """QAT needs NNCF, --openvino needs OpenVINO: say so before anything is trained."""
    from nlp_reuse.compress.qat import require_nncf

    if args.qat_epochs > 0 or args.openvino != "none":
        require_nncf()
    if args.openvino != "none":
        from nlp_reuse.compress.openvino_export import require_openvino

        require_openvino()


def _check_same_labels(student, teacher) -> None:
    s = [student.config.id2label[i] for i in range(student.config.num_labels)]
    t = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    if s != t:
        raise ModelError(format_error("Student and teacher have different labels.", f"the student's labels {s}",
                                      f"teacher labels {t}", "pass the teacher the student was distilled from"))


def _check_output_is_apart(out: Path, *inputs: Path) -> None:
    """--overwrite replaces the output folder: it must not hold (or be) the student or the teacher."""
    target = out.resolve()
    for folder in inputs:
        source = folder.resolve()
        if source == target or source.is_relative_to(target):
            raise ConfigError(format_error(
                "The output folder would contain an input.", "an --output_dir apart from the student and teacher",
                f"--output_dir {out} holds {folder}", f"pass e.g. --output_dir {source.parent / 'compressed'}"))


def _describe_pruning(report: dict | None, recovery_epochs: float) -> str:
    if not report:
        return ""
    return (f"pruned by distillation importance: heads {report['heads_before']}->{report['heads_after']}, FFN width "
            f"{report['ffn_width_before']}->{report['ffn_width_after']}; {recovery_epochs:g} epochs KD recovery; ")


def compress_student(args: CompressArguments, splits: dict[str, tuple[list[str], list[str]]],
                     max_length: int = 128) -> dict[str, Any]:
    """Run every stage (see the module docstring); `splits` maps train/validation/test to (texts, label names).

    Returns the report written to OUTPUT_DIR/compress_report.json.
    """
    from nlp_reuse.compress.recover import distill_recover, teacher_logits_for

    check_optional_libraries(args)
    check_model_dir(args.model_dir)
    check_model_dir(args.teacher_model_name_or_path)
    _check_output_is_apart(Path(args.output_dir), Path(args.model_dir), Path(args.teacher_model_name_or_path))
    torch.set_num_threads(args.num_threads)
    student, tokenizer = load_classifier(args.model_dir)
    # The teacher reads its own tokenizer: a student's may differ (a trimmed vocabulary renumbers the tokens).
    teacher, teacher_tokenizer = load_classifier(args.teacher_model_name_or_path)
    _check_same_labels(student, teacher)
    label2id = {str(k): int(v) for k, v in student.config.label2id.items()}
    train_texts, train_names = splits["train"]
    train_ids = encode_labels(train_names, label2id)
    val_texts, val_names = splits["validation"]
    val_ids = encode_labels(val_names, label2id)
    if args.prunes:
        from nlp_reuse.compress.prune import _attention_layers, pruned_heads_of

        _attention_layers(student)  # a layout pruning cannot handle fails here, before the teacher pass
        if pruned_heads_of(student.config):
            raise ModelError(format_error("The student already has pruned heads.", "an unpruned student folder",
                                          f"pruned_heads={pruned_heads_of(student.config)}",
                                          "compress the student the distill run wrote (RUN/student)"))
    # Every input is checked: only now is the output folder claimed (and, with --overwrite, replaced).
    out = prepare_output_dir(args.output_dir, overwrite=args.overwrite, replace=True, flag="--overwrite true")
    calibration = random.Random(args.seed).sample(list(train_texts), min(args.calibration_samples, len(train_texts)))
    needs_teacher = args.prunes or args.qat_epochs > 0
    logits = (teacher_logits_for(teacher, teacher_tokenizer, train_texts, max_length=max_length) if needs_teacher
              else None)
    report: dict[str, Any] = {"settings": {k: getattr(args, k) for k in args.__dataclass_fields__},
                              "max_length": max_length, "artefacts": {}, "stages": {}}
    made_by: dict[str, str] = {}
    source = args.model_dir

    pruning, shape = None, {}
    if args.prunes:
        from nlp_reuse.compress.structured import prune_structure

        n = min(args.importance_samples, len(train_texts))
        pruning = prune_structure(student, tokenizer, list(train_texts[:n]), heads_fraction=args.prune_heads_fraction,
                                  ffn_fraction=args.prune_ffn_fraction, teacher_logits=logits[:n],
                                  labels=train_ids[:n], temperature=args.temperature, alpha=args.alpha,
                                  max_length=max_length).to_dict()
        report["stages"]["pruning"] = {k: v for k, v in pruning.items() if "importance" not in k}
        if args.recovery_epochs > 0:
            distill_recover(student, teacher, tokenizer, train_texts, train_ids, logits,
                            num_train_epochs=args.recovery_epochs, learning_rate=args.recovery_learning_rate,
                            temperature=args.temperature, alpha=args.alpha, batch_size=args.batch_size,
                            max_length=max_length, seed=args.seed, stage="recovery")
        source = prepare_output_dir(out / "pytorch", overwrite=True, replace=True)
        student.save_pretrained(source)
        tokenizer.save_pretrained(source)
        how = _describe_pruning(pruning, args.recovery_epochs)
        shape = {"pruned_heads": f"{pruning['heads_before'] - pruning['heads_after']}/{pruning['heads_before']}",
                 "ffn_width": f"{pruning['ffn_width_before']}->{pruning['ffn_width_after']}"}
        write_compression_info(source, {"source": str(args.model_dir), "format": "pytorch", "precision": "fp32",
                                        **shape})
        made_by["pytorch"] = how.rstrip("; ")
    prefix = _describe_pruning(pruning, args.recovery_epochs)
    student = student.eval()

    onnx_dir = export_onnx(student, tokenizer, out / "onnx", compression={"source": str(source), **shape})
    parity = check_onnx_parity(student, tokenizer, onnx_dir, list(val_texts[:32]), max_length)
    made_by["onnx"] = prefix + "ONNX fp32"
    guards: dict[str, dict] = {}

    def guarded(name: str, folder: Path, how: str) -> None:
        guard = accuracy_guard(onnx_dir, folder, list(val_texts), val_ids, max_accuracy_drop=args.max_accuracy_drop,
                               max_length=max_length)
        guards[name] = {**guard.to_dict(), "quantized_ops": count_quantized_ops(folder / "model.onnx")}
        made_by[name] = prefix + how + (" [REJECTED by the accuracy guard]" if guard.triggered else "")

    quantize_dynamic(onnx_dir, out / "onnx_int8")
    guarded("onnx_int8", out / "onnx_int8", "dynamic int8 (ONNX Runtime, weights int8, activations at run time)")
    if args.ptq_static:
        quantize_static(onnx_dir, out / "onnx_static_int8", calibration, method="minmax", max_length=max_length)
        guarded("onnx_static_int8", out / "onnx_static_int8",
                f"post-training static int8 (ONNX Runtime QDQ, min-max on {len(calibration)} texts)")
    if args.qat_epochs > 0:
        from nlp_reuse.compress.qat import export_qat_onnx, prepare_qat

        qat_model = prepare_qat(student, tokenizer, calibration, max_length=max_length)
        distill_recover(qat_model, teacher, tokenizer, train_texts, train_ids, logits,
                        num_train_epochs=args.qat_epochs, learning_rate=args.qat_learning_rate,
                        temperature=args.temperature, alpha=args.alpha, batch_size=args.batch_size,
                        max_length=max_length, seed=args.seed, stage="qat")
        export_qat_onnx(qat_model, tokenizer, out / "onnx_qat_int8", compression={"source": str(source), **shape})
        guarded("onnx_qat_int8", out / "onnx_qat_int8",
                f"quantization-aware distillation (NNCF, {args.qat_epochs:g} epochs), static int8 QDQ")
    if args.openvino != "none":
        from nlp_reuse.compress.openvino_export import export_openvino

        if args.qat_epochs > 0 and not guards["onnx_qat_int8"]["triggered"]:
            export_openvino(out / "onnx_qat_int8", out / "openvino_int8")
            made_by["openvino_int8"] = made_by["onnx_qat_int8"].replace("static int8 QDQ", "OpenVINO int8")
        else:
            export_openvino(onnx_dir, out / "openvino_int8", quantization="ptq", calibration_texts=calibration,
                            max_length=max_length)
            made_by["openvino_int8"] = prefix + f"OpenVINO int8 (NNCF post-training, {len(calibration)} texts)"
        if args.openvino == "all":
            export_openvino(onnx_dir, out / "openvino")
            made_by["openvino"] = prefix + "OpenVINO fp32"
            if "openvino_int8" in made_by and "NNCF post-training" not in made_by["openvino_int8"]:
                export_openvino(onnx_dir, out / "openvino_ptq_int8", quantization="ptq",
                                calibration_texts=calibration, max_length=max_length)
                made_by["openvino_ptq_int8"] = prefix + f"OpenVINO int8 (NNCF post-training, {len(calibration)} texts)"

    passed = [n for n in ("onnx_qat_int8", "onnx_int8", "onnx_static_int8") if n in guards
              and not guards[n]["triggered"]]
    report.update(parity_max_abs_diff=parity, guards=guards, deliverable=passed[0] if passed else "onnx",
                  made_by=made_by)
    if args.benchmark:
        report["benchmark"] = _benchmark(args, out, splits["test"], made_by, max_length)
    rows = report["benchmark"]["rows"] if args.benchmark else []
    report["run_report"] = add_to_run_report(args.model_dir, out, rows, made_by)
    (out / COMPRESS_REPORT_NAME).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def add_to_run_report(model_dir: str | Path, out: Path, rows: list[dict], made_by: dict[str, str]) -> str | None:
    """When the student is RUN/student of a distill run and the output lies inside RUN, add every measured artefact
    to RUN/report.json (`artefacts`, each with `made_by`), so the run's model card lists them; entries of an earlier
    compress into the same folder are dropped (without `rows`, nothing measured, only that). Returns the report's
    path, or None when the layout does not match (the compress report stands alone then)."""
    from nlp_reuse.compress.benchmark import report_entry
    from nlp_reuse.files import write_json
    from nlp_reuse.report import REPORT_FILE, ModelEntry, RunReport

    run_dir = Path(model_dir).resolve().parent
    path = run_dir / REPORT_FILE
    if Path(model_dir).resolve().name != "student" or not path.is_file() or not out.resolve().is_relative_to(run_dir):
        return None
    report = RunReport.read(path)
    # Entries of an earlier compress into the same folder go: the folder was replaced, its numbers are stale.
    prefix = str(out.resolve().relative_to(run_dir)) + "/"
    artefacts = {k: v for k, v in (report.artefacts or {}).items() if not k.startswith(prefix)}
    for row in rows:
        if row["name"] not in made_by:
            continue
        relative = str((out / row["name"]).resolve().relative_to(run_dir))
        entry = ModelEntry.from_dict(report_entry(BenchmarkRow(**row), path=relative), where=f"artefacts.{relative}")
        entry.extra["made_by"] = made_by[row["name"]]
        artefacts[relative] = entry
    report.artefacts = artefacts
    write_json(path, report.to_dict())
    return str(path)


def _benchmark(args: CompressArguments, out: Path, test: tuple[list[str], list[str]], made_by: dict[str, str],
               max_length: int) -> dict[str, Any]:
    """Teacher, student as given (+ its dynamic int8 when pruned), every artefact: one process, fixed threads."""
    texts, labels = test
    timing = {"num_threads": args.num_threads, "max_length": max_length, "latency_calls": args.latency_calls,
              "throughput_calls": args.throughput_calls}
    folders = {"teacher": Path(args.teacher_model_name_or_path), "student": Path(args.model_dir)}
    how = {"teacher": "PyTorch fp32 teacher", "student": "PyTorch fp32 student as given"}
    if args.prunes:  # the unpruned student's dynamic int8: what pruning is measured against
        baseline = out / "unpruned_onnx_int8"
        with_model, tokenizer = load_classifier(args.model_dir)
        export_onnx(with_model, tokenizer, out / "unpruned_onnx", compression={"source": args.model_dir})
        quantize_dynamic(out / "unpruned_onnx", baseline)
        shutil.rmtree(out / "unpruned_onnx")
        folders["unpruned_onnx_int8"] = baseline
        how["unpruned_onnx_int8"] = "student as given, dynamic int8 (no pruning)"
    for name in made_by:
        folders[name] = out / name
        how[name] = made_by[name]
    rows: list[BenchmarkRow] = []
    for name, folder in folders.items():
        logger.info("Benchmarking %s", name)
        rows.append(benchmark_folder(folder, texts, labels, name=name, **timing))
    write_benchmark(rows, out, overwrite=True, extra={"made_by": how})
    teacher = rows[0]
    table = render_table(
        ["artefact", "how it was made", "accuracy %", "b1 p50 ms", "speed-up", "b32 ex/s", "size MB"],
        [[r.name, how[r.name], f"{100 * r.accuracy:.2f}", f"{r.latency_b1_p50_ms:.3f}",
          f"{teacher.latency_b1_p50_ms / r.latency_b1_p50_ms:.1f}x", f"{r.throughput_b32_per_s:.0f}",
          f"{r.size_mb:.1f}"] for r in rows], markdown=True)
    (out / "compress.md").write_text(f"{table}\n\n{args.num_threads} threads; {len(texts)} test texts; latency end to "
                                     "end (tokenization + forward); all rows timed in one process.\n")
    print(table)
    return {"rows": [r.to_dict() for r in rows], "made_by": how}


__all__ = ["COMPRESS_REPORT_NAME", "CompressArguments", "check_optional_libraries", "compress_student"]
