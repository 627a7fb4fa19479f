"""Domain-adaptive continued pretraining (nlp_reuse.adapt) on tiny models: the masked-token loss on fixed masks,
the tied head of an encoder saved without one, the adapted folder as a classifier, train-split-only texts, errors."""

import json
import math

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    DataCollatorForLanguageModeling,
    GPT2Config,
)

from conftest import LABELS, make_examples, write_jsonl
from nlp_reuse.adapt import AdaptArguments, collect_texts, load_masked_lm, run_adapt
from nlp_reuse.commands import main as nlp_reuse_main
from nlp_reuse.config import DataArguments, FinetuneArguments
from nlp_reuse.data import load_splits
from nlp_reuse.errors import ConfigError, DataError, ModelError
from nlp_reuse.pipeline import run_finetune

QUICK = {"per_device_train_batch_size": 16, "disable_tqdm": True, "max_length": 16, "logging_steps": 1000,
         "per_device_eval_batch_size": 64}


def _tiny_config(tokenizer) -> BertConfig:
    return BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64)


def _save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def domain_file(tmp_path_factory):
    """In-domain texts, one per line (the synthetic reviews the tiny tokenizer was trained on)."""
    path = tmp_path_factory.mktemp("texts") / "domain.txt"
    path.write_text("".join(r["text"] + "\n" for r in make_examples(120, seed=11)) + "\n   \n")
    return path


def _hf_masked_loss(model, tokenizer, texts: list[str], seed: int, min_masked: int = 1) -> tuple[float, int]:
    """transformers' own MLM loss (the mean over one batch's masked tokens) on a seeded collator's masks, the texts
    masked again and again (new draws) until `min_masked` tokens are; returns (mean per masked token, passes)."""
    encoded = [tokenizer(t, truncation=True, max_length=16) for t in texts]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
    model.eval()
    total, masked, passes = 0.0, 0, 0
    while masked < min_masked:
        batch = collator(encoded)
        with torch.no_grad():
            loss = model(**batch).loss.item()
        count = int((batch["labels"] != -100).sum())
        total, masked, passes = total + loss * count, masked + count, passes + 1
    return total / masked, passes


# -------------------------------------------------------------------------------------- (a) the loss goes down


@pytest.fixture(scope="module")
def adapted(tokenizer, domain_file, tmp_path_factory):
    """A tiny BertForMaskedLM (with its head) adapted on the domain texts."""
    root = tmp_path_factory.mktemp("adapt_mlm")
    torch.manual_seed(0)
    base = _save(BertForMaskedLM(_tiny_config(tokenizer)), tokenizer, root / "base")
    args = AdaptArguments(output_dir=str(root / "out"), model_name_or_path=str(base),
                          unlabeled_file=[str(domain_file)], validation_fraction=0.2, train_loss_samples=32,
                          loss_masked_tokens=100, num_train_epochs=8, learning_rate=3e-3, **QUICK)
    report = run_adapt(args, command="nlp-reuse adapt ...")
    return base, root / "out", args, report


def test_adaptation_lowers_the_masked_token_loss_on_fixed_masks(adapted, tokenizer):
    base, out, args, report = adapted
    saved = json.loads((out / "report.json").read_text())
    assert saved == report
    held, sample = saved["masked_lm_loss"]["heldout"], saved["masked_lm_loss"]["train_sample"]
    assert held["texts"] == 24 and sample["texts"] == 32 and held["masked_tokens"] >= 100 <= sample["masked_tokens"]
    assert held["after"] < held["before"] - 0.5 and sample["after"] < sample["before"] - 0.5
    assert held["perplexity_after"] == pytest.approx(math.exp(held["after"]), rel=1e-3)
    assert saved["model"]["head_initialised"] is False and saved["model"]["decoder_tied"] is True
    assert saved["texts"]["sources"] == [{"flag": "unlabeled_file", "name": str(args.unlabeled_file[0]),
                                          "texts": 120}]
    assert saved["texts"]["num_train"] + saved["texts"]["num_heldout"] == 120 - saved["texts"]["duplicates_removed"]
    assert saved["adaptation"]["num_train_epochs"] == 8 and saved["adaptation"]["learning_rate"] == 3e-3
    assert saved["command"] == "nlp-reuse adapt ..." and "torch" in saved["environment"]
    assert json.loads((out / "run_args.json").read_text())["adapt"]["mlm_probability"] == 0.15
    assert not (out / "checkpoints").exists()

    # Recomputed here with transformers' own loss: the held-out texts fit one batch, so the seeded collator draws
    # the masks the report's before/after were measured on, pass after pass, for both models.
    texts = collect_texts(args)
    assert not set(texts.heldout) & set(texts.train)
    original = AutoModelForMaskedLM.from_pretrained(base)
    after = AutoModelForMaskedLM.from_pretrained(out)
    before_here, passes = _hf_masked_loss(original, tokenizer, texts.heldout, args.seed, min_masked=100)
    assert passes == held["mask_passes"] > 1
    assert before_here == pytest.approx(held["before"], abs=1e-4)
    assert _hf_masked_loss(after, tokenizer, texts.heldout, args.seed, 100)[0] == pytest.approx(held["after"], abs=1e-4)
    # And on in-domain texts the run never saw, with other masks.
    unseen = [r["text"] for r in make_examples(40, seed=99)]
    assert (_hf_masked_loss(after, tokenizer, unseen, seed=7, min_masked=200)[0]
            < _hf_masked_loss(original, tokenizer, unseen, seed=7, min_masked=200)[0] - 0.5)


