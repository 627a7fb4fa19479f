"""Domain-adaptive continued pretraining (nlp_reuse.adapt) on tiny models: the masked-token loss on fixed masks,
the tied head of an encoder saved without one, the adapted folder as a classifier, train-split-only texts, errors,
and the leak check of a later run that carves its test split otherwise (nlp_reuse.leak_check)."""

import json
import logging
import math
import shutil

import pytest
import torch
from datasets import Dataset
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
    TrainingArguments,
)

from conftest import LABELS, make_examples, write_jsonl
from nlp_reuse.adapt import HEAD_WARMUP_FILE, AdaptArguments, load_masked_lm, run_adapt
from nlp_reuse.adapt_texts import collect_texts
from nlp_reuse.commands import main as nlp_reuse_main
from nlp_reuse.config import DataArguments, FinetuneArguments
from nlp_reuse.data import load_splits
from nlp_reuse.errors import ConfigError, DataError, ModelError
from nlp_reuse.leak_check import adapted_split_leak, check_adapted_splits
from nlp_reuse.masked_lm import warm_up_new_head
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


def test_adaptation_lowers_the_masked_token_loss_on_fixed_masks(adapted, tokenizer, domain_file):
    base, out, args, report = adapted
    saved = json.loads((out / "report.json").read_text())
    assert saved == report
    held, sample = saved["masked_lm_loss"]["heldout"], saved["masked_lm_loss"]["train_sample"]
    assert held["texts"] == 24 and sample["texts"] == 32 and held["masked_tokens"] >= 100 <= sample["masked_tokens"]
    assert held["after"] < held["before"] - 0.5 and sample["after"] < sample["before"] - 0.5
    assert held["perplexity_after"] == pytest.approx(math.exp(held["after"]), rel=1e-3)
    assert saved["model"]["head_initialised"] is False and saved["model"]["decoder_tied"] is True
    assert saved["texts"]["sources"] == [{"flag": "unlabeled_file", "name": str(args.unlabeled_file[0]),
                                          "texts": 120, "path": str(domain_file.resolve()), "split": None}]
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


def test_head_warmup_trains_the_new_head_alone(plain_encoder, tokenizer, domain_file, tmp_path):
    """--head_warmup_steps: only the new head's own weights move (encoder and tied decoder frozen), the flags come
    back, and the masked-token loss drops with the encoder unchanged."""
    loaded = load_masked_lm(str(plain_encoder))
    model = loaded.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    texts = collect_texts(AdaptArguments(output_dir=str(tmp_path / "o"), model_name_or_path=str(plain_encoder),
                                         unlabeled_file=[str(domain_file)], **QUICK))
    train = Dataset.from_dict(dict(tokenizer(texts.train, truncation=True, max_length=16)))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    args = TrainingArguments(output_dir=str(tmp_path / "t"), per_device_train_batch_size=16, report_to=[],
                             disable_tqdm=True, use_cpu=True)
    ran = warm_up_new_head(model, loaded.new_head_weights, train, collator, args, steps=6, learning_rate=1e-2,
                           output_dir=tmp_path / "head")
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert ran["steps"] == 6 and ran["learning_rate"] == 1e-2
    assert moved and moved <= set(loaded.new_head_weights) and moved <= set(ran["trained_weights"])
    assert "bert.embeddings.word_embeddings.weight" not in ran["trained_weights"]  # the tied decoder stays frozen
    assert all(p.requires_grad for p in model.parameters())

    # End to end: the report gives the loss after the warm-up (encoder unchanged) between before and after.
    report = run_adapt(AdaptArguments(output_dir=str(tmp_path / "adapted"), model_name_or_path=str(plain_encoder),
                                      unlabeled_file=[str(domain_file)], validation_fraction=0.2,
                                      train_loss_samples=0, loss_masked_tokens=100, num_train_epochs=4,
                                      learning_rate=3e-3, head_warmup_steps=40, head_warmup_learning_rate=1e-2,
                                      **QUICK))
    held = report["masked_lm_loss"]["heldout"]
    assert held["after_head_warmup"] < held["before"] - 0.3 and held["after"] < held["after_head_warmup"] - 0.3
    assert report["adaptation"]["head_warmup"]["steps"] == 40 and report["adaptation"]["head_warmup"]["seconds"] > 0
    assert not (tmp_path / "adapted" / "checkpoints").exists()  # no checkpoint: the warm-up record went too


