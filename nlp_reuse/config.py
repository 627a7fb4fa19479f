"""Argument dataclasses. Every field carries its `--help`; range checks run in `__post_init__`, before any work."""

import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from transformers import TrainingArguments

from nlp_reuse.errors import check_range
from nlp_reuse.strategy_config import STRATEGIES, StrategyArguments

BUILTIN_TEACHER = "builtin:minilm"


@dataclass
class DataArguments:
    """Where the labelled texts come from and how they are split and tokenized."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A Hub dataset id, or an embedded offline dataset: builtin:trec6 | builtin:sms_spam | "
                          "builtin:movie_reviews | builtin:sentiment_movies | builtin:sentiment_tweets | "
                          "builtin:sentiment_amazon | builtin:sentiment_nyt (one sentiment task in four domains: "
                          "positive/negative by the sign of the mean human rating, texts rated within 0.5 of "
                          "neutral on the -4..+4 scale left out). Leave unset to read --train_file."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of the Hub dataset."})
    train_file: str | None = field(default=None, metadata={"help": "Training file (.csv, .jsonl/.json, .parquet)."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Validation file; carved from the training data (seeded, stratified) if unset."}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "Test file; carved from the training data (seeded, stratified) if unset."}
    )
    extra_train_file: str | None = field(
        default=None,
        metadata={"help": "Labelled examples added to the train split after it is carved and sub-sampled (never to "
                          "validation or test), with the same columns: e.g. target-domain texts labelled by "
                          "`nlp-reuse pseudo-label` (self-training). Labels must be among the train split's; texts "
                          "also in validation or test are refused."},
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the input text."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Optional second text column, for sentence-pair tasks."}
    )
    label_column: str = field(default="label", metadata={"help": "Column holding the label (string or integer)."})
    validation_split_size: float = field(
        default=0.1, metadata={"help": "Fraction of the data carved out as validation when no validation split exists."}
    )
    test_split_size: float = field(
        default=0.1, metadata={"help": "Fraction of the data carved out as test when no test split exists."}
    )
    split_seed: int = field(default=42, metadata={"help": "Seed of the carved splits and of sub-sampling."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many training examples (seeded sample), for quick runs."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many validation and test examples (seeded sample)."}
    )
    max_length: int = field(default=128, metadata={"help": "Truncate tokenized inputs to this many tokens."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_file is None:
            raise ValueError(
                "No data given: expected --dataset_name (a Hub id or builtin:trec6 | builtin:sms_spam | "
                "builtin:movie_reviews | builtin:sentiment_{movies,tweets,amazon,nyt}) or --train_file PATH "
                "(.csv, .jsonl, .parquet)."
            )
        if self.dataset_name is not None and self.train_file is not None:
            raise ValueError(
                f"Both --dataset_name ({self.dataset_name}) and --train_file ({self.train_file}) were given: "
                "pass only one of them."
            )
        check_range("validation_split_size", self.validation_split_size, 0.0, 0.5, low_open=True)
        check_range("test_split_size", self.test_split_size, 0.0, 0.5, low_open=True)
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1 (or unset), got {value}.")
        if self.max_length < 8:
            raise ValueError(f"--max_length must be >= 8, got {self.max_length}.")


@dataclass
class NlpReuseTrainingArguments(TrainingArguments):
    """`TrainingArguments` with defaults suited to small classifiers on a laptop: no checkpoints, no trackers."""

    output_dir: str | None = field(
        default=None, metadata={"help": "Where the model folder and report.json are written (required)."}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Total number of training epochs."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate of AdamW."})
    warmup_ratio: float = field(default=0.06, metadata={"help": "Fraction of steps for linear warm-up."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device."})
    save_strategy: str = field(
        default="no", metadata={"help": "Checkpoint strategy: no | steps | epoch. The final model is always saved."}
    )
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Experiment trackers to report to (none, tensorboard, wandb, ...)."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty --output_dir (its files may be replaced)."}
    )
    latency_samples: int = field(
        default=64, metadata={"help": "Test examples timed one by one (batch 1) for the CPU latency in the report."}
    )

    def __post_init__(self):
        if self.output_dir is None:
            raise ValueError("--output_dir is required: the folder where the model and report.json are written.")
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns every epoch
        super().__post_init__()
        if self.latency_samples < 0:
            raise ValueError(f"--latency_samples must be >= 0, got {self.latency_samples}.")


DomainLoss = Literal["none", "coral", "mmd", "adversarial"]


@dataclass
class FinetuneArguments(StrategyArguments, NlpReuseTrainingArguments):
    """Fine-tuning a pretrained encoder into a sequence classifier (the teacher, usually)."""

    model_name_or_path: str = field(
        default=BUILTIN_TEACHER,
        metadata={"help": "Local folder or Hub id of the pretrained encoder; builtin:minilm is the embedded "
                          "all-MiniLM-L6-v2 (offline)."},
    )
    target_unlabeled_file: str | None = field(
        default=None,
        metadata={"help": "Unsupervised domain adaptation: unlabeled texts of the target domain the model will be "
                          "used on (.txt, one text per line, or .csv/.tsv/.jsonl/.json/.parquet with the "
                          "--text_column). Every training step also runs a batch of them and aligns its features "
                          "with the labelled batch's by --domain_loss; the test metrics stay the labelled data's."},
    )
    domain_loss: DomainLoss = field(
        default="none",
        metadata={"help": "How the features the classification head reads (BERT: the pooled [CLS]) of the labelled "
                          "(source) and --target_unlabeled_file batches are aligned: none | coral (Deep CORAL, Sun & "
                          "Saenko 2016: distance between the feature covariances) | mmd (multi-kernel maximum mean "
                          "discrepancy, DAN, Long et al. 2015) | adversarial (DANN, Ganin et al. 2016: a domain "
                          "classifier trained through a gradient reversal layer, its strength ramped by DANN's "
                          "schedule)."},
    )
    domain_loss_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the --domain_loss term added to the task cross-entropy (>= 0)."},
    )

    def __post_init__(self):
        super().__post_init__()
        self.check_strategy_ranges()
        _check_choice("domain_loss", self.domain_loss, DomainLoss)
        if self.domain_loss_weight < 0:
            raise ValueError(f"--domain_loss_weight must be >= 0, got {self.domain_loss_weight}.")
        if (self.domain_loss == "none") != (self.target_unlabeled_file is None):
            found = (f"--domain_loss {self.domain_loss} without --target_unlabeled_file" if self.domain_loss != "none"
                     else f"--target_unlabeled_file {self.target_unlabeled_file} with --domain_loss none")
            raise ValueError(
                "Expected --target_unlabeled_file and --domain_loss together (the unlabeled target texts, and how "
                f"their features are aligned with the labelled ones); found {found}. Fix: pass both, e.g. "
                "--target_unlabeled_file target.txt --domain_loss coral, or neither."
            )
        if self.domain_loss != "none" and self.strategy == "features":
            raise ValueError(
                f"Expected a strategy that trains the encoder with --domain_loss {self.domain_loss}; found "
                "--strategy features, which fits a logistic regression on frozen embeddings and trains no network "
                "to align. Fix: use --strategy full, partial, lora or ia3, or drop --domain_loss and "
                "--target_unlabeled_file."
            )
        if self.push_to_hub:  # Trainer's own push would upload checkpoints and optimizer states; refuse, say how
            raise ValueError(
                "Expected no --push_to_hub for finetune (it publishes distilled students with their model card); "
                "found --push_to_hub true. Fix: drop it and distill the teacher with `nlp-reuse distill "
                "--push_to_hub true --hub_model_id OWNER/NAME`, or upload the fine-tuned folder as it is with "
                "`hf upload OWNER/NAME OUTPUT_DIR`."
            )


HiddenLoss = Literal["mse", "cosine"]
KdLoss = Literal["kl", "mse"]
StudentType = Literal["transformer", "bilstm", "static"]
TeacherDtype = Literal["auto", "float32", "bfloat16", "float16"]
Export = Literal["none", "onnx", "onnx_int8"]


def _check_choice(name: str, value: str, choices: Any) -> None:
    """A Literal-typed field given in Python (the command line checks its choices already)."""
    if value not in get_args(choices):
        raise ValueError(f"--{name} must be one of {', '.join(get_args(choices))}, got {value!r}.")


@dataclass
class DistillationArguments(StrategyArguments, NlpReuseTrainingArguments):
    """What DistillationTrainer reads on top of TrainingArguments: the losses, their weights and the teacher's
    precision. Where the teacher and the student come from is the pipeline's business (DistillScriptArguments)."""

    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature T of the soft targets."})
    alpha: float = field(
        default=0.5, metadata={"help": "Weight of the soft-target loss; (1 - alpha) weighs the hard-label CE."}
    )
    kd_loss: KdLoss = field(
        default="kl",
        metadata={"help": "Soft-target loss: kl (T^2 * KL of the tempered distributions, Hinton et al. 2015) | mse "
                          "(squared error between raw logits, Tang et al. 2019; --temperature does not apply)."},
    )
    hidden_loss_weight: float = field(
        default=0.0, metadata={"help": "Weight of the hidden-state loss between mapped layers (0 turns it off)."}
    )
    hidden_loss: HiddenLoss = field(default="mse", metadata={"help": "Hidden-state loss between mapped layers."})
    layer_map: str = field(
        default="uniform",
        metadata={"help": "Student->teacher hidden-state pairs: 'uniform' (student layer i <-> teacher layer "
                          "i*L_t/L_s) or explicit pairs '1:2,2:4,3:6' (0 is the embedding output)."},
    )
    distill_embeddings: bool = field(
        default=False, metadata={"help": "With layer_map=uniform, also match the embedding outputs (0:0)."}
    )
    attention_loss_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the attention-transfer KL on the mapped layers (MiniLM-style; 0 turns it off)."},
    )
    teacher_dtype: TeacherDtype = field(
        default="auto",
        metadata={"help": "Teacher weights' dtype: auto (bf16/fp16 when --bf16/--fp16, else float32). bfloat16 "
                          "also pays off on CPUs with AMX/AVX512-BF16."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}.")
        check_range("alpha", self.alpha, 0.0, 1.0)
        for name in ("hidden_loss_weight", "attention_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}.")
        _check_choice("hidden_loss", self.hidden_loss, HiddenLoss)
        _check_choice("kd_loss", self.kd_loss, KdLoss)
        _check_choice("teacher_dtype", self.teacher_dtype, TeacherDtype)
        # The student trains through a Trainer, so the Trainer-free features strategy does not apply.
        self.check_strategy_ranges(allowed=tuple(s for s in STRATEGIES if s != "features"))


@dataclass
class DistillScriptArguments:
    """What `nlp-reuse distill` does around the trainer: which teacher, which student, the teacher cache, the
    no-KD baseline and the export."""

    teacher_model_name_or_path: list[str] | None = field(
        default=None,
        metadata={"help": "Fine-tuned teacher classifier(s): local folders or Hub ids (required). Several teachers "
                          "(`--teacher_model_name_or_path A B C`: other seeds, strategies or base checkpoints with one "
                          "tokenizer and one label set) teach as an ensemble: the soft targets are the weighted "
                          "average of their tempered distributions (--kd_loss mse: of their logits); the student "
                          "built from teacher layers takes the first teacher's."},
    )
    teacher_weights: list[float] | None = field(
        default=None,
        metadata={"help": "One weight > 0 per teacher, in the order of --teacher_model_name_or_path (scaled to sum "
                          "to 1); equal weights when unset."},
    )
    student_type: StudentType = field(
        default="transformer",
        metadata={"help": "transformer: a BERT-family student (from --student_num_layers, --student_config or "
                          "--student_model_name_or_path) | bilstm: embeddings + one bidirectional LSTM + MLP (Tang "
                          "et al. 2019) | static: pooled token embeddings + MLP (Model2Vec-like). bilstm and static "
                          "use the teacher's tokenizer and are sized by --student_embedding_dim, "
                          "--student_hidden_size, --student_classifier_hidden."},
    )
    student_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start the student from this model (local folder or Hub id)."}
    )
    student_num_layers: int | None = field(
        default=None,
        metadata={"help": "Build the student from the teacher by keeping N evenly spaced layers (DistilBERT-style)."},
    )
    student_config: dict | str | None = field(
        default=None,
        metadata={"help": "Overrides of the teacher config for a randomly initialised student, as JSON, e.g. "
                          "'{\"num_hidden_layers\": 4, \"hidden_size\": 256, \"num_attention_heads\": 4, "
                          "\"intermediate_size\": 1024}'."},
    )
    teacher_cache: str | None = field(
        default=None,
        metadata={"help": "Folder of the teacher-logit cache: the teacher's logits on the training set are computed "
                          "once, stored under a fingerprint of teacher weights + tokenized data, and reused by later "
                          "runs, so training needs no teacher forward pass (logit KD only: hidden-state and "
                          "attention losses still run the live teacher). The teacher's test measurements are "
                          "reused from there too."},
    )
    export: Export = field(
        default="none",
        metadata={"help": "End the run with a deployable artefact: none | onnx | onnx_int8 (dynamic int8 with the "
                          "accuracy guard; falls back to fp32 ONNX when int8 loses too much). Measured in the report."},
    )
    run_baseline: bool = field(
        default=False,
        metadata={"help": "Also train the same student without the teacher (hard labels only) on the same budget."},
    )

    def __post_init__(self):
        if isinstance(self.teacher_model_name_or_path, str):  # one teacher, from a YAML config or in Python
            self.teacher_model_name_or_path = [self.teacher_model_name_or_path]
        if not self.teacher_model_name_or_path:
            raise ValueError("--teacher_model_name_or_path is required: a fine-tuned classifier folder or Hub id "
                             "(make one with scripts/finetune.py), or several for an ensemble of teachers.")
        if len(set(self.teacher_model_name_or_path)) != len(self.teacher_model_name_or_path):
            raise ValueError(f"--teacher_model_name_or_path names a teacher twice: {self.teacher_model_name_or_path}; "
                             "expected distinct teachers (weigh one teacher more with --teacher_weights).")
        if self.teacher_weights is not None:
            if len(self.teacher_model_name_or_path) == 1:
                raise ValueError(f"--teacher_weights {self.teacher_weights} weighs an ensemble, but one teacher was "
                                 "given. Fix: drop --teacher_weights, or name several teachers.")
            if len(self.teacher_weights) != len(self.teacher_model_name_or_path) or min(self.teacher_weights) <= 0:
                raise ValueError(
                    f"--teacher_weights must be one weight > 0 per teacher: expected "
                    f"{len(self.teacher_model_name_or_path)} for {self.teacher_model_name_or_path}, found "
                    f"{self.teacher_weights}. Fix: give one positive weight per teacher, in their order.")
        _check_choice("student_type", self.student_type, StudentType)
        sources = [n for n in ("student_model_name_or_path", "student_num_layers", "student_config")
                   if getattr(self, n) is not None]
        if self.student_type != "transformer" and sources:
            raise ValueError(
                f"--student_type {self.student_type} builds its student from the teacher and the family's size "
                f"flags; found {', '.join('--' + s for s in sources)} as well. Drop them, or use --student_type "
                "transformer."
            )
        if self.student_type == "transformer" and len(sources) != 1:
            raise ValueError(
                "Give exactly one student source: --student_model_name_or_path, --student_num_layers or "
                f"--student_config (or --student_type bilstm | static); found {sources or 'none'}."
            )
        if self.student_num_layers is not None and self.student_num_layers < 1:
            raise ValueError(f"--student_num_layers must be >= 1, got {self.student_num_layers}.")
        if isinstance(self.student_config, str):
            try:
                self.student_config = json.loads(self.student_config)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"--student_config must be a JSON object, got {self.student_config!r} ({err})."
                ) from err
        if self.student_config is not None and not isinstance(self.student_config, dict):
            raise ValueError(f"--student_config must be a JSON object, got {type(self.student_config).__name__}.")
        _check_choice("export", self.export, Export)
