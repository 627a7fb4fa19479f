"""Measuring the frontier in one process: the fp32 PyTorch teacher and every student's PyTorch folder and deployable
ONNX folder (int8 unless the accuracy guard kept fp32), per seed, with `nlp_reuse.compress.benchmark`'s method; then
mean and spread over seeds, speed-up over the teacher, retention, the Pareto front and the pick under a latency
budget. Accuracies of the no-KD baselines come from their runs' report.json (same test split, same predictor)."""

import logging
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nlp_reuse.compress.benchmark import BenchmarkRow, benchmark_folder
from nlp_reuse.report import RunReport

logger = logging.getLogger(__name__)


def _compressed_deliverable(folder: Path) -> str | None:
    """RUN/compressed/<deliverable> when the plan gave the student a `compress:` step (pruned / QAT int8)."""
    import json

    from nlp_reuse.compress.joint import COMPRESS_REPORT_NAME
    from nlp_reuse.frontier.plan import COMPRESSED_DIR

    report = folder / COMPRESSED_DIR / COMPRESS_REPORT_NAME
    if not report.is_file():
        return None
    return f"{COMPRESSED_DIR}/{json.loads(report.read_text())['deliverable']}"


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return float(statistics.mean(values)), float(statistics.stdev(values)) if len(values) > 1 else 0.0


@dataclass
class FrontierRow:
    """One model (a student's artefact over its seeds, or the teacher): means over seeds, `*_std` their spread."""

    name: str  # "bilstm-128 int8", "teacher"
    student: str  # the plan's student name, or "teacher"
    artefact: str  # "pytorch" | "onnx" | "onnx_int8"
    variant: str  # BenchmarkRow.variant of the first seed
    student_type: str
    seeds: list[int]
    accuracy: float
    accuracy_std: float
    macro_f1: float
    macro_f1_std: float
    latency_b1_p50_ms: float
    latency_b1_p50_ms_std: float
    throughput_b32_per_s: float
    size_mb: float
    params: int
    retention: float = 1.0  # accuracy / the teacher's
    retention_std: float = 0.0
    speedup_b1: float = 1.0  # teacher p50 / this p50, both measured in this process
    baseline_accuracy: float | None = None  # the same student trained without the teacher (its report.json)
    baseline_accuracy_std: float | None = None
    train_time_s: float | None = None  # the KD student's training time (mean over seeds)
    pareto: bool = False
    per_seed: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _aggregate(name: str, student: str, artefact: str, student_type: str, rows: dict[int, BenchmarkRow],
               reports: dict[int, RunReport] | None) -> FrontierRow:
    seeds = sorted(rows)
    acc = _mean_std([rows[s].accuracy for s in seeds])
    f1 = _mean_std([rows[s].macro_f1 for s in seeds])
    p50 = _mean_std([rows[s].latency_b1_p50_ms for s in seeds])
    row = FrontierRow(
        name=name, student=student, artefact=artefact, variant=rows[seeds[0]].variant, student_type=student_type,
        seeds=seeds, accuracy=acc[0], accuracy_std=acc[1], macro_f1=f1[0], macro_f1_std=f1[1],
        latency_b1_p50_ms=p50[0], latency_b1_p50_ms_std=p50[1],
        throughput_b32_per_s=statistics.mean(rows[s].throughput_b32_per_s for s in seeds),
        size_mb=rows[seeds[0]].size_mb, params=rows[seeds[0]].params,
        per_seed=[{"seed": s, **rows[s].to_dict()} for s in seeds],
    )
    if reports:
        baselines = [r.baseline.test["accuracy"] for r in reports.values() if r.baseline is not None]
        if baselines:
            row.baseline_accuracy, row.baseline_accuracy_std = _mean_std(baselines)
        times = [r.training_cost["student"]["train_runtime_s"] for r in reports.values() if r.training_cost]
        row.train_time_s = statistics.mean(times) if times else None
    return row


def measure_frontier(teacher_dir: str | Path, runs: dict[str, dict[int, Path]], texts: list[str], labels: list,
                     *, num_threads: int, max_length: int, latency_calls: int,
                     throughput_calls: int) -> tuple[FrontierRow, list[FrontierRow]]:
    """The teacher's row and one row per (student, artefact), every folder timed in this process."""
    timing = {"num_threads": num_threads, "max_length": max_length, "latency_calls": latency_calls,
              "throughput_calls": throughput_calls}
    teacher_row = benchmark_folder(teacher_dir, texts, labels, name="teacher", **timing)
    teacher = _aggregate("teacher", "teacher", "pytorch", "transformer", {0: teacher_row}, None)
    teacher.seeds = []
    rows = []
    for student, seeds in runs.items():
        reports = {seed: RunReport.read(folder / "report.json") for seed, folder in seeds.items()}
        student_type = next(iter(reports.values())).distillation.student_type or "transformer"
        artefacts: dict[str, dict[int, BenchmarkRow]] = {}
        for seed, folder in seeds.items():
            deliverable = (reports[seed].export or {}).get("deliverable")
            compressed = _compressed_deliverable(folder)
            for artefact in ("student", deliverable, compressed):
                if artefact is None:
                    continue
                label = "pytorch" if artefact == "student" else artefact
                logger.info("Timing %s seed %d %s", student, seed, label)
                artefacts.setdefault(label, {})[seed] = benchmark_folder(
                    folder / artefact, texts, labels, name=f"{student} {label}", **timing)
        for label, by_seed in artefacts.items():
            # An int8 run next to an fp32 fallback run (the guard decided per seed) is one row per artefact kind.
            rows.append(_aggregate(f"{student} {label}", student, label, student_type, by_seed,
                                   {s: reports[s] for s in by_seed}))
    for row in rows:
        row.retention, row.retention_std = _mean_std([r["accuracy"] / teacher.accuracy for r in row.per_seed])
        row.speedup_b1 = teacher.latency_b1_p50_ms / row.latency_b1_p50_ms
    mark_pareto([teacher, *rows])
    return teacher, rows


def mark_pareto(rows: Sequence[FrontierRow]) -> None:
    """A row is on the front when no other row is at least as fast and at least as accurate, and better in one."""
    for row in rows:
        row.pareto = not any(
            other is not row and other.latency_b1_p50_ms <= row.latency_b1_p50_ms and other.accuracy >= row.accuracy
            and (other.latency_b1_p50_ms < row.latency_b1_p50_ms or other.accuracy > row.accuracy)
            for other in rows
        )


def within_budget(rows: Sequence[FrontierRow], budget_ms: float) -> FrontierRow | None:
    """The most accurate row whose mean batch-1 p50 latency is at most `budget_ms` (ties: the faster)."""
    fitting = [r for r in rows if r.latency_b1_p50_ms <= budget_ms]
    return max(fitting, key=lambda r: (r.accuracy, -r.latency_b1_p50_ms)) if fitting else None
