"""The report entries a run writes: a model's row of report.json, the task's, and run_args.json.

`model_entry` serves the single-task jobs (`nlp_reuse.pipeline`) and the multi-task ones
(`nlp_reuse.multitask.pipeline`, which writes its own task entries and run_args.json).
"""

import dataclasses
from pathlib import Path

from transformers import PreTrainedModel

from nlp_reuse.config import DataArguments, DistillScriptArguments, NlpReuseTrainingArguments
from nlp_reuse.data import describe
from nlp_reuse.evaluation import size_on_disk_mb, torch_latency_ms
from nlp_reuse.modeling import count_parameters, num_layers
from nlp_reuse.pseudo_label import pseudo_label_record
from nlp_reuse.report import TEST_METRICS, ModelEntry, TaskInfo


def _weights_size_mb(model: PreTrainedModel, folder: str | Path | None) -> float:
    if folder is not None and Path(folder).is_dir():
        try:
            return size_on_disk_mb(folder)
        except FileNotFoundError:
            pass  # a Hub snapshot without local weights: fall back to the in-memory size below
    return sum(p.numel() * p.element_size() for p in model.state_dict().values()) / 1e6


def model_entry(model: PreTrainedModel, test_metrics: dict, folder: str | Path | None, tokenizer,
                latency_texts: list[str], max_length: int, **fields) -> ModelEntry:
    """One row of the report: size, depth, test metrics and batch-1 CPU latency of `model` (`fields`: the
    entry's optional ModelEntry fields, e.g. path)."""
    model = model.to("cpu").eval()
    return ModelEntry(
        params=count_parameters(model), num_layers=num_layers(model),
        size_mb=round(_weights_size_mb(model, folder), 3),
        test={k: test_metrics[f"test_{k}"] for k in TEST_METRICS},
        latency_ms=round(torch_latency_ms(model, tokenizer, latency_texts, max_length), 3), **fields,
    )


def _run_args(data_args: DataArguments, args: NlpReuseTrainingArguments,
              script: DistillScriptArguments | None = None) -> dict:
    # TrainingArguments.to_dict() masks tokens (hub_token -> "<HUB_TOKEN>").
    return {"data": dataclasses.asdict(data_args), **({"run": dataclasses.asdict(script)} if script else {}),
            "training": args.to_dict()}


def extra_train_entry(data_args: DataArguments, num_rows: int) -> dict:
    """What the task entry records of --extra_train_file, taken when the data is loaded (the file may change while
    the run trains): its resolved path, the `num_rows` the train split took from it (num_train counts them too)
    and, for `nlp-reuse pseudo-label` output, how the rows were labelled (copied from the report beside the file)."""
    if data_args.extra_train_file is None:
        return {}
    path = Path(data_args.extra_train_file).resolve()
    made = pseudo_label_record(path)
    return {"extra_train_file": str(path), "num_extra_train": num_rows,
            **({"extra_train_labelled_by": made} if made else {})}


def _task_entry(data_args: DataArguments, labels: list[str], splits, extra: dict | None = None) -> TaskInfo:
    sizes = describe(splits)
    return TaskInfo(dataset=data_args.dataset_name or data_args.train_file, labels=labels,
                    text_column=data_args.text_column, num_train=sizes["num_train"],
                    num_validation=sizes["num_validation"], num_test=sizes["num_test"], extra=extra or {})
