"""The tasks file of multi-task runs (`--tasks tasks.yaml`), its data, and the `--tasks` side of the command line.

    sampling: temperature        # proportional | temperature (default proportional)
    sampling_temperature: 2.0    # p_i ∝ n_i^(1/T): T = 1 is proportional, T -> inf uniform
    max_length: 64               # also max_train_samples, max_eval_samples: defaults for every task
    tasks:
      - name: trec6              # a folder name: OUT/tasks/trec6/
        dataset_name: builtin:trec6
      - name: reviews
        train_file: data/reviews.csv     # any DataArguments flag: text_column, label_column, max_train_samples, ...
        text_column: sentence

Each task's keys are read exactly as the flags of a single-task run, and every task's data is loaded and checked
before any model is.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from datasets import DatasetDict
from transformers import HfArgumentParser

from nlp_reuse.cli import load_yaml_defaults, make_parser, parse_args
from nlp_reuse.config import DataArguments
from nlp_reuse.data import load_splits_with_extra
from nlp_reuse.errors import ConfigError, DataError, format_error
from nlp_reuse.run_entries import extra_train_entry

SAMPLING_RULES = ("proportional", "temperature")
DEFAULT_SAMPLING_TEMPERATURE = 2.0
# Data flags the tasks file may also set at its top level, as every task's default.
SHARED_DATA_KEYS = ("max_length", "max_train_samples", "max_eval_samples")
_TOP_LEVEL_KEYS = ("sampling", "sampling_temperature", "tasks", *SHARED_DATA_KEYS)
# A task name is a folder (OUT/tasks/NAME) and a key of the joint checkpoint.
_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DATA_KEYS = tuple(f.name for f in fields(DataArguments))


@dataclass
class MultiTaskArguments:
    """Multi-task mode: one shared encoder and one classification head per task, several datasets at once."""

    tasks: str | None = field(
        default=None,
        metadata={"help": "Multi-task run (MT-DNN, Liu et al. 2019): a YAML tasks file with `tasks:` (a list of "
                          "`name:` plus that task's data flags: dataset_name or train_file, text_column, "
                          "label_column, max_train_samples, max_length, ...), `sampling: proportional | "
                          "temperature` and `sampling_temperature: T` (task of each batch drawn with p_i ∝ "
                          "n_i^(1/T)). Replaces the data flags; writes OUT/joint/ (shared encoder + every head) and "
                          "OUT/tasks/NAME/ (one standard model folder per task). See configs/multitask_tasks.yaml."},
    )


@dataclass
class TaskSpec:
    """One task of the tasks file: its name and its data flags."""

    name: str
    data: DataArguments


@dataclass
class TasksFile:
    """A checked tasks file: at least two uniquely named tasks and the rule that draws the task of each batch."""

    tasks: list[TaskSpec]
    sampling: str
    sampling_temperature: float  # T of p_i ∝ n_i^(1/T); 1.0 for proportional
    source: str

    @property
    def names(self) -> list[str]:
        return [task.name for task in self.tasks]


@dataclass
class TaskData:
    """One task's checked splits (columns text [text_pair] label) and its label names in id order."""

    splits: DatasetDict
    labels: list[str]
    extra_train: dict = field(default_factory=dict)  # the task's --extra_train_file record, taken at load time


def _close(key: str, valid) -> str:
    close = difflib.get_close_matches(str(key), list(valid), n=2)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _task_flags(values: dict, where: str) -> list[str]:
    """A task's YAML mapping as the command-line flags of a single-task run."""
    argv = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            raise ConfigError(format_error(f"{where}: {key} has a value of the wrong type.", "a single value",
                                           f"{value!r} ({type(value).__name__})", f"write `{key}: VALUE`"))
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def _parse_task(entry, index: int, shared: dict, source: str) -> TaskSpec:
    where = f"tasks file {source}, task {index + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(format_error(f"{where} is not a mapping.", "`- name: NAME` followed by its data flags",
                                       repr(entry), "indent the task's keys under its `- name:` line"))
    name = entry.get("name")
    if not isinstance(name, str) or not _TASK_NAME.match(name):
        raise ConfigError(format_error(
            f"{where} has no usable name.", "`name:` letters, digits, _ and - (it names the folder OUT/tasks/NAME)",
            repr(name), "give the task a name such as `name: trec6`"))
    where = f"tasks file {source}, task {name!r}"
    values = {**shared, **{k: v for k, v in entry.items() if k != "name"}}
    unknown = sorted(set(values) - set(_DATA_KEYS))
    if unknown:
        raise ConfigError(format_error(
            f"{where} has unknown key(s).", "name plus data flags of `nlp-reuse finetune --help` (dataset_name, "
            "train_file, validation_file, test_file, text_column, label_column, max_train_samples, max_length, ...)",
            "; ".join(f"{k!r}{_close(k, _DATA_KEYS)}" for k in unknown), "fix or remove those keys"))
    parser = HfArgumentParser(DataArguments, exit_on_error=False)
    try:
        (data,) = parser.parse_args_into_dataclasses(args=_task_flags(values, where))
    except (ValueError, argparse.ArgumentError) as err:  # a range check or a value argparse cannot convert
        raise ConfigError(f"{where}: {err}") from err
    return TaskSpec(name=name, data=data)


