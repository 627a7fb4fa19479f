"""The user-error types of the package and their one message shape (problem / expected / found / fix).

A user error is bad input or a bad flag: the command line prints its message and exits 2 without a traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NlpReuseError(ValueError):
    """Bad input or a bad flag; the message says what was expected, what was found and how to fix it."""


class ConfigError(NlpReuseError):
    """A flag or a --config file that cannot be used as it is."""


class DataError(NlpReuseError):
    """The user's data does not match what was asked for."""


class ModelError(NlpReuseError):
    """A model or tokenizer that does not fit the task or cannot be read."""


class LayerMapError(NlpReuseError):
    """A student-to-teacher layer map that does not fit the two models."""


class StrategyError(NlpReuseError):
    """A transfer strategy, or a combination of strategy flags, that cannot be applied."""


# Raised for bad paths; the command line treats them as user errors too.
USER_ERRORS = (NlpReuseError, FileExistsError, FileNotFoundError)


def format_error(problem: str, expected: str, found: str, fix: str) -> str:
    """One error message layout for the package: problem, expected, found, how to fix."""
    return f"{problem}\n  expected: {expected}\n  found:    {found}\n  fix:      {fix}"


def check_range(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    """Refuse --`name` outside [low, high] (or (low, high] with `low_open`), before any work."""
    below = value <= low if low_open else value < low
    if below or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"--{name} must be in {bracket}{low}, {high}], got {value}.")
