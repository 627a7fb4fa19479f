"""Domain-adaptive continued pretraining: masked-language modelling on unlabeled in-domain texts before fine-tuning
(Gururangan et al. 2020, "Don't Stop Pretraining: Adapt Language Models to Domains and Tasks").

`run_adapt` reads texts (unlabeled files, and the *train* split of labelled datasets only, carved the way `finetune`
carves it, so no test text leaks into adaptation; report.json records the split settings of each, which `finetune`
and `distill` check, see nlp_reuse.leak_check), trains the encoder's masked-LM objective with `transformers.Trainer`
+ `DataCollatorForLanguageModeling`, and saves a model folder that `nlp-reuse finetune --model_name_or_path` and
`nlp-reuse distill --student_model_name_or_path` start from. The masked-token loss on held-out texts (and on a sample
of the training texts) is measured before and after training on the same, fixed masks.

An encoder saved without an MLM head (the embedded MiniLM is a plain `BertModel` checkpoint) gets a new head whose
decoder is tied to the input embeddings, as BERT's is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from accelerate import PartialState
from datasets import Dataset
from transformers import (
    AutoConfig,
    DataCollatorForLanguageModeling,
    Trainer,
    set_seed,
)

from nlp_reuse.adapt_texts import TEXT_SOURCES, collect_texts, tokenize_texts
from nlp_reuse.config import BUILTIN_TEACHER, NlpReuseTrainingArguments
from nlp_reuse.errors import ConfigError, ModelError, check_range, format_error
from nlp_reuse.evaluation import environment
from nlp_reuse.files import prepare_output_dir, write_json
from nlp_reuse.masked_lm import (
    MAX_MASK_PASSES,
    LoadedMaskedLM,
    LossBeforeAfter,
    check_masked_lm_support,
    decoder_tied,
    fixed_mask_batches,
    load_masked_lm,
    masked_token_loss,
    warm_up_new_head,
)
from nlp_reuse.modeling import fit_max_length, load_tokenizer, resolve_model_path
from nlp_reuse.pipeline import _trainer_args
from nlp_reuse.report import read_json_object
from nlp_reuse.runs import (
    CHECKPOINTS,
    check_rerun,
    checkpoint_dir,
    latest_checkpoint,
    remove_empty_folders,
    resolve_resume,
)
from nlp_reuse.strategies import measure_training
from nlp_reuse.transfer_set import UNLABELED_SUFFIXES

logger = logging.getLogger(__name__)

# Beside the model's checkpoints: what the head warm-up did, read back by a run resumed from one of them (its
# checkpoint holds the warmed-up head, so the warm-up does not run again).
HEAD_WARMUP_FILE = "head_warmup.json"


@dataclass
class AdaptArguments(NlpReuseTrainingArguments):
    """Continued masked-LM pretraining of an encoder on in-domain texts; every Trainer flag applies."""

    model_name_or_path: str = field(
        default=BUILTIN_TEACHER,
        metadata={"help": "Encoder to adapt: a local folder or Hub id of a BERT-family model that "
                          "AutoModelForMaskedLM supports (an MLM head is added, tied to the input embeddings, when "
                          "the checkpoint has none); builtin:minilm is the embedded all-MiniLM-L6-v2."},
    )
    unlabeled_file: list[str] | None = field(
        default=None,
        metadata={"help": f"One or more files of in-domain texts ({', '.join(UNLABELED_SUFFIXES)}): .txt holds one "
                          "text per line, the others are read with --text_column."},
    )
    dataset_name: list[str] | None = field(
        default=None,
        metadata={"help": "One or more labelled datasets whose texts are used, labels ignored: builtin:trec6 | "
                          "builtin:sms_spam | builtin:movie_reviews | builtin:sentiment_{movies,tweets,amazon,nyt} "
                          "or a Hub id. Only the train split is read (validation and test carved with "
                          "--validation_split_size, --test_split_size, --split_seed as finetune carves them), so "
                          "texts the fine-tuned model is tested on never reach adaptation; report.json records "
                          "those settings, and finetune / distill from the adapted folder refuse other ones on the "
                          "same data."},
    )
    train_file: list[str] | None = field(
        default=None,
        metadata={"help": "One or more labelled data files (.csv, .jsonl/.json, .parquet, with --text_column and "
                          "--label_column) read as finetune --train_file reads them: only the texts of the train "
                          "split carved from each file are used (with a separate --test_file at fine-tuning time "
                          "the carved texts are just left out, which never leaks)."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of the Hub datasets."})
    text_column: str = field(
        default="text",
        metadata={"help": "Column holding the texts in data files and Hub datasets (builtin datasets: always text)."},
    )
    label_column: str = field(
        default="label", metadata={"help": "Label column of --dataset_name / --train_file (checked, then ignored)."}
    )
    validation_split_size: float = field(
        default=0.1, metadata={"help": "As in finetune: the share carved out of labelled data as validation."}
    )
    test_split_size: float = field(
        default=0.1, metadata={"help": "As in finetune: the share carved out of labelled data as test."}
    )
    split_seed: int = field(
        default=42,
        metadata={"help": "Seed of the carved splits (as in finetune), of --max_unlabeled_samples, of the held-out "
                          "texts and of the train-text sample."},
    )
    mlm_probability: float = field(
        default=0.15, metadata={"help": "Share of the tokens masked for prediction (BERT: 0.15; of those, 8 in 10 "
                                        "become [MASK], 1 in 10 a random token, 1 in 10 stay as they are)."}
    )
    max_length: int = field(
        default=128, metadata={"help": "Truncate each text to this many tokens (capped at the model's positions)."}
    )
    max_unlabeled_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many texts (after deduplication; a seeded sample)."}
    )
    validation_fraction: float = field(
        default=0.05,
        metadata={"help": "Share of the texts held out of training to measure the masked-token loss before and after "
                          "(at least 1 text), in (0, 0.5]."},
    )
    train_loss_samples: int = field(
        default=256,
        metadata={"help": "Training texts (a seeded sample) on which the masked-token loss is also measured before "
                          "and after (0 turns it off)."},
    )
    loss_masked_tokens: int = field(
        default=2000,
        metadata={"help": "The before/after loss measurements draw masks over their texts again (new positions, the "
                          "same for both models) until at least this many tokens are masked, in at most "
                          f"{MAX_MASK_PASSES} passes: a few held-out texts still give a steady loss."},
    )
    head_warmup_steps: int = field(
        default=0,
        metadata={"help": "When the MLM head is new (an encoder saved without one, such as the embedded MiniLM): "
                          "train only the head's own weights this many steps first (encoder and tied decoder frozen), "
                          "so a random head's gradients do not reach the pretrained encoder. One step is one batch "
                          "of --per_device_train_batch_size: --gradient_accumulation_steps does not apply. 0: none. "
                          "Ignored (with a warning) when the checkpoint has a trained head."},
    )
    head_warmup_learning_rate: float = field(
        default=1e-3, metadata={"help": "Constant learning rate of the head warm-up (AdamW)."}
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Total number of training epochs."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate of AdamW."})
    per_device_eval_batch_size: int = field(
        default=16,
        metadata={"help": "Batch size of the loss measurements: the logits are (batch, tokens, vocabulary) floats."},
    )

    def __post_init__(self):
        super().__post_init__()
        given = {}
        for name in TEXT_SOURCES:
            values = getattr(self, name) or []
            values = [values] if isinstance(values, str) else values  # one path given in Python
            given[name] = [str(v) for v in values if str(v).strip()]
        if not any(given.values()):
            raise ConfigError(format_error(
                "No texts to adapt on.", "at least one text source: --unlabeled_file FILE [FILE ...], "
                "--dataset_name NAME [NAME ...] or --train_file FILE [FILE ...]", "none given",
                "pass in-domain texts, e.g. --unlabeled_file texts.txt (one text per line) or --dataset_name "
                "builtin:sentiment_tweets",
            ))
        for name, values in given.items():
            setattr(self, name, values or None)
        check_range("mlm_probability", self.mlm_probability, 0.0, 1.0, low_open=True)
        if self.mlm_probability == 1.0:
            raise ConfigError("--mlm_probability must be below 1 (some context must stay visible), got 1.0.")
        check_range("validation_fraction", self.validation_fraction, 0.0, 0.5, low_open=True)
        check_range("validation_split_size", self.validation_split_size, 0.0, 0.5, low_open=True)
        check_range("test_split_size", self.test_split_size, 0.0, 0.5, low_open=True)
        if self.max_length < 8:
            raise ConfigError(f"--max_length must be >= 8, got {self.max_length}.")
        if self.max_unlabeled_samples is not None and self.max_unlabeled_samples < 2:
            raise ConfigError(f"--max_unlabeled_samples must be >= 2 (one text to train on, one held out) or unset, "
                              f"got {self.max_unlabeled_samples}.")
        if self.loss_masked_tokens < 1:
            raise ConfigError(f"--loss_masked_tokens must be >= 1, got {self.loss_masked_tokens}.")
        if self.head_warmup_steps < 0:
            raise ConfigError(f"--head_warmup_steps must be >= 0, got {self.head_warmup_steps}.")
        check_range("head_warmup_learning_rate", self.head_warmup_learning_rate, 0.0, 1.0, low_open=True)
        if self.train_loss_samples < 0:
            raise ConfigError(f"--train_loss_samples must be >= 0, got {self.train_loss_samples}.")
        if self.push_to_hub:  # Trainer's own push would upload checkpoints and optimizer states
            raise ConfigError(format_error(
                "adapt does not push to the Hub.", "no --push_to_hub", "--push_to_hub true",
                "drop it and upload the adapted folder as it is: `hf upload OWNER/NAME OUTPUT_DIR`",
            ))


@dataclass
class AdaptReport:
    """report.json of an adaptation run."""

    model: dict  # source, class, whether the MLM head is new and tied, weights carried over
    texts: dict  # AdaptTexts.summary()
    masked_lm_loss: dict[str, LossBeforeAfter]  # heldout, train_sample
    adaptation: dict  # the training settings and cost
    command: str
    environment: dict

    def to_dict(self) -> dict:
        return {"model": self.model, "texts": self.texts,
                "masked_lm_loss": {name: loss.to_dict() for name, loss in self.masked_lm_loss.items()},
                "adaptation": self.adaptation, "command": self.command, "environment": self.environment}


# ------------------------------------------------------------------------------------------------------------ run


def _check_not_source(out: Path, model_path: str) -> None:
    if Path(model_path).is_dir() and Path(model_path).resolve() == out.resolve():
        raise ConfigError(format_error(
            "--output_dir is the model being adapted.", "an --output_dir apart from --model_name_or_path",
            str(out), "choose another --output_dir: the adapted model would replace its source",
        ))


def _head_warmup(args: AdaptArguments, loaded: LoadedMaskedLM, model, train: Dataset, collator, trainer_args,
                 out: Path, batches: dict[str, list]) -> dict | None:
    """Warm a new MLM head up (--head_warmup_steps) and measure the masked-token loss after it on `batches`; returns
    {"head_warmup": what ran, "after_head_warmup": {set: loss}}, which is also written beside the model's
    checkpoints. A resumed run reads it back from beside its checkpoint, whose head is already warmed up. None when
    no warm-up ran."""
    if args.head_warmup_steps and not loaded.head_initialised:
        logger.warning("--head_warmup_steps %d is ignored: the MLM head of %s is the checkpoint's own (trained), so "
                       "there is no new head to warm up.", args.head_warmup_steps, args.model_name_or_path)
    if args.resume_from_checkpoint is not None:
        ran = Path(args.resume_from_checkpoint).parent / HEAD_WARMUP_FILE
        return read_json_object(ran) if ran.is_file() else None
    record = checkpoint_dir(out, "model") / HEAD_WARMUP_FILE
    record.unlink(missing_ok=True)  # an earlier run's, in a folder overwritten now
    if not (args.head_warmup_steps and loaded.head_initialised):
        return None
    warmup = warm_up_new_head(model, loaded.new_head_weights, train, collator, trainer_args, args.head_warmup_steps,
                              args.head_warmup_learning_rate, out / CHECKPOINTS / "head")
    # The encoder is unchanged here: what remains to gain is the encoder's.
    done = {"head_warmup": warmup,
            "after_head_warmup": {name: masked_token_loss(model, data)[0] for name, data in batches.items()}}
    if PartialState().is_main_process:
        record.parent.mkdir(parents=True, exist_ok=True)
        write_json(record, done)
    return done


def run_adapt(args: AdaptArguments, command: str = "") -> dict:
    """Continue masked-LM pretraining of `args.model_name_or_path` on the texts the arguments name; save the adapted
    model (MaskedLM weights, config, tokenizer) with report.json and run_args.json into `args.output_dir`."""
    out = Path(args.output_dir)
    model_path = resolve_model_path(args.model_name_or_path)
    _check_not_source(out, model_path)
    args.resume_from_checkpoint = resolve_resume(out, args.resume_from_checkpoint, name="model")
    out = prepare_output_dir(out, overwrite=check_rerun(out, args.overwrite_output_dir, args.resume_from_checkpoint,
                                                        name="model"))
    texts = collect_texts(args)
    config = AutoConfig.from_pretrained(model_path)
    check_masked_lm_support(config, args.model_name_or_path)
    tokenizer = load_tokenizer(args.model_name_or_path)
    if tokenizer.mask_token is None:
        raise ModelError(format_error(
            f"The tokenizer of {args.model_name_or_path} has no mask token.", "a tokenizer with a mask token "
            "([MASK], <mask>)", f"{type(tokenizer).__name__} without one", "adapt a BERT-family model",
        ))
    max_length = fit_max_length(args.max_length, config, args.model_name_or_path)
    train = tokenize_texts(texts.train, tokenizer, max_length)
    heldout = tokenize_texts(texts.heldout, tokenizer, max_length)
    sample = np.random.default_rng(args.split_seed).permutation(len(train))[: args.train_loss_samples]
    measured = {"heldout": heldout, **({"train_sample": train.select(np.sort(sample))} if len(sample) else {})}
    batches, passes = {}, {}
    for name, data in measured.items():
        batches[name], passes[name] = fixed_mask_batches(data, tokenizer, args.mlm_probability,
                                                         args.per_device_eval_batch_size, args.seed,
                                                         args.loss_masked_tokens)

    set_seed(args.seed)  # a new head's init
    loaded = load_masked_lm(args.model_name_or_path)
    model = loaded.model.to(args.device)
    losses = {}
    for name, data in measured.items():
        before, masked = masked_token_loss(model, batches[name])
        losses[name] = LossBeforeAfter(texts=len(data), mask_passes=passes[name], masked_tokens=masked, before=before)
    trainer_args = _trainer_args(args, checkpoint_dir(out, "model"))
    trainer_args.remove_unused_columns = False  # keep special_tokens_mask: the collator then needs not recompute it
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability)
    warmup = _head_warmup(args, loaded, model, train, collator, trainer_args, out, batches)
    if warmup is not None:
        for name in losses:  # .get: a resumed run may measure other sets (--train_loss_samples)
            losses[name].after_head_warmup = warmup["after_head_warmup"].get(name)
    trainer = Trainer(model=model, args=trainer_args, train_dataset=train, eval_dataset=heldout,
                      processing_class=tokenizer, data_collator=collator)
    with measure_training(args.device) as cost:
        result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    cost.trainable_params = cost.total_params = sum(p.numel() for p in model.parameters())
    for name in measured:
        losses[name].after = masked_token_loss(trainer.model, batches[name])[0]
    if not trainer.is_world_process_zero():
        PartialState().wait_for_everyone()
        return {}

    model = trainer.model
    # The pooler rides along in the saved state dict: the MaskedLM class ignores it, a classifier loads it.
    model.save_pretrained(out, state_dict={**model.state_dict(), **loaded.carried} if loaded.carried else None)
    tokenizer.save_pretrained(out)
    report = AdaptReport(
        model={"name_or_path": args.model_name_or_path,
               "local_path": str(Path(model_path).resolve()) if Path(model_path).is_dir() else None,
               "architecture": type(model).__name__, "params": cost.total_params,
               "head_initialised": loaded.head_initialised, "new_head_weights": loaded.new_head_weights,
               "decoder_tied": decoder_tied(model), "carried_weights": sorted(loaded.carried)},
        texts=texts.summary(), masked_lm_loss=losses,
        adaptation={"mlm_probability": args.mlm_probability, "max_length": max_length,
                    "num_train_epochs": args.num_train_epochs, "learning_rate": args.learning_rate,
                    "per_device_train_batch_size": args.per_device_train_batch_size,
                    "gradient_accumulation_steps": args.gradient_accumulation_steps, "seed": args.seed,
                    "split_seed": args.split_seed,
                    "head_warmup": None if warmup is None else warmup["head_warmup"],
                    "global_steps": result.global_step,
                    "train_loss": round(result.training_loss, 6), **cost.as_dict()},
        command=command, environment=environment(),
    ).to_dict()
    warmup_file = checkpoint_dir(out, "model") / HEAD_WARMUP_FILE
    if warmup_file.is_file() and latest_checkpoint(warmup_file.parent) is None:  # no checkpoint to resume from
        warmup_file.unlink()
    remove_empty_folders(out / CHECKPOINTS)  # save_strategy "no": Trainer made the folders, nothing is in them
    write_json(out / "report.json", report)
    # TrainingArguments.to_dict() masks tokens (hub_token -> "<HUB_TOKEN>").
    write_json(out / "run_args.json", {"adapt": args.to_dict()})
    held = report["masked_lm_loss"]["heldout"]
    print(f"Held-out masked-token loss {held['before']:.4f} -> {held['after']:.4f} (perplexity "
          f"{held['perplexity_before']} -> {held['perplexity_after']}) on {held['texts']} texts, "
          f"{held['masked_tokens']} masked tokens; trained on {len(texts.train)} texts.")
    PartialState().wait_for_everyone()
    return report
