"""Push a finished run to a Hugging Face Hub repo with its generated model card, or write the upload folder.

    nlp-reuse push --model_dir runs/demo/distill --repo_id my-user/minilm-trec6-student
    nlp-reuse push --model_dir runs/demo/distill --repo_id my-user/minilm-trec6-student --dry_run out/upload
    nlp-reuse push --model_dir runs/multitask/student --task trec6 --repo_id my-user/minilm-l3-multitask-trec6

The token comes from HF_TOKEN or `hf auth login` (there is no --token flag: it would land in shell history), the
endpoint from HF_ENDPOINT. Pushing needs HF_HUB_OFFLINE unset or 0 (the Makefile sets it to 1).
"""

import logging
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from nlp_reuse.hub import check_repo_id, describe_folder, prepare_upload_folder, push_to_hub


@dataclass
class PushArguments:
    model_dir: str = field(
        metadata={"help": "Run folder written by `nlp-reuse distill --output_dir` (holds report.json and student/; "
                          "with --tasks, tasks/NAME/ per task)."}
    )
    task: str | None = field(
        default=None,
        metadata={"help": "For a multi-task run (`nlp-reuse distill --tasks`): the task to publish. Its folder "
                          "tasks/NAME (the shared encoder and that task's head) is the model uploaded, and the card "
                          "is that task's. Required for such a run, refused for a single-task one; push each task to "
                          "its own repo."},
    )
    repo_id: str | None = field(
        default=None,
        metadata={"help": "Hub model repo OWNER/NAME, created when missing. Required unless --dry_run is given."},
    )
    private: bool = field(default=False, metadata={"help": "Create the repo as private (only when it is created)."})
    revision: str | None = field(
        default=None, metadata={"help": "Branch to commit to, created from main when missing (default: main)."}
    )
    commit_message: str | None = field(
        default=None, metadata={"help": "Commit message (default: one built from the report's numbers)."}
    )
    delete_patterns: list[str] | None = field(
        default=None,
        metadata={"help": "Glob patterns of remote files to delete in the same commit, e.g. 'onnx/*'. Without it "
                          "no remote file is deleted."},
    )
    dry_run: str | None = field(
        default=None,
        metadata={"help": "Write exactly the folder that would be uploaded to this new path; send nothing."},
    )
    license: str = field(default="apache-2.0", metadata={"help": "Model card license (a Hub license identifier)."})
    language: str = field(default="en", metadata={"help": "Model card language (ISO 639-1 code)."})
    base_model: str | None = field(
        default=None,
        metadata={"help": "Hub id for the card's base_model (default: the teacher when it is a Hub id)."},
    )

    def __post_init__(self):
        if self.repo_id is None and self.dry_run is None:
            raise ValueError(
                "Expected --repo_id OWNER/NAME to push; found none. Fix: add --repo_id, or --dry_run OUT to only "
                "write the upload folder."
            )
        if self.repo_id is not None:
            check_repo_id(self.repo_id)


def make_parser() -> HfArgumentParser:
    return HfArgumentParser(PushArguments)


def main(argv: list[str] | None = None) -> str:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (args,) = make_parser().parse_args_into_dataclasses(args=argv)
    card_kwargs = {"license": args.license, "language": args.language, "base_model": args.base_model}
    if args.dry_run is not None and args.repo_id is None:
        prepare_upload_folder(args.model_dir, args.dry_run, task=args.task, **card_kwargs)
        result = args.dry_run
    else:
        result = push_to_hub(
            args.model_dir, args.repo_id, task=args.task, private=args.private, revision=args.revision,
            commit_message=args.commit_message, delete_patterns=args.delete_patterns, dry_run=args.dry_run,
            **card_kwargs,
        )
    if args.dry_run is not None:
        print(f"Dry run, nothing uploaded. Upload folder {result}:\n{describe_folder(result)}")
    else:
        print(f"Pushed to {result}")
    return result


if __name__ == "__main__":
    main()
