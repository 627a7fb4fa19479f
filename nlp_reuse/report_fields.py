"""Reading report.json objects with typed checks: each key's JSON kind, the keys left unread (kept, so a report of
another version round-trips), and a `ReportError` that names the key's path and the file. The schema classes that use
this live in `nlp_reuse.report`."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlp_reuse.errors import NlpReuseError, format_error

FIX = "regenerate the report with `nlp-reuse distill` (artefacts: `nlp-reuse export`), or correct that key by hand"


class ReportError(NlpReuseError):
    """A report.json that lacks a key the package reads, or holds a value of the wrong type there."""


# ------------------------------------------------------------------------------------------------ reading JSON


@dataclass(frozen=True)
class Kind:
    """A JSON value a key may hold: its name in messages, and the check."""

    name: str
    check: Callable[[Any], bool]


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no count


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


INT = Kind("an integer", is_int)
NUMBER = Kind("a number", is_number)
STR = Kind("a string", lambda v: isinstance(v, str))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
STR_LIST = Kind("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
LAYER_PAIRS = Kind(
    "a list of [student_layer, teacher_layer] pairs",
    lambda v: isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 and all(map(is_int, p)) for p in v),
)


def json_name(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class Fields:
    """One JSON object of a report being read: typed values by key, the keys left unread, and errors that name
    the object's path in the file and the file."""

    def __init__(self, value: Any, where: str, source: str):
        self._where, self._source = where, source
        if not isinstance(value, dict):
            raise self._type_error(where, value, OBJECT)
        self._value, self._read = value, set()

    def require(self, required: Iterable[str]) -> Fields:
        """Check that every key in `required` is present; all missing ones are named at once."""
        required = list(required)
        missing = [key for key in required if key not in self._value]
        if missing:
            where, source = self._where, self._source
            problem = f"{source}: '{where}' lacks {missing}." if where else f"{source} lacks {missing}."
            raise ReportError(format_error(
                problem, f"{repr(where) if where else 'the report'} to have {required}",
                f"the keys {sorted(self._value)}", FIX,
            ))
        return self

    def path(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def _type_error(self, where: str, value: Any, kind: Kind) -> ReportError:
        shown = json.dumps(value, default=repr)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return ReportError(format_error(
            f"{self._source}: '{where}' has the wrong type.", kind.name, f"{json_name(value)}, {shown}", FIX,
        ))

    def get(self, key: str, kind: Kind) -> Any:
        """A copy of the value at `key` (None when absent), checked against `kind`."""
        self._read.add(key)
        if key not in self._value:
            return None
        value = self._value[key]
        if not kind.check(value):
            raise self._type_error(self.path(key), value, kind)
        return copy.deepcopy(value)

    def nested(self, key: str) -> Fields | None:
        """The object at `key` (None when absent)."""
        self._read.add(key)
        if key not in self._value:
            return None
        return Fields(self._value[key], self.path(key), self._source)

    def keys(self) -> list[str]:
        return list(self._value)

    def all_of(self, kind: Kind) -> dict[str, Any]:
        """The whole object, every value checked against `kind` (a dict of metrics)."""
        return {key: self.get(key, kind) for key in self.keys()}

    def extra(self) -> dict[str, Any]:
        """The keys not read so far, kept as they are."""
        return {key: copy.deepcopy(value) for key, value in self._value.items() if key not in self._read}


def present(pairs: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A report object from (key, value) pairs in file order: optional values that are absent (None) left out,
    then the keys this version does not know."""
    return {**{k: copy.deepcopy(v) for k, v in pairs.items() if v is not None}, **copy.deepcopy(extra)}


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in `path`; a file that is no JSON object is a ReportError naming the line."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(format_error(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}).", "a JSON object",
            "text that does not parse", f"fix that line, or {FIX}",
        )) from err
    if not isinstance(value, dict):
        raise ReportError(format_error(f"{path} holds {json_name(value)}.", "a JSON object",
                                       json_name(value), FIX))
    return value