# ------------------------------------------------------------------- (b) an encoder saved without an MLM head


@pytest.fixture(scope="module")
def plain_encoder(tokenizer, tmp_path_factory):
    torch.manual_seed(1)
    return _save(BertModel(_tiny_config(tokenizer)), tokenizer, tmp_path_factory.mktemp("plain") / "base")


def test_a_new_head_is_tied_to_the_input_embeddings(plain_encoder):
    loaded = load_masked_lm(str(plain_encoder))
    model = loaded.model
    assert loaded.head_initialised and "cls.predictions.transform.dense.weight" in loaded.new_head_weights
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    base = AutoModel.from_pretrained(plain_encoder)
    assert torch.equal(model.get_output_embeddings().weight, base.get_input_embeddings().weight)
    assert sorted(loaded.carried) == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]


def test_a_new_head_is_tied_even_when_the_config_unties_it(tokenizer, tmp_path, monkeypatch):
    config = _tiny_config(tokenizer)
    config.tie_word_embeddings = False
    folder = _save(BertModel(config), tokenizer, tmp_path / "untied")
    model = load_masked_lm(str(folder)).model
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.config.tie_word_embeddings is True  # saved so: the adapted folder reloads tied

    monkeypatch.setattr(BertForMaskedLM, "tie_weights", lambda self, *args, **kwargs: None)  # cannot tie
    with pytest.raises(ModelError, match="cannot be tied to the input embeddings") as err:
        load_masked_lm(str(folder))
    assert "fix:" in str(err.value)


def test_adapted_plain_encoder_loads_as_a_classifier_and_finetunes(plain_encoder, domain_file, tiny_data_dir,
                                                                   tmp_path):
    out = tmp_path / "adapted"
    report = run_adapt(AdaptArguments(output_dir=str(out), model_name_or_path=str(plain_encoder),
                                      unlabeled_file=[str(domain_file)], num_train_epochs=1, learning_rate=1e-3,
                                      **QUICK))
    assert report["model"]["head_initialised"] is True and report["model"]["decoder_tied"] is True
    assert "cls.predictions.bias" in report["model"]["new_head_weights"]
    assert report["model"]["architecture"] == "BertForMaskedLM"
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]

    adapted_lm = AutoModelForMaskedLM.from_pretrained(out)
    assert adapted_lm.get_output_embeddings().weight is adapted_lm.get_input_embeddings().weight
    classifier = AutoModelForSequenceClassification.from_pretrained(out, num_labels=len(LABELS))
    encoder, base = adapted_lm.bert.state_dict(), AutoModel.from_pretrained(plain_encoder).state_dict()
    for name, value in classifier.bert.state_dict().items():
        if name.startswith("pooler."):  # carried over from the source: a MaskedLM model has none
            assert torch.equal(value, base[name]), name
        else:
            assert torch.equal(value, encoder[name]), name
    assert not torch.equal(encoder["embeddings.word_embeddings.weight"], base["embeddings.word_embeddings.weight"])

    data = DataArguments(train_file=str(tiny_data_dir / "train.jsonl"),
                         validation_file=str(tiny_data_dir / "validation.jsonl"),
                         test_file=str(tiny_data_dir / "test.jsonl"), max_length=16)
    finetuned = run_finetune(data, FinetuneArguments(output_dir=str(tmp_path / "ft"), model_name_or_path=str(out),
                                                     num_train_epochs=1, per_device_train_batch_size=16,
                                                     latency_samples=2, disable_tqdm=True))
    assert finetuned["model"]["name_or_path"] == str(out)
    tuned = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft")
    assert tuned.config.id2label == dict(enumerate(LABELS))
    assert not torch.equal(tuned.bert.embeddings.word_embeddings.weight,
                           classifier.bert.embeddings.word_embeddings.weight)


