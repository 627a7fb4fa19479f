"""Arguments of the small students (`--student_type bilstm|static`, vocabulary trimming) and of the transfer set
they learn from (augmented and unlabeled texts, labelled by the teacher's logits). Read by the distillation pipeline;
the trainer never sees them."""

from dataclasses import dataclass, field
from typing import Literal

from nlp_reuse.errors import ConfigError, format_error
from nlp_reuse.transfer_set import AUGMENT_METHODS

EmbeddingInit = Literal["teacher", "encoder", "random"]
Pooling = Literal["max", "mean", "mean_max"]


@dataclass
class StudentFamilyArguments:
    """Sizes and initialisation of the non-transformer students, and vocabulary trimming for every student."""

    student_embedding_dim: int | None = field(
        default=None,
        metadata={"help": "--student_type bilstm/static: width of the token embeddings (default: the teacher's "
                          "hidden size; smaller widths are PCA projections of the teacher's vectors)."},
    )
    student_hidden_size: int = field(
        default=256, metadata={"help": "--student_type bilstm: LSTM units per direction."}
    )
    student_classifier_hidden: int = field(
        default=256,
        metadata={"help": "--student_type bilstm/static: width of the MLP between the pooled vector and the logits "
                          "(0: a linear head)."},
    )
    student_pooling: Pooling | None = field(
        default=None,
        metadata={"help": "--student_type bilstm/static: pooling over the real tokens: max | mean | mean_max "
                          "(default: max for bilstm, mean for static)."},
    )
    student_embedding_init: EmbeddingInit = field(
        default="teacher",
        metadata={"help": "--student_type bilstm/static: teacher (the teacher's input word embeddings) | encoder "
                          "(Model2Vec-style: each token alone through the teacher's encoder, then PCA) | random."},
    )
    trim_vocabulary: bool = field(
        default=False,
        metadata={"help": "After training, keep only the tokens that the training and transfer texts use (plus "
                          "special tokens): the tokenizer and the embedding matrix shrink together and save as a "
                          "normal folder. WordPiece (BERT-family) tokenizers. The report keeps the untrimmed "
                          "student's test accuracy beside the trimmed one's."},
    )

    def __post_init__(self):
        if self.student_embedding_dim is not None and self.student_embedding_dim < 1:
            raise ConfigError(f"--student_embedding_dim must be >= 1 (or unset), got {self.student_embedding_dim}.")
        if self.student_hidden_size < 1:
            raise ConfigError(f"--student_hidden_size must be >= 1, got {self.student_hidden_size}.")
        if self.student_classifier_hidden < 0:
            raise ConfigError(f"--student_classifier_hidden must be >= 0, got {self.student_classifier_hidden}.")


@dataclass
class TransferSetArguments:
    """Extra training inputs for distillation, labelled by the teacher's logits (never by a guess)."""

    augment: str | None = field(
        default=None,
        metadata={"help": "Comma-separated augmentation of the training texts (Tang et al. 2019): masking (words "
                          "replaced by the mask token), ngram (a random 1..5-word span), replace (words replaced "
                          "by words drawn from the training texts' unigram distribution). E.g. masking,ngram."},
    )
    augment_factor: int = field(
        default=10, metadata={"help": "--augment: candidates generated per training text (duplicates dropped)."}
    )
    augment_mask_prob: float = field(default=0.1, metadata={"help": "--augment masking: per-word probability."})
    augment_replace_prob: float = field(default=0.1, metadata={"help": "--augment replace: per-word probability."})
    augment_ngram_prob: float = field(
        default=0.25, metadata={"help": "--augment ngram: probability that a candidate is cut to an n-gram."}
    )
    unlabeled_file: str | None = field(
        default=None,
        metadata={"help": "In-domain texts without labels (.txt one per line, or .csv/.jsonl/.parquet with "
                          "--text_column), added to the transfer set and labelled by the teacher."},
    )

    def __post_init__(self):
        if self.augment_factor < 1:
            raise ConfigError(f"--augment_factor must be >= 1, got {self.augment_factor}.")
        unknown = [m for m in self.methods() if m not in AUGMENT_METHODS]
        if unknown:
            raise ConfigError(f"--augment: unknown method(s) {unknown}; expected a comma-separated subset of "
                              f"{', '.join(AUGMENT_METHODS)}.")

    def methods(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.augment.split(",") if m.strip()) if self.augment else ()

    @property
    def enabled(self) -> bool:
        return bool(self.methods()) or self.unlabeled_file is not None


def check_family_options(student_type: str, family: StudentFamilyArguments, hidden_loss_weight: float,
                         attention_loss_weight: float, strategy: str) -> None:
    """Combinations the dataclasses cannot check alone, raised before any model is loaded."""
    if family.trim_vocabulary and strategy in ("lora", "ia3"):
        raise ConfigError(format_error(
            "--trim_vocabulary rewrites the embedding matrix; a PEFT adapter is saved against the full one.",
            "--strategy full, head_only or partial with --trim_vocabulary", f"--strategy {strategy}",
            "drop --trim_vocabulary, or distill with another --strategy",
        ))
    if student_type == "transformer":
        return
    if hidden_loss_weight > 0 or attention_loss_weight > 0:
        raise ConfigError(format_error(
            f"Hidden-state and attention transfer need a transformer student; --student_type is {student_type}.",
            "--hidden_loss_weight 0 and --attention_loss_weight 0 (logit KD only)",
            f"--hidden_loss_weight {hidden_loss_weight}, --attention_loss_weight {attention_loss_weight}",
            "drop the hidden/attention weights, or distill into --student_num_layers / --student_config",
        ))
    if strategy != "full":
        raise ConfigError(format_error(
            f"--strategy {strategy} freezes or adapts transformer layers; a {student_type} student has none.",
            "--strategy full", f"--strategy {strategy}", "drop --strategy for bilstm/static students",
        ))
