"""The transfer set a small student learns from: augmented copies of the training texts and unlabeled text files.

A BiLSTM or other small student needs many more teacher-labelled inputs than a task's training set holds. Tang et
al. 2019 ("Distilling Task-Specific Knowledge from BERT into Simple Neural Networks", §3.3) generate them from the
training texts themselves; each generated example draws, per word, X ~ U[0, 1]:

    X < mask_prob                  -> the word becomes the mask token         ("masking")
    X < mask_prob + replace_prob   -> the word is replaced by another word    ("replace")
    otherwise                      -> the word is kept

and then, with probability ngram_prob, only a random n-gram of it is kept, n ~ U{1, ..., ngram_max} ("ngram").
The paper replaces a word by a word of the same part-of-speech tag; "replace" here draws it from the unigram
distribution of the training texts' own words instead, which needs no tagger and no download.

The generated texts carry no labels: the caller labels them with the teacher's logits. `load_unlabeled_texts` reads
in-domain texts the user already has (a .txt file or a data file's text column) for the same use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nlp_reuse.data_files import ENCODING, FILE_READERS, not_utf8_error, read_data_file
from nlp_reuse.errors import ConfigError, DataError, format_error

AUGMENT_METHODS = ("masking", "ngram", "replace")
# Above this many texts, augmentation takes long enough to deserve a progress bar.
_PROGRESS_MIN_TEXTS = 10_000
UNLABELED_SUFFIXES = (".txt", *FILE_READERS)


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(format_error(
            f"AugmentConfig.{name} is not a probability.", "a number in [0, 1]", str(value),
            f"set {name} between 0 and 1",
        ))


@dataclass
class AugmentConfig:
    """How `augment_texts` generates the transfer set (Tang et al. 2019, §3.3)."""

    methods: tuple[str, ...] = field(
        metadata={"help": f"Augmentations to apply, any of {AUGMENT_METHODS}; the ones not listed are off."})
    factor: int = field(metadata={"help": "Candidates generated per training text (N in the paper)."})
    mask_token: str = field(metadata={"help": "The word that replaces a masked word: the tokenizer's mask token."})
    mask_prob: float = field(default=0.1, metadata={"help": "Probability that a word is masked (p_mask)."})
    replace_prob: float = field(
        default=0.1, metadata={"help": "Probability that a word is replaced by a word drawn from the training texts' "
                                       "unigram distribution (stands in for p_pos)."})
    ngram_prob: float = field(
        default=0.25, metadata={"help": "Probability that only a random n-gram of a candidate is kept (p_ng)."})
    ngram_max: int = field(default=5, metadata={"help": "Largest n of a sampled n-gram; n is uniform in [1, max]."})
    seed: int = field(default=42, metadata={"help": "Seed of the random generator: the same seed, the same texts."})

    def __post_init__(self):
        self.methods = tuple(self.methods)  # a YAML or CLI list
        unknown = [m for m in self.methods if m not in AUGMENT_METHODS]
        if unknown or not self.methods:
            raise ConfigError(format_error(
                "AugmentConfig.methods names no known augmentation." if not unknown
                else f"AugmentConfig.methods has unknown augmentation(s) {unknown}.",
                f"one or more of {list(AUGMENT_METHODS)}", str(list(self.methods)),
                f"choose from {list(AUGMENT_METHODS)}",
            ))
        if self.factor < 1:
            raise ConfigError(format_error(
                "AugmentConfig.factor is too small.", "at least 1 candidate per text", str(self.factor),
                "set factor to 1 or more (the paper uses 20 on small data sets)",
            ))
        if self.ngram_max < 1:
            raise ConfigError(format_error(
                "AugmentConfig.ngram_max is too small.", "at least 1 word per n-gram", str(self.ngram_max),
                "set ngram_max to 1 or more (the paper uses 5)",
            ))
        for name in ("mask_prob", "replace_prob", "ngram_prob"):
            _check_probability(name, getattr(self, name))
        if self.mask_prob + self.replace_prob > 1.0:
            raise ConfigError(format_error(
                "AugmentConfig.mask_prob + replace_prob is more than 1.",
                "mask_prob + replace_prob <= 1: one uniform draw per word decides mask, replace or keep",
                f"{self.mask_prob} + {self.replace_prob} = {self.mask_prob + self.replace_prob}",
                "lower mask_prob or replace_prob",
            ))
        if "masking" in self.methods and not self.mask_token.strip():
            raise ConfigError(format_error(
                "AugmentConfig.mask_token is empty.", "the tokenizer's mask token, e.g. [MASK]",
                repr(self.mask_token), "pass tokenizer.mask_token",
            ))


def _candidates(words: list[str], config: AugmentConfig, corpus: list[str], rng: np.random.Generator) -> list[str]:
    """`config.factor` augmented versions of one text's words."""
    mask_prob = config.mask_prob if "masking" in config.methods else 0.0
    replace_prob = config.replace_prob if "replace" in config.methods else 0.0
    draws = rng.random((config.factor, len(words)))  # (factor, words): one X ~ U[0, 1] per word
    masked = draws < mask_prob
    replaced = ~masked & (draws < mask_prob + replace_prob)
    # A uniformly drawn word occurrence of the corpus is a draw from its unigram distribution.
    picks = rng.integers(0, len(corpus), size=int(replaced.sum()))
    grid = np.array(words, dtype=object)[None, :].repeat(config.factor, axis=0)  # (factor, words)
    grid[masked] = config.mask_token
    grid[replaced] = np.array([corpus[i] for i in picks.tolist()], dtype=object)

    spans = [(0, len(words))] * config.factor
    if "ngram" in config.methods:
        sampled = rng.random(config.factor) < config.ngram_prob
        lengths = np.minimum(rng.integers(1, config.ngram_max + 1, size=config.factor), len(words))
        starts = (rng.random(config.factor) * (len(words) - lengths + 1)).astype(int)
        spans = [(int(s), int(s + n)) if take else (0, len(words)) for take, n, s in zip(sampled, lengths, starts)]
    return [" ".join(row[start:end]) for row, (start, end) in zip(grid.tolist(), spans)]


