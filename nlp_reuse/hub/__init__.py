"""Publish a run folder to a Hugging Face Hub repo: the model card, the upload folder and the push.

A run folder (``nlp-reuse distill --output_dir RUN``) holds ``report.json``, ``run_args.json``, ``student/`` and
optionally ``baseline/``, ``onnx/`` and ``onnx_int8/``. A multi-task run (``nlp-reuse distill --tasks``) holds
``tasks/NAME/`` per task instead of ``student/``: one task is published at a time, its card read from that task's
single-task view of the report.

- `run_folder`: reads and checks the run folder (report.json as an `nlp_reuse.report.RunReport`, the student).
- `card`: renders the model card from the report and the packaged template.
- `lineage`: the card's sentences on how the model and its teacher were made.
- `upload`: writes the upload folder (deliverables only, secrets scrubbed) and pushes it in one commit.

Secret scrubbing lives in `nlp_reuse.redact`, outside this package, so that the command line can record its
arguments without loading the publishing code.
"""

from nlp_reuse.hub.card import (
    BUILTIN_DATASETS,
    BUILTIN_MODELS,
    DEFAULT_EXAMPLE,
    TEMPLATE_RESOURCE,
    describe_dataset,
    read_card_template,
    render_model_card,
    resolve_base_model,
)
from nlp_reuse.hub.lineage import describe_joint_training
from nlp_reuse.hub.run_folder import (
    ONNX_SUBFOLDERS,
    RunFolder,
    load_run_report,
    onnx_folders,
    read_run_folder,
    student_dir,
)
from nlp_reuse.hub.upload import (
    CONFIG_AND_TOKENIZER_PATTERNS,
    ONNX_SIDE_FILE_PATTERNS,
    RECORD_FILES,
    check_repo_id,
    default_commit_message,
    describe_folder,
    prepare_upload_folder,
    push_from_training_args,
    push_to_hub,
)
from nlp_reuse.redact import REDACTED, scrub_secrets

__all__ = [
    "BUILTIN_DATASETS", "BUILTIN_MODELS", "CONFIG_AND_TOKENIZER_PATTERNS", "DEFAULT_EXAMPLE", "ONNX_SIDE_FILE_PATTERNS",
    "ONNX_SUBFOLDERS", "RECORD_FILES", "REDACTED", "TEMPLATE_RESOURCE", "RunFolder", "check_repo_id",
    "default_commit_message", "describe_dataset", "describe_folder", "describe_joint_training", "load_run_report",
    "onnx_folders", "prepare_upload_folder", "push_from_training_args", "push_to_hub", "read_card_template",
    "read_run_folder", "render_model_card", "resolve_base_model", "scrub_secrets", "student_dir",
]
