"""Reuse of the teacher's measurements (test metrics, size, latency) across distillation runs.

Every `distill` run used to re-evaluate and re-time the teacher on the test split, though neither changes while the
teacher, the test data and the measurement settings stay the same. The entry lives beside the teacher-logit cache
(`--teacher_cache DIR` → `DIR/measurements/<key>.json`), keyed like it: the teacher's weights and the tokenized test
inputs (`teacher_cache.fingerprint`), plus the labels and every setting that changes a number (maximum length,
latency sample count, threads, precision flags, library versions, CPU). Any change gives another key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from pathlib import Path

import torch
import transformers
from datasets import Dataset

from nlp_reuse.files import write_json
from nlp_reuse.teacher_cache import fingerprint

logger = logging.getLogger(__name__)

FORMAT = 1


def measurement_key(teacher: torch.nn.Module, test_dataset: Dataset, settings: dict) -> str:
    """Hash of the teacher's weights, the tokenized test inputs and labels, and `settings` (JSON-serialisable)."""
    h = hashlib.sha256(f"nlp_reuse-teacher-measurements-{FORMAT}".encode())
    h.update(fingerprint(teacher, test_dataset).encode())
    h.update(json.dumps(list(test_dataset["label"])).encode())
    environment = {"torch": torch.__version__, "transformers": transformers.__version__,
                   "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                   "threads": torch.get_num_threads()}
    h.update(json.dumps({**settings, **environment}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def lookup(cache_dir: str | Path | None, args, max_length: int, teacher: torch.nn.Module,
           test_dataset: Dataset) -> tuple[str | None, dict | None]:
    """(key, stored measurements or None) for a run with TrainingArguments-like `args`; (None, None) without a
    cache folder."""
    if cache_dir is None:
        return None, None
    key = measurement_key(teacher, test_dataset, {
        "max_length": max_length, "latency_samples": args.latency_samples, "bf16": args.bf16, "fp16": args.fp16,
        "eval_batch_size": args.per_device_eval_batch_size})
    return key, read_measurements(cache_dir, key)


def entry_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / "measurements" / f"{key}.json"


def read_measurements(cache_dir: str | Path, key: str) -> dict | None:
    """The stored measurements for `key`, or None when there are none yet."""
    path = entry_path(cache_dir, key)
    if not path.is_file():
        return None
    logger.info("Teacher measurements reused from %s (same teacher, test data and settings).", path)
    return json.loads(path.read_text())


def write_measurements(cache_dir: str | Path, key: str, measurements: dict) -> Path:
    """Store `measurements` under `key`, atomically: a killed run never leaves a half-written entry."""
    path = entry_path(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, measurements, sort_keys=True)
