"""File names the package reads and writes, the one function that claims an output folder, and the one way a
final file or folder is written (beside its name, renamed in when complete).

Every command that writes a folder goes through `prepare_output_dir`, so "not empty" means the same everywhere and
the flag that allows writing into it is named in the message.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nlp_reuse.errors import format_error

logger = logging.getLogger(__name__)

# Weights of a model folder, as save_pretrained writes them (sharded too) and as the compression steps write them.
LOW_RANK_INFO_NAME = "low_rank.json"
# A low-rank folder stores its weights under a name AutoModel does not look for, so a plain from_pretrained fails
# loudly instead of silently building a randomly initialised dense model.
LOW_RANK_WEIGHTS_NAME = "low_rank_model.safetensors"
SAFETENSORS_WEIGHTS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", LOW_RANK_WEIGHTS_NAME, "model.onnx",
                "model_quantized.onnx", "openvino_model.xml", "openvino_model.bin")
# Any one of these next to config.json means the folder carries a tokenizer vocabulary.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model")


def listing(folder: Path, limit: int = 12) -> str:
    """The folder's entries for an error message ("found: ...")."""
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")
    return shown or "an empty folder"


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files present in `folder` (shards included)."""
    folder = Path(folder)
    found = {p for pattern in (*SAFETENSORS_WEIGHTS, *WEIGHT_FILES) for p in folder.glob(pattern) if p.is_file()}
    return sorted(found - {folder / "model.safetensors.index.json"})


def prepare_output_dir(path: str | Path, *, overwrite: bool, replace: bool = False,
                       flag: str = "--overwrite_output_dir true") -> Path:
    """Create `path` and return it; an existing non-empty folder is refused unless `overwrite`.

    With `overwrite`, `replace=True` empties the folder first (a derived artefact folder: nothing in it is the
    user's); `replace=False` leaves its files for the caller to replace one by one (a run folder, whose caller removes
    its own earlier artefacts and keeps the user's files). `flag` is how the user asks for `overwrite`.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(format_error(
            "The output path is a file.", "a new or empty folder", f"a file at {folder}", "choose another folder",
        ))
    # A folder of empty folders (a run killed before it wrote anything) holds nothing to lose.
    if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
        if not overwrite:
            raise FileExistsError(format_error(
                f"Output folder {folder} is not empty; refusing to write into it.", "a new or empty folder",
                listing(folder), f"choose another folder, or pass {flag} to replace what an earlier run wrote there",
            ))
        if replace:
            logger.warning("Replacing %s", folder)
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# A file or folder being written sits beside its final name under this suffix until it is complete.
PARTIAL = ".partial"


def stage_path(final: Path) -> Path:
    """Where `final` is written before it is renamed in (hidden, beside it, so the rename stays on one disk)."""
    return final.with_name(f".{final.name}{PARTIAL}")


def write_json(path: str | Path, payload: dict, **dumps_kwargs) -> Path:
    """Write `payload` to `path` atomically: a kill leaves the previous file or the new one, never half of one."""
    path = Path(path)
    stage = stage_path(path)
    stage.write_text(json.dumps(payload, indent=2, **dumps_kwargs) + "\n")
    os.replace(stage, path)
    return path


def swap_in(stage: Path, final: Path) -> None:
    """Replace `final` (a folder or nothing) by the completed `stage`."""
    if final.exists():
        shutil.rmtree(final)
    stage.rename(final)


@contextmanager
def staged_folder(final: str | Path) -> Iterator[Path]:
    """Yield an empty folder to write `final` into; renamed over `final` when the block completes, removed when it
    raises. A killed process leaves `final` as it was (its stage is removed by the next writer)."""
    final = Path(final)
    stage = stage_path(final)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    swap_in(stage, final)