def augment_texts(texts: list[str], config: AugmentConfig) -> list[str]:
    """Texts generated from `texts` by `config.methods`, `config.factor` candidates per text (Tang et al. 2019).

    Words are whitespace-separated. Only candidates that differ from every text of `texts` (compared with their
    whitespace normalized) and from each other are returned, in the order generated. The result depends only on
    `texts` and `config` (seeded numpy Generator).
    """
    rng = np.random.default_rng(config.seed)
    split = [text.split() for text in texts]
    corpus = [word for words in split for word in words]
    seen = {" ".join(words) for words in split}  # originals, then every kept candidate
    generated: list[str] = []
    for words in tqdm(split, desc="augmenting texts", disable=len(split) <= _PROGRESS_MIN_TEXTS):
        if not words:
            continue
        for candidate in _candidates(words, config, corpus, rng):
            if candidate not in seen:
                seen.add(candidate)
                generated.append(candidate)
    return generated


def load_unlabeled_texts(path: str, text_column: str = "text") -> list[str]:
    """The non-empty texts of `path`, stripped: one per line of a .txt file, or the `text_column` of a .csv, .tsv,
    .jsonl, .json or .parquet file (read by `nlp_reuse.data_files.read_data_file`)."""
    p = Path(path)
    flag = f"--unlabeled_file {path}"
    if not p.is_file():
        raise DataError(format_error(
            f"{flag} does not exist.", f"a file of unlabeled texts ({', '.join(UNLABELED_SUFFIXES)})",
            "no such file", "check the path",
        ))
    suffix = p.suffix.lower()
    if suffix not in UNLABELED_SUFFIXES:
        raise DataError(format_error(
            f"{flag} has an unsupported suffix.", f"one of {list(UNLABELED_SUFFIXES)}", repr(p.suffix),
            "save the texts one per line as .txt, or as a .csv/.jsonl with a text column",
        ))
    if suffix == ".txt":
        data = p.read_bytes()
        try:
            values = data.decode(ENCODING).splitlines()
        except UnicodeDecodeError as err:
            raise not_utf8_error(p, flag, data, err.start) from err
    else:
        df = read_data_file(path, split="unlabeled")
        if text_column not in df.columns:
            raise DataError(format_error(
                f"{flag} has no column {text_column!r}.", f"a text column named {text_column!r}",
                f"the columns {list(df.columns)}", "pass the name of the column that holds the texts as text_column",
            ))
        values = [str(value) for value in df[text_column].dropna()]
    texts = [value.strip() for value in values if value.strip()]
    if not texts:
        where = "lines" if suffix == ".txt" else f"values in the column {text_column!r}"
        raise DataError(format_error(
            f"{flag} holds no text.", "at least one non-empty text", f"only empty {where}",
            f"add texts to {path}, or point to the file that holds them",
        ))
    return texts
