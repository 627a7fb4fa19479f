"""The upload folder of a run, and the push of it to a Hugging Face Hub repo in one commit.

Only the deliverable ships: the student's model files at the repo root, each ONNX folder as a subfolder, the model
card (``README.md``) and the run's JSON records with secrets scrubbed. Checkpoints, optimizer states, projections and
the baseline stay home.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from nlp_reuse.files import SAFETENSORS_WEIGHTS, TOKENIZER_FILES, staged_folder
from nlp_reuse.hub.card import render_model_card
from nlp_reuse.hub.lineage import format_metric
from nlp_reuse.hub.run_folder import EXPORT_RECORD, ONNX_SUBFOLDERS, load_run_report, read_run_folder
from nlp_reuse.redact import ensure_no_secret, known_secrets, scrub_secrets, scrub_text
from nlp_reuse.report import RunReport, read_json_object

logger = logging.getLogger(__name__)

# Allowlists, not blocklists: whatever a trainer leaves beside the model (optimizer.pt, training_args.bin,
# checkpoint-*/, projections, rng states) is never uploaded by accident.
# transformers 5 saves a fast tokenizer as tokenizer.json + tokenizer_config.json (+ chat_template.jinja when it has a
# chat template); the other names are what transformers 4 and slow/sentencepiece tokenizers wrote, so a student saved
# by either loads back from the repo.
CONFIG_AND_TOKENIZER_PATTERNS = (
    "config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja",
    "special_tokens_map.json", "added_tokens.json", "merges.txt", "sentencepiece.bpe.model", *TOKENIZER_FILES,
)
# External weights of a large graph, and nlp_reuse.compress's record of what was applied. ort_config.json is what
# Optimum's quantizer wrote beside an int8 graph (runs exported before the torch.onnx + onnxruntime export).
ONNX_SIDE_FILE_PATTERNS = ("*.onnx_data", "*.onnx.data", "ort_config.json", "compression.json")
# Run-level JSON records that ship, scrubbed: the run's numbers, its arguments, and the export's numbers.
RECORD_FILES = ("report.json", "run_args.json", EXPORT_RECORD)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def _copy_matching(src: Path, dst: Path, patterns: Iterable[str], renames: dict[str, str] | None = None) -> None:
    """Copy the files of `src` whose names match `patterns` (or are keys of `renames`, copied under the new name)."""
    patterns, renames = tuple(patterns), renames or {}
    dst.mkdir(parents=True, exist_ok=True)
    skipped = []
    for path in sorted(src.iterdir()):
        if path.is_file() and path.name in renames:
            shutil.copyfile(path, dst / renames[path.name])
        elif path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            shutil.copyfile(path, dst / path.name)
        else:
            skipped.append(path.name + ("/" if path.is_dir() else ""))
    if skipped:
        logger.info("Not uploaded from %s: %s", src, ", ".join(skipped))


def prepare_upload_folder(run_dir: str | Path, out_dir: str | Path, *, task: str | None = None,
                          repo_id: str | None = None, token: str | None = None, **card_kwargs: Any) -> list[str]:
    """Write exactly what a push uploads into ``out_dir`` (must be new or empty); return its relative file paths.

    Layout: the student's model and tokenizer files at the root; README.md (the card); report.json, run_args.json
    and export_report.json when present (credentials redacted); ``onnx/`` (model.onnx) and ``onnx_int8/``
    (model_quantized.onnx), each with config and tokenizer, when the run has them. The final check makes sure
    ``token`` (and HF_TOKEN, and the saved login) is nowhere inside.
    For a multi-task run (`nlp-reuse distill --tasks`) `task` picks the model: ``tasks/TASK/`` is the student, the
    card is that task's, and the report.json shipped is the whole run's; the task's ONNX folders and
    export_report.json come from ``exports/TASK/`` (`distill --tasks --export`), while run-level ones stay home
    (they describe another model), with a warning naming them.
    ``card_kwargs`` go to :func:`render_model_card` (license, language, base_model, template_path).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    folder = read_run_folder(run_dir, task)
    report, student, onnx = folder.report, folder.model_dir, folder.onnx
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"Expected a new or empty folder for the upload; found files in {out_dir}. "
            "Fix: pass a new path (the folder must hold exactly what would be uploaded)."
        )
    for name in report.artefacts or {}:
        if name in ONNX_SUBFOLDERS and name not in onnx:
            logger.warning("report.json lists artefact '%s' but %s has no .onnx file; it is not uploaded.",
                           name, folder.export_dir / name)
    if folder.ignored:
        logger.warning("Not uploaded with --task %s: %s of %s. They describe a model exported from the run folder, "
                       "not task %s's student; `nlp-reuse distill --tasks --export onnx_int8` exports each task's to "
                       "exports/TASK/, which ships.", task, ", ".join(folder.ignored), run_dir, task)
    card = render_model_card(run_dir, task=task, repo_id=repo_id, **card_kwargs)
    secrets = known_secrets(token)

    # Built beside its final name and renamed in when complete and checked: a killed run or a found token leaves
    # no half-written folder, and no file holding the token, under the name the user gave.
    with staged_folder(out_dir) as stage:
        _copy_matching(student, stage, SAFETENSORS_WEIGHTS + CONFIG_AND_TOKENIZER_PATTERNS)
        for name, onnx_file in onnx.items():
            _copy_matching(onnx_file.parent, stage / name, ONNX_SIDE_FILE_PATTERNS + CONFIG_AND_TOKENIZER_PATTERNS,
                           renames={onnx_file.name: ONNX_SUBFOLDERS[name]})
        (stage / "README.md").write_text(scrub_text(card, secrets))
        for name in RECORD_FILES:
            path = (folder.export_dir if name == EXPORT_RECORD else run_dir) / name  # a task's: exports/TASK/
            if path.is_file() and not (path.parent == run_dir and name in folder.ignored):
                # As the run wrote it, not re-serialised from a RunReport.
                record = scrub_secrets(read_json_object(path), secrets)
                (stage / name).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        ensure_no_secret(stage, secrets)
    return sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())


