"""Credentials kept out of what the package writes or publishes: command lines, run records, the upload folder.

Kept apart from nlp_reuse.hub so that recording a command line (nlp_reuse.cli) does not load the publishing code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from huggingface_hub import get_token

from nlp_reuse.errors import NlpReuseError, format_error

REDACTED = "<redacted>"

# Argument names whose values are credentials (TrainingArguments' hub_token, push_to_hub_token, ...).
SECRET_KEY = re.compile(r"^(.*_)?(token|auth_token|access_token|api_key|password|secret)$", re.IGNORECASE)
# Tokenizer special tokens share the `_token` suffix but are not secrets.
NOT_SECRET_KEYS = frozenset(f"{name}_token" for name in ("pad", "unk", "bos", "eos", "cls", "sep", "mask"))
SECRET_FLAG = re.compile(r"(--[\w-]*(?:token|api_key|password|secret)(?:=|\s+))(\S+)", re.IGNORECASE)
HF_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{20,}")
# Shorter strings are not searched for: they would match ordinary text by chance.
MIN_SECRET_LENGTH = 8


def known_secrets(token: str | None = None) -> list[str]:
    """The token(s) this process could push with: `token`, HF_TOKEN, HUGGING_FACE_HUB_TOKEN and the saved login."""
    candidates = {token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"), get_token()}
    return sorted(s for s in candidates if s and len(s) >= MIN_SECRET_LENGTH)


def is_secret_key(key: str) -> bool:
    """Whether a field named `key` holds a credential (``hub_token`` does, ``pad_token`` does not)."""
    return bool(SECRET_KEY.match(key)) and key.lower() not in NOT_SECRET_KEYS


def scrub_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given `secrets`, ``--*token VALUE`` flag values and Hub-token-shaped strings redacted."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = SECRET_FLAG.sub(lambda m: m.group(1) + REDACTED, text)
    return HF_TOKEN_SHAPE.sub(REDACTED, text)


def scrub_secrets(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Copy of a JSON value (or a string, e.g. a command line) with credential-named fields, ``--*token VALUE``
    flags, Hub-token-shaped strings and the given ``secrets`` replaced by ``<redacted>``."""
    secrets = list(secrets)
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_key(key) and item not in (None, "", False) else scrub_secrets(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub_secrets(item, secrets) for item in value]
    if isinstance(value, str):
        return scrub_text(value, secrets)
    return value


def ensure_no_secret(folder: str | Path, secrets: Iterable[str]) -> None:
    """Refuse a folder in which any of `secrets` occurs, byte for byte, in any file (the last check before upload)."""
    folder = Path(folder)
    encoded = [s.encode() for s in secrets]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(secret in data for secret in encoded):
            raise NlpReuseError(format_error(
                f"A Hub token is inside {path.relative_to(folder)}; nothing was uploaded.",
                "no Hub token in the upload folder", f"the token in {path.relative_to(folder)}",
                "remove the token from that file in the run folder",
            ))