def test_head_warmup_is_skipped_for_a_trained_head(adapted, domain_file, tmp_path, caplog):
    base = adapted[0]
    with caplog.at_level(logging.WARNING, logger="nlp_reuse"):
        report = run_adapt(AdaptArguments(output_dir=str(tmp_path / "out"), model_name_or_path=str(base),
                                          unlabeled_file=[str(domain_file)], num_train_epochs=1,
                                          head_warmup_steps=5, **QUICK))
    assert report["model"]["head_initialised"] is False
    assert report["adaptation"]["head_warmup"] is None
    assert "after_head_warmup" not in report["masked_lm_loss"]["heldout"]
    assert (f"--head_warmup_steps 5 is ignored: the MLM head of {base} is the checkpoint's own (trained)"
            in caplog.text)


def test_a_resumed_run_reports_the_head_warmup_it_resumed_after(plain_encoder, domain_file, tmp_path):
    """A run killed after a checkpoint resumes with the warmed-up head in the checkpoint (no warm-up again): its
    report gives the warm-up and the losses after it as the first run measured them."""
    out = tmp_path / "adapted"
    args = dict(output_dir=str(out), model_name_or_path=str(plain_encoder), unlabeled_file=[str(domain_file)],
                num_train_epochs=1, head_warmup_steps=3, save_strategy="steps", save_steps=4, **QUICK)
    first = run_adapt(AdaptArguments(**args))
    record = json.loads((out / "checkpoints" / "model" / HEAD_WARMUP_FILE).read_text())
    assert record["head_warmup"] == first["adaptation"]["head_warmup"] and record["head_warmup"]["steps"] == 3
    assert record["after_head_warmup"]["heldout"] == pytest.approx(
        first["masked_lm_loss"]["heldout"]["after_head_warmup"], abs=1e-6)
    checkpoints = sorted((out / "checkpoints" / "model").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    assert len(checkpoints) >= 2
    for later in checkpoints[1:]:  # killed after the first checkpoint
        shutil.rmtree(later)
    for name in ("report.json", "model.safetensors"):
        (out / name).unlink()

    resumed = run_adapt(AdaptArguments(**args, resume_from_checkpoint="last"))
    assert resumed["adaptation"]["head_warmup"] == first["adaptation"]["head_warmup"]
    for name in ("heldout", "train_sample"):
        assert (resumed["masked_lm_loss"][name]["after_head_warmup"]
                == first["masked_lm_loss"][name]["after_head_warmup"])


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
    split = {"dataset_config": None, "text_column": "text", "split_seed": 42, "test_split_size": 0.1,
             "validation_split_size": 0.1, "label_column": "label"}
    assert [(s.path, s.split) for s in texts.sources] == [
        (str(extra.resolve()), None), (None, split), (str(labelled.resolve()), split)]


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


# ------------------------------------------------------------ (e) a later run must carve its splits as adapt did

SPLIT = {"dataset_config": None, "text_column": "text", "split_seed": 42, "test_split_size": 0.1,
         "validation_split_size": 0.1, "label_column": "label"}
TWEETS = {"flag": "dataset_name", "name": "builtin:sentiment_tweets", "texts": 900, "path": None, "split": SPLIT}
ADAPTED_WITH = "--split_seed 42 --test_split_size 0.1 --validation_split_size 0.1 --label_column label"


def _adaptation(*sources: dict, split_seed: int = 42) -> dict:
    """An adaptation report.json, as far as the leak check reads it."""
    return {"texts": {"sources": list(sources)}, "masked_lm_loss": {"heldout": {}},
            "adaptation": {"split_seed": split_seed}}


@pytest.mark.parametrize("flags, found, held_out", [
    ({"split_seed": 7}, "--split_seed 7 (the adaptation: 42)", "test"),
    ({"test_split_size": 0.2}, "--test_split_size 0.2 (the adaptation: 0.1)", "test"),
    ({"label_column": "topic"}, "--label_column topic (the adaptation: label)", "test"),  # another stratification
    ({"validation_split_size": 0.2}, "--validation_split_size 0.2 (the adaptation: 0.1)", "validation"),
    ({"split_seed": 7, "test_split_size": 0.2},
     "--split_seed 7 (the adaptation: 42), --test_split_size 0.2 (the adaptation: 0.1)", "test"),
])
def test_other_split_settings_on_the_adapted_data_are_a_leak(flags, found, held_out):
    data = DataArguments(dataset_name="builtin:sentiment_tweets", **flags)
    message = adapted_split_leak(_adaptation(TWEETS), data, "runs/tweets")
    assert message.startswith("--model_name_or_path runs/tweets was adapted (nlp-reuse adapt) on the train split "
                              "of --dataset_name builtin:sentiment_tweets carved with other split settings")
    assert f"texts of this run's {held_out} split were adaptation texts" in message
    assert f"expected: the split settings the adaptation carved with: {ADAPTED_WITH}\n" in message
    assert f"found:    {found}\n" in message
    ours = " ".join(f"--{name} {flags.get(name, SPLIT[name])}"
                    for name in ("split_seed", "test_split_size", "validation_split_size", "label_column"))
    assert (f"fix:      re-run with the adaptation's split flags {ADAPTED_WITH}, or adapt again with this run's "
            f"(nlp-reuse adapt --dataset_name builtin:sentiment_tweets {ours} --output_dir NEW_FOLDER)") in message


def test_a_train_file_is_the_same_data_under_another_path_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    source = {"flag": "train_file", "name": "data/train.csv", "texts": 80, "path": str(tmp_path / "data/train.csv"),
              "split": SPLIT}
    data = DataArguments(train_file=str(tmp_path / "data" / ".." / "data" / "train.csv"), split_seed=3)
    message = adapted_split_leak(_adaptation(source), data, "adapted", flag="--student_model_name_or_path")
    assert message.startswith("--student_model_name_or_path adapted was adapted (nlp-reuse adapt) on the train "
                              "split of --train_file data/train.csv")
    assert "found:    --split_seed 3 (the adaptation: 42)" in message
    assert adapted_split_leak(_adaptation(source), DataArguments(train_file="data/train.csv"), "adapted") is None


@pytest.mark.parametrize("sources, data", [
    ([TWEETS], DataArguments(dataset_name="builtin:sentiment_tweets")),  # the same settings
    ([TWEETS], DataArguments(dataset_name="builtin:sentiment_amazon", split_seed=7)),  # other data
    ([{"flag": "unlabeled_file", "name": "tweets.txt", "texts": 50, "path": "/data/tweets.txt", "split": None}],
     DataArguments(train_file="/data/t.csv", split_seed=7)),  # other texts
    ([{"flag": "unlabeled_file", "name": "t.csv", "texts": 50, "path": "/data/t.csv", "split": None}],
     DataArguments(train_file="/data/t.csv", validation_file="/data/v.csv", test_file="/data/test.csv")),  # no carving
    ([{**TWEETS, "flag": "train_file", "name": "t.csv", "path": "/data/t.csv"}],
     DataArguments(train_file="/data/t.csv", validation_file="/data/v.csv", test_file="/data/test.csv",
                   split_seed=7)),  # nothing is carved
    ([{**TWEETS, "flag": "train_file", "name": "t.csv", "path": "/data/t.csv"}],
     DataArguments(train_file="/data/t.csv", test_file="/data/test.csv")),  # validation carved as adapt's test
    ([{**TWEETS, "flag": "train_file", "name": "t.csv", "path": "/data/t.csv"}],
     DataArguments(train_file="/data/t.csv", validation_file="/data/v.csv", validation_split_size=0.3)),
    ([{**TWEETS, "flag": "train_file", "name": "t.csv", "path": "/data/t.csv"}],
     DataArguments(train_file="/data/t.csv", text_column="title", split_seed=7)),  # other texts of the file
])
def test_no_leak_without_carving_the_adapted_data_otherwise(sources, data):
    assert adapted_split_leak(_adaptation(*sources), data, "adapted") is None


UNLABELED = {"flag": "unlabeled_file", "name": "data/train.jsonl", "texts": 80, "split": None}


@pytest.mark.parametrize("flags, held_out, found", [
    ({"train_file": "data/train.jsonl"}, "validation and test splits",
     "--train_file data/train.jsonl is the adaptation's --unlabeled_file data/train.jsonl (validation and test "
     "carved from it)"),
    ({"train_file": "data/train.jsonl", "split_seed": 7, "test_file": "data/test.jsonl"}, "validation split",
     "--train_file data/train.jsonl is the adaptation's --unlabeled_file data/train.jsonl (validation carved"),
    ({"train_file": "data/other.jsonl", "validation_file": "data/train.jsonl"}, "validation split",
     "--validation_file data/train.jsonl is the adaptation's --unlabeled_file"),
    ({"train_file": "data/other.jsonl", "test_file": "./data/../data/train.jsonl"}, "test split",
     "--test_file ./data/../data/train.jsonl is the adaptation's --unlabeled_file"),
])
@pytest.mark.parametrize("recorded", ["path", "name only"])
def test_an_unlabeled_file_read_as_labelled_data_is_a_leak(flags, held_out, found, recorded, tmp_path,
                                                           monkeypatch):
    """adapt accepts a labelled file as --unlabeled_file and reads all of it: the held-out splits a later run takes
    from it are adaptation texts, whatever the split settings. A report from before adapt recorded `path` gives the
    name, resolved here."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    source = {**UNLABELED, "path": str(tmp_path / "data" / "train.jsonl")} if recorded == "path" else UNLABELED
    message = adapted_split_leak(_adaptation(source), DataArguments(**flags), "adapted")
    assert message.startswith("--model_name_or_path adapted was adapted (nlp-reuse adapt) on every text of "
                              "--unlabeled_file data/train.jsonl, which this run reads as labelled data: texts of "
                              f"this run's {held_out} were adaptation texts")
    assert "expected: held-out data that adaptation did not read\n" in message
    assert f"found:    {found}" in message
    assert "fix:      adapt again on texts that exclude the held-out data" in message
    if flags["train_file"] == "data/train.jsonl":
        carve = ("--split_seed 7 --test_split_size 0.1 --label_column label" if "test_file" in flags else
                 "--split_seed 42 --test_split_size 0.1 --validation_split_size 0.1 --label_column label")
        assert (f"pass data/train.jsonl to adapt as --train_file, not --unlabeled_file, with this run's split flags, "
                f"so only its train split is read (nlp-reuse adapt --train_file data/train.jsonl {carve} "
                "--output_dir NEW_FOLDER)") in message
    else:
        assert "leave this run's --" in message


@pytest.mark.parametrize("adapt_flags, run_flags", [
    ({}, {}),
    ({}, {"split_seed": 7}),
    ({"validation_split_size": 0.2}, {}),
    ({"validation_split_size": 0.2}, {"validation_split_size": 0.2}),
    ({"test_split_size": 0.2}, {"validation_split_size": 0.2}),
])
@pytest.mark.parametrize("run_files", [("test_file",), (), ("validation_file",), ("validation_file", "test_file")])
def test_a_run_whose_held_out_splits_hold_adaptation_texts_is_refused(adapt_flags, run_flags, run_files, tmp_path):
    """Against the texts themselves: the adaptation's texts (collect_texts) and the held-out splits load_splits
    carves for the run. The check may refuse a carving that happens to miss the adaptation's texts, never pass one
    that hits them. With a --test_file (only) it is exact: the validation split is carved from the whole file first,
    so it takes the rows of the adaptation's test split when carved with that split's size, seed and labels."""
    labelled = write_jsonl(tmp_path / "labelled.jsonl", make_examples(400, seed=5))
    held_files = {name: str(write_jsonl(tmp_path / f"{name}.jsonl", make_examples(20, seed=6)))
                  for name in run_files}
    texts = collect_texts(AdaptArguments(output_dir=str(tmp_path / "out"), train_file=[str(labelled)],
                                         **adapt_flags))
    data = DataArguments(train_file=str(labelled), **held_files, **run_flags)
    splits, _ = load_splits(data)
    adaptation_texts = set(texts.train) | set(texts.heldout)
    leaked = {split: len(set(splits[split]["text"]) & adaptation_texts) for split in ("validation", "test")}
    message = adapted_split_leak(_adaptation(*texts.summary()["sources"]), data, "adapted")
    if any(leaked.values()):
        assert message is not None, leaked
    if len(run_files) == 2:  # nothing carved
        assert message is None
    if run_files != ("test_file",):
        return
    assert leaked["test"] == 0 and (message is None) == (leaked["validation"] == 0)
    if message is None:
        return
    wanted = adapt_flags.get("test_split_size", 0.1)
    assert "texts of this run's validation split were adaptation texts" in message
    assert (f"expected: the split settings the adaptation carved with: --split_seed 42 --test_split_size {wanted} "
            "--label_column label\n") in message
    assert (f"fix:      re-run with --split_seed 42 --validation_split_size {wanted} --label_column label (beside a "
            "--test_file the validation split is carved from the whole file") in message
    if "validation_split_size" in run_flags:
        assert f"found:    --validation_split_size 0.2 (the adaptation: --test_split_size {wanted})\n" in message


def test_a_hub_dataset_message_says_its_own_splits_could_not_be_told():
    hub = {**TWEETS, "name": "someone/reviews"}
    message = adapted_split_leak(_adaptation(hub), DataArguments(dataset_name="someone/reviews", split_seed=7), "a")
    assert ("(The check could not tell whether someone/reviews ships its own validation and test splits, which are "
            "not carved: it takes them as carved.)") in message
    assert "found:    --split_seed 7 (the adaptation: 42)" in message
    builtin = adapted_split_leak(_adaptation(TWEETS), DataArguments(dataset_name="builtin:sentiment_tweets",
                                                                    split_seed=7), "a")
    assert "could not tell" not in builtin


def test_a_report_without_split_settings_compares_the_split_seed_only():
    old = {key: value for key, value in TWEETS.items() if key not in ("path", "split")}
    data = DataArguments(dataset_name="builtin:sentiment_tweets", test_split_size=0.3, validation_split_size=0.3)
    assert adapted_split_leak(_adaptation(old), data, "adapted") is None
    message = adapted_split_leak(_adaptation(old, split_seed=42), DataArguments(
        dataset_name="builtin:sentiment_tweets", split_seed=1), "adapted")
    assert "expected: the split settings the adaptation carved with: --split_seed 42\n" in message
    assert "found:    --split_seed 1 (the adaptation: 42)" in message


@pytest.fixture(scope="module")
def adapted_on_labels(plain_encoder, tmp_path_factory):
    """An encoder adapted on the train split of a labelled file (default split settings)."""
    root = tmp_path_factory.mktemp("adapt_labelled")
    labelled = write_jsonl(root / "labelled.jsonl", make_examples(60, seed=5))
    run_adapt(AdaptArguments(output_dir=str(root / "adapted"), model_name_or_path=str(plain_encoder),
                             train_file=[str(labelled)], num_train_epochs=1, **QUICK))
    return root / "adapted", labelled


def test_finetune_and_distill_from_the_adapted_folder_refuse_other_split_settings(adapted_on_labels, tmp_path,
                                                                                    capsys):
    adapted, labelled = adapted_on_labels
    source = json.loads((adapted / "report.json").read_text())["texts"]["sources"]
    assert source == [{"flag": "train_file", "name": str(labelled), "texts": 48, "path": str(labelled.resolve()),
                       "split": SPLIT}]
    check_adapted_splits(str(adapted), DataArguments(train_file=str(labelled)))  # the same settings pass

    out = tmp_path / "ft"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert nlp_reuse_main(["finetune", "--model_name_or_path", str(adapted), "--train_file", str(labelled),
                           "--split_seed", "7", "--overwrite_output_dir", "true", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"nlp-reuse finetune: error: --model_name_or_path {adapted} was adapted" in err
    assert "found:    --split_seed 7 (the adaptation: 42)" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"

    assert nlp_reuse_main(["distill", "--train_file", str(labelled), "--teacher_model_name_or_path",
                           str(tmp_path / "teacher"), "--student_model_name_or_path", str(adapted),
                           "--test_split_size", "0.2", "--output_dir", str(tmp_path / "distill")]) == 2
    err = capsys.readouterr().err
    assert f"nlp-reuse distill: error: --student_model_name_or_path {adapted} was adapted" in err
    assert "found:    --test_split_size 0.2 (the adaptation: 0.1)" in err
    assert not (tmp_path / "distill").exists()

    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(f"tasks:\n  - {{name: a, train_file: {labelled}}}\n"
                     f"  - {{name: b, train_file: {labelled}, label_column: label, split_seed: 7}}\n")
    assert nlp_reuse_main(["finetune", "--tasks", str(tasks), "--model_name_or_path", str(adapted), "--output_dir",
                           str(tmp_path / "multitask")]) == 2
    assert f"error: Task 'b' of {tasks}: --model_name_or_path {adapted} was adapted" in capsys.readouterr().err
    assert not (tmp_path / "multitask").exists()