# ------------------------------------------------------------------------ (c) labelled data: train split only


def test_labelled_sources_give_their_train_split_texts_only(tmp_path):
    labelled = write_jsonl(tmp_path / "labelled.jsonl", make_examples(60, seed=5))
    splits, _ = load_splits(DataArguments(train_file=str(labelled)))
    extra = tmp_path / "extra.txt"
    extra.write_text(f"{splits['train']['text'][0]}\nsomething else entirely\n")  # one duplicate of a train text
    args = AdaptArguments(output_dir=str(tmp_path / "out"), unlabeled_file=[str(extra)], train_file=[str(labelled)],
                          dataset_name=["builtin:sentiment_tweets"])
    texts = collect_texts(args)
    used = set(texts.train) | set(texts.heldout)
    tweets, _ = load_splits(DataArguments(dataset_name="builtin:sentiment_tweets"))
    for source in (splits, tweets):
        held_out = set(source["test"]["text"]) | set(source["validation"]["text"])
        assert held_out and not {t.strip() for t in held_out} & used
        assert {t.strip() for t in source["train"]["text"]} <= used
    assert used == ({t.strip() for t in splits["train"]["text"]} | {t.strip() for t in tweets["train"]["text"]}
                    | {"something else entirely"})
    assert [(s.flag, s.texts) for s in texts.sources] == [
        ("unlabeled_file", 2), ("dataset_name", len(tweets["train"])), ("train_file", len(splits["train"]))]
    assert texts.duplicates_removed == 1


# -------------------------------------------------------------------------------------------------- (d) errors


def test_no_text_source_is_refused_before_anything_loads(tmp_path, capsys):
    with pytest.raises(ConfigError, match="No texts to adapt on") as err:
        AdaptArguments(output_dir=str(tmp_path / "out"), unlabeled_file=[])
    assert "expected: at least one text source" in str(err.value) and "fix:" in str(err.value)
    assert nlp_reuse_main(["adapt", "--output_dir", str(tmp_path / "out")]) == 2
    assert "nlp-reuse adapt: error: No texts to adapt on" in capsys.readouterr().err


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", "\n  \n", "holds no text"), ("empty.csv", "", "is empty")])
def test_an_empty_file_is_refused_before_the_model_loads(tmp_path, monkeypatch, plain_encoder, name, content,
                                                          message):
    monkeypatch.setattr("nlp_reuse.adapt.load_masked_lm", lambda *a: pytest.fail("the model was loaded"))
    (tmp_path / name).write_text(content)
    args = AdaptArguments(output_dir=str(tmp_path / "out"), model_name_or_path=str(plain_encoder),
                          unlabeled_file=[str(tmp_path / name)])
    with pytest.raises(DataError, match=message) as err:
        run_adapt(args)
    assert f"--unlabeled_file {tmp_path / name}" in str(err.value)


def test_an_existing_output_folder_needs_overwrite(tmp_path, domain_file, plain_encoder):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = AdaptArguments(output_dir=str(out), model_name_or_path=str(plain_encoder),
                          unlabeled_file=[str(domain_file)])
    with pytest.raises(FileExistsError, match="is not empty; refusing to write into it") as err:
        run_adapt(args)
    assert "--overwrite_output_dir true" in str(err.value) and "notes.txt" in str(err.value)


def test_a_model_without_masked_lm_support_is_refused(tmp_path, domain_file):
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path / "gpt2")
    args = AdaptArguments(output_dir=str(tmp_path / "out"), model_name_or_path=str(tmp_path / "gpt2"),
                          unlabeled_file=[str(domain_file)])
    with pytest.raises(ModelError, match="cannot be adapted with masked-language modelling") as err:
        run_adapt(args)
    assert "model_type 'gpt2'" in str(err.value)
