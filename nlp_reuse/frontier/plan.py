"""The frontier's plan: a YAML of shared distill flags plus a `students:` mapping (name -> the student's own flags),
checked whole before any training, then run as one `nlp-reuse distill` per student and seed (each with its no-KD
baseline and an int8 ONNX export behind the accuracy guard).

    dataset_name: builtin:trec6          # any flag of `nlp-reuse distill`, shared by every student
    teacher_cache: runs/cache
    students:
      bilstm-128:
        student_type: bilstm
        student_embedding_dim: 128
        augment: masking,ngram
      minilm-l3:
        student_num_layers: 3
        seeds: [1]                       # this student's seeds (default: --seeds)
"""

import argparse
import copy
import difflib
import json
import logging
import re
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from nlp_reuse.cli import parse_args
from nlp_reuse.config import DataArguments
from nlp_reuse.errors import ConfigError, format_error
from nlp_reuse.files import write_json

logger = logging.getLogger(__name__)

# Set by the frontier for every run: a plan that sets them would be silently overridden.
FRONTIER_OWNED = ("output_dir", "seed", "run_baseline", "export", "overwrite_output_dir", "push_to_hub")
# Set by the frontier for a student's `compress:` step (RUN/student -> RUN/compressed, timed by the frontier).
COMPRESS_OWNED = ("model_dir", "teacher_model_name_or_path", "output_dir", "benchmark", "overwrite", "seed")
COMPRESSED_DIR = "compressed"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class FrontierPlan:
    common: dict[str, Any]  # distill flags shared by every student
    students: dict[str, dict[str, Any]]  # name -> the student's own flags (override `common`)
    source: str
    seeds: dict[str, list[int]]  # name -> its own seeds, where the plan sets them
    compress: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> `nlp-reuse compress` flags

    def seeds_of(self, name: str, default: list[int]) -> list[int]:
        return self.seeds.get(name, default)


def _distill_parser():
    from nlp_reuse.commands.distill import make_distill_parser

    return make_distill_parser()


def read_plan(path: str | Path, teacher: str | None = None) -> FrontierPlan:
    """Read and check the plan: its keys are distill flags, `students` a non-empty mapping of folder-safe names;
    data flags are shared (one test split for every row). `teacher` overrides the plan's teacher."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(format_error("Frontier plan not found.", "a YAML file (see configs/trec6_frontier.yaml)",
                                       f"no file at {path}", "pass --config PATH"))
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    students = raw.pop("students", None) if isinstance(raw, dict) else None
    if not isinstance(students, dict) or not students:
        raise ConfigError(format_error(
            f"{path} names no students.", "a `students:` mapping of name -> distill flags",
            f"students: {students!r}", "add e.g. `students: {bilstm: {student_type: bilstm}}`"))
    if teacher is not None:
        raw["teacher_model_name_or_path"] = teacher
    valid = {f.name for dtype in _distill_parser().dataclass_types for f in fields(dtype) if f.init}
    data_keys = {f.name for f in fields(DataArguments)}
    _check_keys(raw, valid, path, "the shared flags")
    seeds, compress = {}, {}
    for name, flags in students.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{path}: student name {name!r} must be a folder name (letters, digits, . _ -).")
        if not isinstance(flags, dict):
            raise ConfigError(f"{path}: students.{name} must be a mapping of distill flags, got {flags!r}.")
        if "seeds" in flags:
            own = flags.pop("seeds")
            if not isinstance(own, list) or not own or not all(isinstance(s, int) for s in own):
                raise ConfigError(f"{path}: students.{name}.seeds must be a list of integers such as [1], "
                                  f"got {own!r}.")
            seeds[name] = own
        if "compress" in flags:
            compress[name] = _check_compress(flags.pop("compress"), path, name)
        _check_keys(flags, valid, path, f"students.{name}")
        shadowed = sorted(set(flags) & data_keys)
        if shadowed:
            raise ConfigError(format_error(
                f"{path}: students.{name} sets data flags; every student is measured on one test split.",
                "data flags (dataset_name, max_length, ...) at the top level only", ", ".join(shadowed),
                "move them to the top level of the plan"))
    return FrontierPlan(common=raw, students=students, source=str(path), seeds=seeds, compress=compress)


def _check_compress(flags: Any, path: Path, name: str) -> dict[str, Any]:
    """A student's `compress:` mapping: flags of `nlp-reuse compress` (pruning, QAT, OpenVINO), parsed now."""
    from nlp_reuse.compress.joint import CompressArguments

    where = f"students.{name}.compress"
    if not isinstance(flags, dict):
        raise ConfigError(f"{path}: {where} must be a mapping of `nlp-reuse compress` flags, got {flags!r}.")
    _check_keys(flags, {f.name for f in fields(CompressArguments)} - set(COMPRESS_OWNED), path, where,
                owned=COMPRESS_OWNED, command="compress")
    try:
        CompressArguments(model_dir="student", teacher_model_name_or_path="teacher", output_dir="out", **flags)
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"{path}: {where}: {err}") from err
    return flags


def compress_flags(plan: FrontierPlan, name: str, seed: int, folder: Path) -> dict[str, Any] | None:
    """The `nlp-reuse compress` flags of one student's run (None: the student has no compress step)."""
    if name not in plan.compress:
        return None
    teacher = {**plan.common, **plan.students[name]}.get("teacher_model_name_or_path")
    return {"model_dir": str(folder / "student"), "teacher_model_name_or_path": teacher,
            "output_dir": str(folder / COMPRESSED_DIR), "benchmark": False, "overwrite": True, "seed": seed,
            **plan.compress[name]}