def describe_folder(folder: str | Path) -> str:
    """One line per file, ``size  path``, sorted by path: what a dry run or a push ships."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    lines = [f"{p.stat().st_size:>12,d}  {p.relative_to(folder).as_posix()}" for p in files]
    total = sum(p.stat().st_size for p in files)
    return "\n".join(lines + [f"{total:>12,d}  total ({len(files)} files)"])


def check_repo_id(repo_id: str) -> str:
    """Validate an OWNER/NAME model repo id before any work; returns it unchanged."""
    try:
        validate_repo_id(repo_id)
        valid = bool(_REPO_ID.match(repo_id))
    except HFValidationError:
        valid = False
    if not valid:
        raise ValueError(
            f"Expected a Hub repo id OWNER/NAME (letters, digits, '-', '_', '.'; no '--' or '..'; at most 96 "
            f"characters); found {repo_id!r}. Fix: pass e.g. --repo_id my-user/bert-tiny-trec6."
        )
    return repo_id


def _resolve_token(token: str | None) -> str:
    token = token or get_token()  # get_token: HF_TOKEN, then the login saved by `hf auth login`
    if not token:
        raise PermissionError(
            "Expected a Hub token with write access; found none (no token argument, no HF_TOKEN, no saved login). "
            "Fix: `hf auth login`, or export HF_TOKEN=... in the shell that pushes (never put it in a config file)."
        )
    return token


def _resolve_endpoint() -> str:
    """The Hub endpoint, HF_ENDPOINT as huggingface_hub read it at import.

    A value set later (a notebook cell, a test) cannot simply be passed as ``HfApi(endpoint=...)``: huggingface_hub
    2.4 still uses the import-time endpoint where ``HfApi`` does not reach (the agent-harness registry it fetches
    before its first request goes there, and the hosts it trusts with the token on redirects are fixed at import), so
    one push would talk to two hosts. Refuse before uploading instead.
    """
    late = os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")
    if late != constants.ENDPOINT:
        raise ValueError(
            f"Expected HF_ENDPOINT to be set before huggingface_hub is imported; found HF_ENDPOINT={late} in the "
            f"environment but {constants.ENDPOINT} in use. Fix: set HF_ENDPOINT before starting Python "
            "(HF_ENDPOINT=... python scripts/push.py ...)."
        )
    return constants.ENDPOINT


def _check_online() -> None:
    if constants.is_offline_mode():
        raise ConnectionError(
            "Expected online mode to push; found HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set, which the Makefile and "
            "the tests set by default. Fix: run the push with HF_HUB_OFFLINE=0, or use --dry_run OUT to only write "
            "the folder."
        )


def default_commit_message(report: RunReport, task: str | None = None) -> str:
    """Commit message built from the report: what was uploaded (`task`: which task of a multi-task run) and its
    headline numbers."""
    what = f"task {task} of a multi-task distilled student" if task is not None else "distilled student"
    return (
        f"Upload {report.student.num_layers}-layer {what} (test accuracy "
        f"{format_metric(report.student.test['accuracy'])}, {100 * report.retention:.1f}% of teacher) with nlp_reuse"
    )


def push_to_hub(run_dir: str | Path, repo_id: str, *, task: str | None = None, private: bool = False,
                revision: str | None = None, commit_message: str | None = None, token: str | None = None,
                delete_patterns: list[str] | str | None = None, dry_run: str | Path | None = None,
                **card_kwargs: Any) -> str:
    """Upload a run's deliverables to ``repo_id`` in one commit; return the repo URL (the dry-run folder if dry_run).

    Creates the repo when missing (``private`` applies then only) and the branch ``revision`` when missing. Remote
    files are never deleted unless they match ``delete_patterns`` (``.gitattributes`` is always kept). The token is
    ``token``, else HF_TOKEN, else the saved login; the endpoint is HF_ENDPOINT (set before Python starts). With
    ``dry_run`` the upload folder is written there and nothing is sent. ``task``: the task of a multi-task run to
    publish (see :func:`prepare_upload_folder`).
    """
    check_repo_id(repo_id)
    run_dir = Path(run_dir)
    report = load_run_report(run_dir, task)
    commit_message = commit_message or default_commit_message(report, task)
    if dry_run is not None:
        files = prepare_upload_folder(run_dir, dry_run, task=task, repo_id=repo_id, token=token, **card_kwargs)
        logger.info("Dry run: wrote %d files to %s (nothing uploaded). Commit message: %s",
                    len(files), dry_run, commit_message)
        return str(dry_run)

    token = _resolve_token(token)
    _check_online()
    endpoint = _resolve_endpoint()
    with tempfile.TemporaryDirectory(prefix="nlp_reuse_upload_") as folder:
        files = prepare_upload_folder(run_dir, folder, task=task, repo_id=repo_id, token=token, **card_kwargs)
        api = HfApi(endpoint=endpoint, token=token)
        try:
            repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision not in (None, constants.DEFAULT_REVISION):
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
            logger.info("Uploading %d files to %s (revision %s)", len(files), repo_url,
                        revision or constants.DEFAULT_REVISION)
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=folder, repo_type="model", revision=revision,
                commit_message=commit_message, delete_patterns=delete_patterns,
            )
        except HfHubHTTPError as err:
            if err.response is not None and err.response.status_code in (401, 403):
                raise PermissionError(
                    f"Expected write access to {repo_id} on {endpoint}; found HTTP {err.response.status_code}. "
                    "Fix: use a token with the 'write' role for that owner (`hf auth login` or HF_TOKEN)."
                ) from err
            raise
    url = str(repo_url) if revision in (None, constants.DEFAULT_REVISION) else f"{repo_url}/tree/{revision}"
    logger.info("Pushed commit %s: %s", commit.oid, commit.commit_url)
    return url


def push_from_training_args(run_dir: str | Path, args: Any) -> str:
    """Push a finished run with the Hub fields of a ``transformers.TrainingArguments`` (``--push_to_hub true``).

    Uses ``hub_model_id``, ``hub_private_repo``, ``hub_revision`` and ``hub_token``. Call it after report.json is
    written, and keep the Trainer's own push off, or checkpoints would be uploaded too.
    """
    if not args.hub_model_id:
        raise ValueError(
            "Expected --hub_model_id OWNER/NAME with --push_to_hub true; found none. "
            "Fix: add --hub_model_id my-user/my-model, or drop --push_to_hub."
        )
    return push_to_hub(run_dir, args.hub_model_id, private=bool(args.hub_private_repo),
                       revision=args.hub_revision, token=args.hub_token)
