"""The transfer set (nlp_reuse.transfer_set): Tang et al. 2019 augmentation and unlabeled text files."""

import json
import random

import pytest

from conftest import make_examples, write_jsonl
from nlp_reuse.errors import ConfigError, DataError
from nlp_reuse.transfer_set import AUGMENT_METHODS, AugmentConfig, augment_texts, load_unlabeled_texts

TEXTS = [r["text"] for r in make_examples(60, seed=3)]


def config(methods=AUGMENT_METHODS, factor=10, **kwargs) -> AugmentConfig:
    return AugmentConfig(methods=methods, factor=factor, mask_token="[MASK]", **kwargs)


def test_same_seed_same_texts_other_seed_other_texts():
    first = augment_texts(TEXTS, config(seed=1))
    assert first == augment_texts(TEXTS, config(seed=1))
    assert first != augment_texts(TEXTS, config(seed=2))
    assert len(first) > 5 * len(TEXTS)


def test_masking_and_replace_rates():
    """Texts of 50 words, word j of every text starts with p{j}x, so a word's position tells whether it was kept.

    200 texts x 20 candidates x 50 words = 200,000 word draws: the binomial standard deviation of a rate near 0.1 is
    under 0.001, so the 0.02 bound is > 20 deviations wide, while a wrong threshold (e.g. replace tested against
    replace_prob instead of mask_prob + replace_prob, which cuts the replace rate here from 0.15 to 0.05) is far
    outside it. Dropping the candidates equal to their source (no word masked: 0.85**50 = 3e-4 of them) moves the
    masking rate by less than 1e-4.
    """
    texts = [" ".join(f"p{j}x{i}" for j in range(50)) for i in range(200)]
    masked_only = augment_texts(texts, config(("masking",), factor=20, mask_prob=0.15))
    words = [word for text in masked_only for word in text.split()]
    assert len(words) > 0.99 * 200 * 20 * 50  # full-length texts: no n-grams
    assert abs(words.count("[MASK]") / len(words) - 0.15) < 0.02

    both = augment_texts(texts, config(("masking", "replace"), factor=20, mask_prob=0.1, replace_prob=0.15))
    rows = [text.split() for text in both]
    cells = [(j, word) for row in rows for j, word in enumerate(row)]
    masked = sum(word == "[MASK]" for _, word in cells) / len(cells)
    # A replacement drawn from the same position (1 in 50) looks kept.
    replaced = sum(word != "[MASK]" and not word.startswith(f"p{j}x") for j, word in cells) / len(cells)
    assert abs(masked - 0.1) < 0.02
    assert abs(replaced - 0.15 * 49 / 50) < 0.02


def test_ngrams_are_contiguous_spans_of_their_source():
    out = augment_texts(TEXTS, config(("ngram",), factor=10, ngram_prob=1.0, ngram_max=3))
    sources = [f" {text} " for text in TEXTS]
    lengths = {len(text.split()) for text in out}
    assert lengths == {1, 2, 3}
    assert all(any(f" {text} " in source for source in sources) for text in out)


def test_ngram_only_gives_every_proper_span_once():
    out = augment_texts(["a b c"], config(("ngram",), factor=200, ngram_prob=1.0, ngram_max=5))
    assert sorted(out) == sorted(["a", "b", "c", "a b", "b c"])  # "a b c" itself is an input: dropped


def test_replace_draws_only_corpus_words():
    out = augment_texts(TEXTS, config(("replace",), factor=10, replace_prob=0.5))
    corpus = {word for text in TEXTS for word in text.split()}
    assert out and all(set(text.split()) <= corpus for text in out)
    assert all(len(text.split()) == 6 for text in out)


