"""Teacher-output cache: the teacher's logits on the training set, computed once and reused across runs.

A distillation epoch otherwise pays a teacher forward pass per step. The cache is a `datasets` Arrow dataset
(`example_idx`, `teacher_logits`) stored under `CACHE_DIR/<fingerprint>/`, where the fingerprint hashes the
teacher's weights, the tokenized training inputs (so the data, the tokenizer and `max_length`) and the cache
format. A run with another teacher or other data gets another fingerprint and recomputes; entries never mix.
"""

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets, load_from_disk

from nlp_reuse.predict import predict_logits

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
LOGITS_COLUMN = "teacher_logits"
# Hashed by `fingerprint` in this order: part of the cache format (predict.MODEL_INPUTS may change freely).
INPUT_COLUMNS = ("input_ids", "token_type_ids", "attention_mask")


def fingerprint(teacher: torch.nn.Module, dataset: Dataset, compute_dtype: torch.dtype | None = None,
                batch_size: int = 4096) -> str:
    """Hash of everything that changes the logits: the teacher's weights, the autocast dtype they are computed
    under (None: the weights' own), and the tokenized inputs, in order."""
    h = hashlib.sha256(f"nlp_reuse-teacher-cache-{CACHE_FORMAT}-compute:{compute_dtype}".encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-dim too
    columns = [c for c in INPUT_COLUMNS if c in dataset.column_names]
    h.update(json.dumps([columns, len(dataset)]).encode())
    for batch in dataset.select_columns(columns).iter(batch_size=batch_size):
        h.update(json.dumps([batch[c] for c in columns]).encode())
    return h.hexdigest()[:20]


def compute_teacher_logits(teacher: torch.nn.Module, dataset: Dataset, collator, batch_size: int = 128,
                           dtype: torch.dtype | None = None) -> np.ndarray:
    """Teacher logits for every example, in order, on the teacher's device: batched, no grad, in `dtype`
    (autocast) when given. Returns (num_examples, num_labels) float32.

    Batches are formed over the examples sorted by length, so a short text is not padded to a long neighbour's
    length (several times less work on augmented sets of n-grams); the rows come back in the dataset's order."""
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    logits = predict_logits(teacher, dataset.select(order), collator=collator, batch_size=batch_size,
                            autocast_dtype=dtype, desc="Teacher logits (cache)")
    restored = np.empty_like(logits)
    restored[order] = logits
    return restored


def load_or_compute(teacher: torch.nn.Module, dataset: Dataset, collator, cache_dir: str | Path,
                    batch_size: int = 128, dtype: torch.dtype | None = None) -> tuple[Dataset, dict]:
    """The cached logits for `dataset` (computing and storing them if absent) and what happened, for reports.

    Call it on the main process first (`TrainingArguments.main_process_first`): the others then find the entry.
    """
    key = fingerprint(teacher, dataset, dtype)
    entry = Path(cache_dir) / key
    info = {"fingerprint": key, "path": str(entry), "computed": False, "seconds": 0.0}
    if not (entry / "dataset_info.json").is_file():
        start = time.perf_counter()
        logits = compute_teacher_logits(teacher, dataset, collator, batch_size, dtype)
        cached = Dataset.from_dict({"example_idx": np.arange(len(dataset)), LOGITS_COLUMN: logits})
        staging = entry.with_name(f"{key}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        cached.save_to_disk(str(staging))
        staging.rename(entry)  # atomic: a crash never leaves a half-written entry under the real name
        info.update(computed=True, seconds=round(time.perf_counter() - start, 3))
        logger.info("Teacher logits for %d examples cached in %s (%.1fs).", len(dataset), entry, info["seconds"])
    cached = load_from_disk(str(entry))
    if len(cached) != len(dataset) or cached[-1]["example_idx"] != len(dataset) - 1:
        raise RuntimeError(f"Teacher cache {entry} holds {len(cached)} rows for {len(dataset)} examples; delete it.")
    return cached, info


def attach_teacher_logits(dataset: Dataset, cached: Dataset) -> Dataset:
    """`dataset` with the cached `teacher_logits` column beside it (row i is example i)."""
    if LOGITS_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(LOGITS_COLUMN)
    return concatenate_datasets([dataset, cached.select_columns([LOGITS_COLUMN])], axis=1)


def with_teacher_cache(args, cache_dir: str, teacher: torch.nn.Module, train_dataset: Dataset, collator,
                       dtype: torch.dtype) -> tuple[Dataset, dict | None]:
    """The training set with cached teacher logits attached (computed once, on the main process first), for a run
    with DistillationArguments `args` and the teacher's compute `dtype`; unchanged when the losses need more than
    logits."""
    if args.hidden_loss_weight > 0 or args.attention_loss_weight > 0:
        logger.warning("--teacher_cache holds logits only: hidden-state / attention losses still run the live "
                       "teacher every step, so the cache is not used in this run.")
        return train_dataset, None
    teacher.to(args.device)
    with args.main_process_first(desc="teacher logits cache"):
        cached, info = load_or_compute(teacher, train_dataset, collator, cache_dir,
                                       batch_size=args.per_device_eval_batch_size,
                                       dtype=dtype if dtype != torch.float32 else None)
    return attach_teacher_logits(train_dataset, cached), info
