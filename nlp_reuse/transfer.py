"""What distillation adds around the trainer for small students: the transfer set (augmented training texts and
unlabeled in-domain texts, tokenized like the training set and labelled only by the teacher) and vocabulary
trimming of a trained student. The augmentation itself lives in `nlp_reuse.transfer_set`, the trimming in
`nlp_reuse.vocabulary`."""

import logging
from dataclasses import dataclass, field

from datasets import Dataset, Value, concatenate_datasets
from transformers import PreTrainedModel

from nlp_reuse.errors import DataError, format_error
from nlp_reuse.losses import TRANSFER_LABEL
from nlp_reuse.modeling import count_parameters
from nlp_reuse.student_config import TransferSetArguments
from nlp_reuse.transfer_set import AugmentConfig, augment_texts, load_unlabeled_texts
from nlp_reuse.vocabulary import trim_vocabulary

logger = logging.getLogger(__name__)


@dataclass
class TransferSet:
    """The texts added to the training set for the student; `to_dict` is the report's `transfer_set` entry."""

    texts: list[str] = field(default_factory=list)
    methods: tuple[str, ...] = ()
    factor: int = 0
    num_augmented: int = 0
    num_unlabeled: int = 0
    unlabeled_file: str | None = None

    def to_dict(self) -> dict:
        return {"augment": list(self.methods), "augment_factor": self.factor, "num_augmented": self.num_augmented,
                "unlabeled_file": self.unlabeled_file, "num_unlabeled": self.num_unlabeled,
                "num_transfer": len(self.texts)}


def build_transfer_set(args: TransferSetArguments, train_texts: list[str], mask_token: str | None, seed: int,
                       text_column: str = "text", has_pairs: bool = False) -> TransferSet:
    """Augmented and unlabeled texts, none equal to a training text (a training text keeps its gold label).

    `seed` fixes the augmentation, so runs of several student seeds share one transfer set (and one teacher-cache
    entry for its logits)."""
    if not args.enabled:
        return TransferSet()
    if has_pairs:
        raise DataError(format_error(
            "--augment and --unlabeled_file build single-text inputs; this dataset has text pairs.",
            "a single text column", "--text_pair_column set",
            "drop --augment / --unlabeled_file for sentence-pair tasks",
        ))
    methods = args.methods()
    if "masking" in methods and mask_token is None:
        raise DataError(format_error(
            "--augment masking replaces words by the tokenizer's mask token; the teacher's tokenizer has none.",
            "a tokenizer with a mask token ([MASK], <mask>)", "tokenizer.mask_token is None",
            "use --augment ngram,replace",
        ))
    augmented: list[str] = []
    if methods:
        config = AugmentConfig(methods=methods, factor=args.augment_factor, mask_token=mask_token or "",
                               mask_prob=args.augment_mask_prob, replace_prob=args.augment_replace_prob,
                               ngram_prob=args.augment_ngram_prob, seed=seed)
        augmented = augment_texts(list(train_texts), config)
    unlabeled: list[str] = []
    if args.unlabeled_file is not None:
        seen = set(train_texts) | set(augmented)
        unlabeled = [t for t in dict.fromkeys(load_unlabeled_texts(args.unlabeled_file, text_column))
                     if t not in seen]
    logger.info("Transfer set: %d augmented + %d unlabeled texts, labelled by the teacher.", len(augmented),
                len(unlabeled))
    return TransferSet(texts=augmented + unlabeled, methods=methods, factor=args.augment_factor if methods else 0,
                       num_augmented=len(augmented), num_unlabeled=len(unlabeled),
                       unlabeled_file=args.unlabeled_file)


def with_transfer_examples(train: Dataset, transfer: TransferSet, tokenizer, max_length: int) -> Dataset:
    """The tokenized training set followed by the transfer texts, tokenized alike, with label TRANSFER_LABEL (-1):
    the trainer counts them as examples and gives them the teacher's soft targets only."""
    if not transfer.texts:
        return train
    encoded = tokenizer(transfer.texts, truncation=True, max_length=max_length)
    columns = [c for c in train.column_names if c != "label"]
    rows = Dataset.from_dict({**{c: encoded[c] for c in columns}, "label": [TRANSFER_LABEL] * len(transfer.texts)})
    gold = train.cast_column("label", Value("int64"))  # a ClassLabel holds no -1
    rows = rows.cast(gold.features)
    return concatenate_datasets([gold, rows])


@dataclass
class TrimmedStudent:
    model: PreTrainedModel
    tokenizer: object
    vocabulary: dict  # the report's `vocabulary` entry: before, after, and the untrimmed student's test metrics


def trim_student(model: PreTrainedModel, tokenizer, texts: list[str], untrimmed_test: dict) -> TrimmedStudent:
    """The trained student with only the tokens of `texts` (training + transfer texts) and the special tokens."""
    params_before = count_parameters(model)
    model, trimmed_tokenizer, trim = trim_vocabulary(model, tokenizer, texts)
    logger.info("Vocabulary trimmed from %d to %d tokens.", trim.before, trim.after)
    return TrimmedStudent(model, trimmed_tokenizer, {**trim.to_dict(), "params_before": params_before,
                                                     "params_after": count_parameters(model),
                                                     "untrimmed_test": untrimmed_test})