def test_outputs_differ_from_inputs_and_each_other():
    texts = [*TEXTS, "the  movie\twas good", "good"]
    out = augment_texts(texts, config(factor=20, ngram_prob=0.9, mask_prob=0.05, replace_prob=0.05))
    normalized = {" ".join(text.split()) for text in texts}
    assert not normalized & set(out)
    assert len(out) == len(set(out))
    # Nothing switched on: every candidate is its source, so nothing is generated.
    assert augment_texts(TEXTS, config(("masking",), mask_prob=0.0)) == []
    assert augment_texts(["", "   "], config()) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"methods": ("masking", "pos")}, "unknown augmentation(s) ['pos']"),
    ({"methods": ()}, "names no known augmentation"),
    ({"factor": 0}, "factor is too small"),
    ({"mask_prob": 1.5}, "mask_prob is not a probability"),
    ({"ngram_prob": -0.1}, "ngram_prob is not a probability"),
    ({"mask_prob": 0.6, "replace_prob": 0.5}, "mask_prob + replace_prob is more than 1"),
    ({"ngram_max": 0}, "ngram_max is too small"),
])
def test_config_errors(kwargs, message):
    arguments = {"methods": AUGMENT_METHODS, "factor": 5, "mask_token": "[MASK]", **kwargs}
    with pytest.raises(ConfigError) as err:
        AugmentConfig(**arguments)
    assert message in str(err.value)
    if "methods" in kwargs:
        assert "['masking', 'ngram', 'replace']" in str(err.value)


def test_methods_from_a_list_and_empty_mask_token():
    assert config(["ngram"]).methods == ("ngram",)
    with pytest.raises(ConfigError, match="mask_token is empty"):
        AugmentConfig(methods=("masking",), factor=2, mask_token="")
    AugmentConfig(methods=("ngram",), factor=2, mask_token="")  # no masking, no mask token needed


def test_load_unlabeled_txt_csv_jsonl(tmp_path):
    txt = tmp_path / "texts.txt"
    txt.write_text("  first text \n\n   \nsecond text\n", encoding="utf-8")
    assert load_unlabeled_texts(str(txt)) == ["first text", "second text"]

    csv = tmp_path / "texts.csv"
    csv.write_text("id,body\n1, a csv text \n2,\n3,another\n", encoding="utf-8")
    assert load_unlabeled_texts(str(csv), text_column="body") == ["a csv text", "another"]

    jsonl = write_jsonl(tmp_path / "texts.jsonl", [{"text": "one"}, {"text": "  "}, {"text": "two"}])
    assert load_unlabeled_texts(str(jsonl)) == ["one", "two"]


def test_load_unlabeled_errors(tmp_path):
    jsonl = write_jsonl(tmp_path / "texts.jsonl", [{"sentence": "one", "label": 1}])
    with pytest.raises(DataError) as err:
        load_unlabeled_texts(str(jsonl))
    assert f"{jsonl} has no column 'text'" in str(err.value) and "['sentence', 'label']" in str(err.value)

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_unlabeled_texts(str(empty))
    assert f"{empty} holds no text" in str(err.value) and "only empty lines" in str(err.value)

    blank = write_jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": " "}])
    with pytest.raises(DataError, match="only empty values in the column 'text'"):
        load_unlabeled_texts(str(blank))

    with pytest.raises(DataError, match="does not exist"):
        load_unlabeled_texts(str(tmp_path / "missing.txt"))
    (tmp_path / "texts.xml").write_text("<a/>", encoding="utf-8")
    with pytest.raises(DataError, match=r"'\.txt', '\.csv'"):
        load_unlabeled_texts(str(tmp_path / "texts.xml"))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_unlabeled_texts(str(latin1))


def test_outputs_are_plain_strings():
    """Not numpy strings: the texts go to tokenizers, JSON caches and datasets."""
    rng = random.Random(0)
    texts = [" ".join(rng.choices([f"w{i}" for i in range(50)], k=8)) for _ in range(100)]
    out = augment_texts(texts, config(factor=5))
    assert out and all(type(text) is str for text in out)
    assert json.loads(json.dumps(out)) == out