def load_tasks_file(path: str | Path) -> TasksFile:
    """Read and check a tasks file (no data is loaded here): keys, names, sampling rule, each task's data flags."""
    source = str(path)
    if not Path(path).is_file():
        raise ConfigError(format_error("The tasks file does not exist.", "a YAML file (see "
                                       "configs/multitask_tasks.yaml)", f"no file at {source}", "pass --tasks PATH"))
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"Tasks file {source} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(format_error(f"Tasks file {source} is not a mapping.", "`sampling:` and a `tasks:` list",
                                       type(raw).__name__, "see configs/multitask_tasks.yaml"))
    unknown = sorted(set(raw) - set(_TOP_LEVEL_KEYS))
    if unknown:
        hint = {k: " (a data flag: set it under each task)" if k in _DATA_KEYS else _close(k, _TOP_LEVEL_KEYS)
                for k in unknown}
        raise ConfigError(format_error(
            f"Tasks file {source} has unknown top-level key(s).", f"{', '.join(_TOP_LEVEL_KEYS)}",
            "; ".join(f"{k!r}{hint[k]}" for k in unknown), "fix or remove those keys"))
    entries = raw.get("tasks")
    if not isinstance(entries, list) or len(entries) < 2:
        count = f"{len(entries)} task(s)" if isinstance(entries, list) else f"tasks: {entries!r}"
        raise ConfigError(format_error(
            f"Tasks file {source} names fewer than two tasks.", "a `tasks:` list of at least 2 tasks", count,
            "add tasks, or run a single-task `nlp-reuse finetune --dataset_name ...` without --tasks"))
    sampling = raw.get("sampling", "proportional")
    if sampling not in SAMPLING_RULES:
        raise ConfigError(format_error(f"Tasks file {source}: unknown sampling rule.",
                                       f"sampling: one of {', '.join(SAMPLING_RULES)}", repr(sampling),
                                       "write `sampling: proportional` or `sampling: temperature`"))
    temperature = raw.get("sampling_temperature")
    if temperature is not None and sampling != "temperature":
        raise ConfigError(format_error(
            f"Tasks file {source}: sampling_temperature is set but sampling is {sampling}.",
            "sampling_temperature only with `sampling: temperature`", f"sampling_temperature: {temperature}",
            "write `sampling: temperature`, or drop sampling_temperature"))
    if sampling == "temperature":
        temperature = DEFAULT_SAMPLING_TEMPERATURE if temperature is None else temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ConfigError(format_error(
                f"Tasks file {source}: bad sampling_temperature.", "a number T > 0 (1: proportional, large: "
                "uniform over tasks)", repr(temperature), "write e.g. `sampling_temperature: 2.0`"))
    shared = {k: raw[k] for k in SHARED_DATA_KEYS if k in raw}
    tasks = [_parse_task(entry, i, shared, source) for i, entry in enumerate(entries)]
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(format_error(f"Tasks file {source} names a task twice.", "a different name per task",
                                       f"duplicate name(s) {duplicates} in {names}",
                                       "rename one of them (names are folders: OUT/tasks/NAME)"))
    return TasksFile(tasks=tasks, sampling=sampling, source=source,
                     sampling_temperature=float(temperature) if sampling == "temperature" else 1.0)


def load_task_data(spec: TasksFile, label_names: dict[str, list[str]] | None = None) -> dict[str, TaskData]:
    """Every task's splits, loaded and checked (`label_names`: a trained model's labels per task, which fix the
    label ids); an error names the task it belongs to."""
    data = {}
    for task in spec.tasks:
        try:
            splits, labels, num_extra = load_splits_with_extra(task.data,
                                                               label_names=(label_names or {}).get(task.name))
            extra_train = extra_train_entry(task.data, num_extra)
        except DataError as err:
            raise DataError(f"Task {task.name!r} of {spec.source}: {err}") from err
        data[task.name] = TaskData(splits, labels, extra_train)
    return data


# ------------------------------------------------------------------------------------------------ command line
def _flag_names(argv: list[str]) -> list[str]:
    return [a[2:].split("=", 1)[0] for a in argv if a.startswith("--")]


def parse_multitask_args(dataclass_types: tuple, description: str, argv: list[str] | None = None) -> tuple | None:
    """With `--tasks` (on the command line or in the `--config` YAML): the command's arguments for the multi-task
    path, `(MultiTaskArguments, *dataclass_types)`; without it None (the caller parses its single-task flags).

    Data flags are refused here: each task's data is in the tasks file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--tasks")
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    config = {}
    if known.config is not None:
        valid = {f.name for dtype in (DataArguments, MultiTaskArguments, *dataclass_types) for f in fields(dtype)}
        config = load_yaml_defaults(known.config, valid)
    if known.tasks is None and config.get("tasks") is None:
        return None
    given = [f"--{k}" for k in _flag_names(argv) if k in _DATA_KEYS]
    given += [f"{k} (in --config {known.config})" for k in config if k in _DATA_KEYS]
    if given:
        raise ConfigError(format_error(
            "--tasks reads each task's data from the tasks file; single-task data flags do not apply.",
            "no data flags beside --tasks", ", ".join(given),
            "move them into the tasks file under the task they belong to (max_length, max_train_samples and "
            "max_eval_samples may also go at its top level, for every task), or drop --tasks for a single-task run"))
    return parse_args(make_parser((MultiTaskArguments, *dataclass_types), description), argv)