def _check_keys(flags: dict, valid: set[str], path: Path, where: str, *, owned: tuple[str, ...] = FRONTIER_OWNED,
                command: str = "distill") -> None:
    """Every key a flag of `nlp-reuse COMMAND` that the frontier does not set itself (`owned`)."""
    for key in flags:
        if key in owned:
            raise ConfigError(f"{path}: {where} sets {key!r}, which the frontier sets for every run; remove it.")
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=3)
            raise ConfigError(format_error(
                f"{path}: unknown flag {key!r} in {where}.", f"flags of `nlp-reuse {command} --help`",
                repr(key), f"did you mean {', '.join(close)}?" if close else "check the spelling"))


def to_argv(flags: dict[str, Any]) -> list[str]:
    """`--key value` pairs as the distill parser reads them (booleans true/false, mappings as JSON)."""
    argv = []
    for key, value in flags.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, dict):
            value = json.dumps(value)
        argv += [f"--{key}", str(value)]
    return argv


def run_flags(plan: FrontierPlan, name: str, seed: int, run_dir: Path, cache_dir: Path) -> dict[str, Any]:
    """Every flag of one student's run at one seed."""
    flags = {"teacher_cache": str(cache_dir), **copy.deepcopy(plan.common), **copy.deepcopy(plan.students[name])}
    return {**flags, "seed": seed, "output_dir": str(run_dir), "run_baseline": True, "export": "onnx_int8",
            "overwrite_output_dir": True}


def check_runs(plan: FrontierPlan, seeds: list[int], root: Path) -> None:
    """Parse every run's flags (types, ranges, combinations) before the first one trains."""
    parser = _distill_parser()
    parser.exit_on_error = False  # a bad value raises, so the message can name the student
    for name in plan.students:
        try:
            parse_args(parser, to_argv(run_flags(plan, name, plan.seeds_of(name, seeds)[0], root / name,
                                                            root / "cache")))
        except (ConfigError, ValueError, argparse.ArgumentError) as err:
            raise ConfigError(f"{plan.source}: students.{name}: {err}") from err
        if name in plan.compress:
            _check_compress_step(plan, name)


def _check_compress_step(plan: FrontierPlan, name: str) -> None:
    """A `compress:` step fails here, before any training, rather than after its student trained."""
    from nlp_reuse.compress.joint import CompressArguments, check_optional_libraries

    flags = {**plan.common, **plan.students[name]}
    if flags.get("student_type", "transformer") != "transformer":
        raise ConfigError(format_error(
            f"{plan.source}: students.{name}.compress needs a transformer student.",
            "student_type transformer (heads and FFN neurons to prune, a BERT graph to quantize)",
            f"student_type {flags['student_type']}", "remove its compress: step"))
    teacher = flags.get("teacher_model_name_or_path")
    if not teacher or not Path(teacher).is_dir():
        raise ConfigError(format_error(
            f"{plan.source}: students.{name}.compress needs a local teacher folder.",
            "teacher_model_name_or_path pointing at a fine-tuned classifier folder", repr(teacher),
            "pass --teacher_model_name_or_path with a local folder (download a Hub teacher first)"))
    check_optional_libraries(CompressArguments(model_dir="student", teacher_model_name_or_path=teacher,
                                               output_dir="out", **plan.compress[name]))


def _data_flags(plan: FrontierPlan) -> dict[str, Any]:
    data_keys = {f.name for f in fields(DataArguments)}
    return {k: v for k, v in plan.common.items() if k in data_keys}


def run_dir(root: Path, name: str, seed: int) -> Path:
    return root / "runs" / name / f"seed{seed}"


RUN_FLAGS_FILE = "frontier_flags.json"


def _finished_with(folder: Path, flags: dict[str, Any]) -> bool:
    """A run is kept only when it finished (report.json) with exactly these flags: after an edit of the plan the
    student trains again instead of being measured stale."""
    marker = folder / RUN_FLAGS_FILE
    return (folder / "report.json").is_file() and marker.is_file() and json.loads(marker.read_text()) == flags


def run_plan(plan: FrontierPlan, seeds: list[int], root: Path, redo: bool = False) -> dict[str, dict[int, Path]]:
    """Distill every student at every seed into ROOT/runs/NAME/seedS/. A run that finished with the same flags is
    kept (a stopped frontier goes on where it stopped) unless `redo`."""
    from nlp_reuse.commands.distill import main as distill

    check_runs(plan, seeds, root)
    runs: dict[str, dict[int, Path]] = {}
    for name in plan.students:
        for seed in plan.seeds_of(name, seeds):
            folder = run_dir(root, name, seed)
            runs.setdefault(name, {})[seed] = folder
            flags = run_flags(plan, name, seed, folder, root / "cache")
            compress = compress_flags(plan, name, seed, folder)
            if compress is not None:
                flags = {**flags, "compress": compress}
            if not redo and _finished_with(folder, flags):
                logger.info("Keeping %s (finished with the same flags; --redo true trains it again).", folder)
                continue
            logger.info("Distilling %s, seed %d -> %s", name, seed, folder)
            distill(to_argv({k: v for k, v in flags.items() if k != "compress"}))
            if compress is None:  # a compress step the plan no longer has must not be measured stale
                shutil.rmtree(folder / COMPRESSED_DIR, ignore_errors=True)
            else:
                from nlp_reuse.commands.compress import main as compress_main

                logger.info("Compressing %s, seed %d -> %s", name, seed, compress["output_dir"])
                compress_main(to_argv({**compress, **_data_flags(plan)}))
            write_json(folder / RUN_FLAGS_FILE, flags)  # written last: marks the run finished with these flags
    return runs
