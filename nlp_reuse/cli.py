"""Command-line parsing: `HfArgumentParser` over the argument dataclasses, plus `--config x.yaml`.

The YAML file sets defaults (its keys are dataclass field names); flags on the command line override it; a key that
is no field is an error that names the closest valid ones.
"""

import argparse
import difflib
import shlex
import sys
from dataclasses import fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from nlp_reuse.errors import ConfigError, format_error
from nlp_reuse.redact import scrub_secrets


def load_yaml_defaults(path: str, valid_keys: set[str]) -> dict:
    """Read a flat YAML mapping and check every key is a known argument."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path} does not exist: expected a YAML file of argument: value pairs.")
    try:
        values = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        where, problem = "", str(err)
        if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
            where = f" at line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}"
            problem = err.problem or problem
        raise ConfigError(f"--config {path} is not valid YAML{where}: {problem}. Expected flat `argument: value` "
                          "lines; fix the line shown (quote values holding ':' or '#').") from err
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path} must hold a mapping of argument: value pairs, "
                          f"found {type(values).__name__}.")
    unknown = sorted(set(values) - valid_keys)
    if unknown:
        hints = {k: difflib.get_close_matches(k, valid_keys, n=2) for k in unknown}
        detail = "; ".join(f"{k!r}" + (f" (did you mean {', '.join(v)}?)" if v else "") for k, v in hints.items())
        raise ConfigError(f"Unknown key(s) in --config {path}: {detail}. Keys must be argument names (see --help).")
    return values


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Flag defaults in --help, and the command's docstring (its examples) printed as written, not reflowed."""


def make_parser(dataclass_types: tuple, description: str) -> HfArgumentParser:
    parser = HfArgumentParser(dataclass_types, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--config", default=None, help="YAML file of defaults (keys are the argument names below); "
                                                        "command-line flags override it.")
    return parser


def parse_args(parser: HfArgumentParser, args: list[str] | None = None) -> tuple:
    """Parse `args` (default sys.argv[1:]) into the parser's dataclasses, YAML defaults first."""
    args = list(sys.argv[1:] if args is None else args)
    config_path = _config_path(args)
    if config_path is not None:
        valid = {f.name for dtype in parser.dataclass_types for f in fields(dtype) if f.init}
        defaults = load_yaml_defaults(config_path, valid)
        parser.set_defaults(**_typed_defaults(parser, defaults, config_path))
        for action in parser._actions:  # a value from the YAML satisfies a required flag
            if action.dest in defaults:
                action.required = False
    try:
        *outputs, rest = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    except ValueError as err:  # a dataclass's range check: a flag error, reported as such
        raise ConfigError(str(err)) from err
    if rest:
        raise SystemExit(f"error: unrecognized arguments: {' '.join(rest)} (see --help)")
    return tuple(o for o in outputs if not isinstance(o, argparse.Namespace))


def _key_lines(path: str) -> dict[str, int]:
    """1-based line of each top-level key of a YAML mapping file (for messages)."""
    node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: key.start_mark.line + 1 for key, _ in node.value}


def _typed_defaults(parser: HfArgumentParser, values: dict, path: str) -> dict:
    """YAML values converted as the flag would convert them; a value of the wrong type is a ConfigError that names
    the file, line, key, the type expected and the value found, before any work starts."""
    actions = {action.dest: action for action in parser._actions}
    lines = _key_lines(path)
    converted = {}
    for key, value in values.items():
        action = actions[key]
        convert = action.type
        if value is None or convert is None or (convert is str and isinstance(value, (dict, list))):
            converted[key] = value  # None, or a mapping/list a str-typed field parses itself (student_config)
            continue
        expected = getattr(convert, "__name__", "a value")
        expected = "true or false" if expected == "string_to_bool" else expected
        try:
            if isinstance(value, (dict, list)):
                raise ValueError(type(value).__name__)
            converted[key] = convert(value if isinstance(value, str) else str(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            raise ConfigError(format_error(
                f"--config {path}, line {lines.get(key, '?')}: {key} has a value of the wrong type.",
                f"{expected}" + (f", one of {list(action.choices)}" if action.choices else ""),
                f"{value!r} ({type(value).__name__})", f"write `{key}: <{expected}>` (see --help for {key})",
            )) from err
        if action.choices and converted[key] not in action.choices:
            raise ConfigError(format_error(
                f"--config {path}, line {lines.get(key, '?')}: {key} is not one of its choices.",
                f"one of {list(action.choices)}", repr(value), f"pick one of the values listed for {key}",
            ))
    return converted


def _config_path(args: list[str]) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(args)
    return known.config


def command_line(command: str, argv: list[str] | None = None) -> str:
    """The command that reproduces this run, for reports and model cards (`argv` defaults to sys.argv[1:]).

    A run started from a checkout's `scripts/<command>.py` is recorded as that script; every other start (the
    `nlp-reuse` console command, `python -m`, `accelerate launch -m`, another command running it in-process) as
    `nlp-reuse <command>`.
    """
    entry = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    # Only the script of this very command: a run that another command starts in-process (the frontier's distill
    # runs) is reproduced by `nlp-reuse distill ...`, not by the outer script with these flags.
    if (entry is not None and entry.suffix == ".py" and entry.resolve().parent.name == "scripts"
            and entry.stem.replace("_", "-") == command):
        path = entry.resolve()
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            pass  # run from elsewhere: keep the absolute path
        prefix = ["python", str(path)]
    else:
        prefix = ["nlp-reuse", command]
    args = list(sys.argv[1:] if argv is None else argv)
    # Tokens passed as flags must never reach a report or a card.
    return scrub_secrets(" ".join([*prefix, *map(shlex.quote, args)]))
