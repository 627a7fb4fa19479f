"""Domain alignment while fine-tuning: CORAL / MMD against hand computations, gradient reversal, the head-input
features, DomainAdaptationTrainer (logging, checkpoint and resume of the domain classifier, gradient accumulation)
and the finetune flags."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer
from transformers.trainer_callback import TrainerState

from conftest import build_tiny_bert
from nlp_reuse.commands import finetune
from nlp_reuse.config import DataArguments, FinetuneArguments
from nlp_reuse.data import load_splits, tokenize_splits
from nlp_reuse.domain import (
    DOMAIN_CLASSIFIER_FILE_NAME,
    DomainAdaptationTrainer,
    DomainClassifier,
    TargetBatches,
    capture_head_input,
    dann_lambda,
    domain_adversarial_loss,
    grad_reverse,
    load_target_texts,
    tokenize_target_texts,
)
from nlp_reuse.errors import ConfigError, DataError
from nlp_reuse.losses import coral_loss, get_domain_loss, mmd_loss
from nlp_reuse.strategies import apply_strategy

# ------------------------------------------------------------------------------------------------------ losses


def _numpy_coral(s: np.ndarray, t: np.ndarray) -> float:
    d = s.shape[1]
    return float(((np.cov(s, rowvar=False) - np.cov(t, rowvar=False)) ** 2).sum() / (4 * d * d))


def _loop_mmd(s: np.ndarray, t: np.ndarray, sigmas: list[float]) -> float:
    def k(x, y):
        return sum(np.exp(-((x - y) ** 2).sum() / (2 * sigma**2)) for sigma in sigmas)

    def mean_k(a, b):
        return np.mean([k(x, y) for x in a for y in b])

    return float(mean_k(s, s) + mean_k(t, t) - 2 * mean_k(s, t))


SOURCE = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [2.0, 1.0, 0.0], [1.0, 3.0, 1.0]])
TARGET = torch.tensor([[0.5, 2.0, 1.0], [1.5, 0.0, 0.5], [3.0, 1.0, 2.0]])


def test_coral_matches_numpy_covariances_and_is_zero_on_identical_sets():
    assert coral_loss(SOURCE, TARGET).item() == pytest.approx(_numpy_coral(SOURCE.numpy(), TARGET.numpy()), rel=1e-6)
    assert coral_loss(SOURCE, SOURCE.clone()).item() == 0.0
    # Covariances ignore the mean: a shifted copy is aligned for CORAL (not for MMD, below); a scaled one is not.
    assert coral_loss(SOURCE, SOURCE + 5.0).item() == pytest.approx(0.0, abs=1e-5)
    assert coral_loss(SOURCE, 2.0 * SOURCE).item() > 0.1


def test_mmd_matches_explicit_kernel_sums():
    sigmas = [0.5, 1.0, 3.0]
    expected = _loop_mmd(SOURCE.numpy(), TARGET.numpy(), sigmas)
    assert mmd_loss(SOURCE, TARGET, bandwidths=sigmas).item() == pytest.approx(expected, rel=1e-5)
    # Default bandwidths: the median distance of the pooled distinct pairs times 0.25, 0.5, 1, 2, 4.
    pooled = np.concatenate([SOURCE.numpy(), TARGET.numpy()])
    distances = [np.linalg.norm(x - y) for i, x in enumerate(pooled) for j, y in enumerate(pooled) if i != j]
    median = float(np.median(distances))
    expected = _loop_mmd(SOURCE.numpy(), TARGET.numpy(), [median * m for m in (0.25, 0.5, 1, 2, 4)])
    assert mmd_loss(SOURCE, TARGET).item() == pytest.approx(expected, rel=1e-5)
    assert mmd_loss(SOURCE, SOURCE.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert mmd_loss(SOURCE, SOURCE + 5.0).item() > 0.1


def test_mmd_bandwidth_carries_no_gradient():
    """The default bandwidth is a constant for autograd: the same gradient as passing its value by hand."""
    pooled = torch.cat([SOURCE, TARGET])
    median = torch.cdist(pooled, pooled)[~torch.eye(len(pooled), dtype=torch.bool)].median()
    grads = []
    for bandwidths in (None, [float(median) * m for m in (0.25, 0.5, 1, 2, 4)]):
        source = SOURCE.clone().requires_grad_(True)
        mmd_loss(source, TARGET, bandwidths=bandwidths).backward()
        grads.append(source.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


def test_domain_loss_errors():
    with pytest.raises(ValueError, match=r"Unknown domain_loss 'kl': expected one of \['coral', 'mmd'\]"):
        get_domain_loss("kl")
    with pytest.raises(ValueError, match="at least 2 rows in each feature set, got 4 and 1"):
        coral_loss(SOURCE, TARGET[:1])
    with pytest.raises(ValueError, match="same width"):
        mmd_loss(SOURCE, TARGET[:, :2])


# --------------------------------------------------------------------------------------------- gradient reversal


@pytest.mark.parametrize("lambda_", [1.0, 0.3])
def test_gradient_reversal_is_identity_forward_and_scaled_negation_backward(lambda_):
    x = torch.randn(4, 3, requires_grad=True)
    weights = torch.randn(4, 3)
    y = grad_reverse(x, lambda_)
    torch.testing.assert_close(y, x)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, -lambda_ * weights)


def test_dann_schedule():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.2) == pytest.approx(2 / (1 + np.exp(-2)) - 1)
    assert dann_lambda(1.0) == pytest.approx(1.0, abs=1e-4)


def test_adversarial_loss_is_bce_and_reverses_only_the_features_gradient():
    torch.manual_seed(0)
    classifier = DomainClassifier(3)
    source, target = SOURCE.clone().requires_grad_(True), TARGET.clone().requires_grad_(True)
    loss = domain_adversarial_loss(classifier, source, target, lambda_=0.5)
    logits = classifier(torch.cat([SOURCE, TARGET]))
    plain = F.binary_cross_entropy_with_logits(logits, torch.tensor([0.0] * 4 + [1.0] * 3))
    torch.testing.assert_close(loss, plain)
    loss.backward()
    plain_source = SOURCE.clone().requires_grad_(True)
    classifier_grads = [p.grad.clone() for p in classifier.parameters()]
    classifier.zero_grad()
    F.binary_cross_entropy_with_logits(classifier(torch.cat([plain_source, TARGET])),
                                       torch.tensor([0.0] * 4 + [1.0] * 3)).backward()
    torch.testing.assert_close(source.grad, -0.5 * plain_source.grad)
    for reversed_grad, p in zip(classifier_grads, classifier.parameters()):
        torch.testing.assert_close(reversed_grad, p.grad)  # the classifier itself descends its loss


# ------------------------------------------------------------------------------------------------------ features


@pytest.fixture(scope="module")
def model_dir(tiny_tokenizer_dir, tmp_path_factory):
    # initializer_range 0.3: at BERT's 0.02 a random tiny model's pooled [CLS] hardly varies between texts (CORAL
    # ~1e-16), unlike a pretrained encoder's; no dropout, so runs compare exactly.
    return build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("da_model"), num_layers=2,
                           initializer_range=0.3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_captured_features_are_the_pooled_cls_the_head_reads(model_dir, strategy, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    model = apply_strategy(model, FinetuneArguments(output_dir=str(tmp_path), strategy=strategy)).model
    batch = AutoTokenizer.from_pretrained(model_dir)(["the movie was good", "bad plot"], padding=True,
                                                     return_tensors="pt")
    with torch.no_grad(), capture_head_input(model) as captured:
        logits = model(**batch).logits
    assert len(captured) == 1 and captured[0].shape == (2, 32)
    with torch.no_grad():
        pooled = model.bert(**batch).pooler_output
        torch.testing.assert_close(captured[0], pooled)
        torch.testing.assert_close(model.classifier(captured[0]), logits)
    model(**batch)  # the hook is gone after the block
    assert len(captured) == 1


# ------------------------------------------------------------------------------------------------------- trainer

_TARGET_WORDS = ["hello", "world", "question", "answer", "spam", "ham"]


def target_texts(n: int, seed: int = 0) -> list[str]:
    """Another 'domain': other words and longer texts than the synthetic reviews."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_TARGET_WORDS, k=rng.randint(6, 10))) for _ in range(n)]


@pytest.fixture(scope="module")
def source(tiny_data_dir, model_dir):
    splits, _ = load_splits(DataArguments(train_file=str(tiny_data_dir / "train.jsonl"),
                                          test_file=str(tiny_data_dir / "test.jsonl")),
                            label_names=["negative", "neutral", "positive"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return tokenize_splits(splits, tokenizer, max_length=16), tokenizer


def make_trainer(model_dir, source, tmp_path, target_n=20, **overrides):
    data, tokenizer = source
    kwargs = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=1, learning_rate=1e-3,
                  use_cpu=True, seed=0, disable_tqdm=True, warmup_ratio=0.0, logging_steps=1,
                  target_unlabeled_file="target.txt", domain_loss="coral")
    kwargs.update(overrides)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    return DomainAdaptationTrainer(
        model=model, args=FinetuneArguments(**kwargs), train_dataset=data["train"], eval_dataset=data["test"],
        processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
        target_dataset=tokenize_target_texts(target_texts(target_n), tokenizer, 16))


def held_out_domain_loss(model, source, loss: str) -> float:
    """`loss` between the head-input features of all source training texts and 20 target texts, model in eval."""
    data, tokenizer = source
    collate = DataCollatorWithPadding(tokenizer)
    source_batch = collate([{k: v for k, v in row.items() if k != "label"} for row in data["train"]])
    target_batch = collate([dict(tokenizer(t, truncation=True, max_length=16)) for t in target_texts(20)])
    model.eval()
    with torch.no_grad(), capture_head_input(model) as captured:
        model(**source_batch.to(model.device))
        model(**target_batch.to(model.device))
    return get_domain_loss(loss)(*captured).item()


# CORAL divides by 4 d^2 (d = 32 here): its values are small and its weight large.
DOMAIN_WEIGHTS = {"coral": 1000.0, "mmd": 5.0, "adversarial": 1.0}
# Held-out domain loss of the aligned model / that of the same run with weight 0, measured over several sessions
# (the session's tokenizer ids vary): coral ~0.01, mmd 0.2-0.35 (batches of 16; at 8 the MMD estimate's own bias
# drowns the signal).
MAX_RATIO = {"coral": 0.2, "mmd": 0.6}


@pytest.mark.parametrize("loss", ["coral", "mmd", "adversarial"])
def test_each_loss_trains_logs_its_domain_loss_and_saves_a_plain_model(loss, model_dir, source, tmp_path):
    run = dict(domain_loss=loss, max_steps=6, learning_rate=3e-3, per_device_train_batch_size=16)
    trainer = make_trainer(model_dir, source, tmp_path / "aligned", domain_loss_weight=DOMAIN_WEIGHTS[loss], **run)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    domain = [entry["domain_loss"] for entry in logged]
    assert len(domain) == 6 and all(np.isfinite(domain)) and min(domain) > 0
    if loss == "adversarial":
        lambdas = [entry["grl_lambda"] for entry in logged]
        assert lambdas == sorted(lambdas) and 0 < lambdas[0] < lambdas[-1] < 1
    else:
        assert "grl_lambda" not in logged[0]
        # The same run without the alignment term: the aligned model's source and target features are closer.
        plain = make_trainer(model_dir, source, tmp_path / "plain", domain_loss_weight=0.0, **run)
        plain.train()
        aligned, unaligned = held_out_domain_loss(trainer.model, source, loss), \
            held_out_domain_loss(plain.model, source, loss)
        assert aligned < MAX_RATIO[loss] * unaligned, (aligned, unaligned)
    trainer.save_model(str(tmp_path / "model"))
    keys = load_file(str(tmp_path / "model" / "model.safetensors")).keys()
    assert keys and not any(k.startswith("net.") for k in keys)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], value)


def test_evaluation_is_plain_fine_tuning(model_dir, source, tmp_path):
    trainer = make_trainer(model_dir, source, tmp_path, domain_loss="mmd")
    plain = Trainer(model=trainer.model, args=trainer.args, eval_dataset=source[0]["test"],
                    processing_class=source[1], data_collator=DataCollatorWithPadding(source[1]))
    assert trainer.evaluate()["eval_loss"] == pytest.approx(plain.evaluate()["eval_loss"], rel=1e-6)
    assert trainer._domain_loss_count == 0  # no target batch was drawn


def test_target_batches_cycle_every_text_and_are_a_function_of_the_draw(source):
    tokenizer = source[1]
    dataset = tokenize_target_texts(target_texts(5), tokenizer, 16)
    batches = TargetBatches(dataset, 4, DataCollatorWithPadding(tokenizer), seed=3)
    ids = [tuple(row.tolist()) for draw in range(5) for row in batches.batch(draw)["input_ids"]]
    firsts = [ids[i * 5:(i + 1) * 5] for i in range(4)]  # 20 rows = 4 passes of the 5 texts
    every_text = {tuple(tokenizer(t, truncation=True, max_length=16)["input_ids"]) for t in target_texts(5)}
    assert all({tuple(x for x in row if x != tokenizer.pad_token_id) for row in rows} == every_text
               for rows in firsts)
    again = TargetBatches(dataset, 4, DataCollatorWithPadding(tokenizer), seed=3)
    assert torch.equal(again.batch(3)["input_ids"], batches.batch(3)["input_ids"])


def test_domain_classifier_is_checkpointed_first_restored_on_resume_and_with_the_best_model(
        model_dir, source, tmp_path, monkeypatch):
    common = dict(domain_loss="adversarial", max_steps=4, save_strategy="steps", save_steps=2,
                  eval_strategy="steps", eval_steps=2, load_best_model_at_end=True, metric_for_best_model="loss",
                  greater_is_better=True)  # greater_is_better on the loss: the best is the earlier checkpoint-2
    save_state = TrainerState.save_to_json

    def state_after_classifier(self, path):
        assert (Path(path).parent / DOMAIN_CLASSIFIER_FILE_NAME).is_file()  # written before trainer_state.json
        save_state(self, path)

    monkeypatch.setattr(TrainerState, "save_to_json", state_after_classifier)
    full = make_trainer(model_dir, source, tmp_path / "full", **common)
    full.train()
    assert Path(full.state.best_model_checkpoint).name == "checkpoint-2"
    best = load_file(str(tmp_path / "full" / "checkpoint-2" / DOMAIN_CLASSIFIER_FILE_NAME))
    for name, value in full.domain_classifier.state_dict().items():
        torch.testing.assert_close(value, best[name], rtol=0, atol=0)

    resumed = make_trainer(model_dir, source, tmp_path / "resumed", **common)
    with torch.no_grad():  # whatever the new classifier starts as, resuming must replace it
        for p in resumed.domain_classifier.parameters():
            p.add_(1.0)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    for name in (DOMAIN_CLASSIFIER_FILE_NAME, "model.safetensors"):
        a = load_file(str(tmp_path / "full" / "checkpoint-4" / name))
        b = load_file(str(tmp_path / "resumed" / "checkpoint-4" / name))
        moved = max((a[k] - best[k]).abs().max().item() for k in best) if name == DOMAIN_CLASSIFIER_FILE_NAME else 1
        assert moved > 0
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")


def test_gradient_accumulation_optimizes_the_mean_over_micro_batches(model_dir, source, tmp_path):
    """One SGD step of 2 x 4 accumulated source examples equals the step computed by hand on
    mean CE over the 8 + w * mean over the two micro-batches of CORAL(f_s, f_t). Four target texts and micro-batches
    of 4: every target batch is all of them (CORAL does not depend on the order)."""
    weight, lr = 5.0, 0.5
    trainer = make_trainer(model_dir, source, tmp_path, target_n=4, optim="sgd", per_device_train_batch_size=4,
                           gradient_accumulation_steps=2, max_steps=1, learning_rate=lr, lr_scheduler_type="constant",
                           max_grad_norm=0.0, domain_loss_weight=weight)
    data, tokenizer = source

    def sequential_loader():
        from torch.utils.data import DataLoader

        ds = trainer._remove_unused_columns(trainer.train_dataset, description="training")
        return trainer.accelerator.prepare(DataLoader(ds, batch_size=4, collate_fn=trainer.data_collator))

    trainer.get_train_dataloader = sequential_loader
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).train()
    collate = DataCollatorWithPadding(tokenizer)
    target = collate([dict(tokenizer(t, truncation=True, max_length=16)) for t in target_texts(4)])
    rows = [data["train"][i] for i in range(8)]
    total = 0.0
    for micro in (rows[:4], rows[4:]):
        batch = collate(micro)
        labels = batch.pop("labels")
        with capture_head_input(model) as captured:
            logits = model(**batch).logits
            model(**target)
        total = total + F.cross_entropy(logits, labels, reduction="sum") / 8
        total = total + weight * coral_loss(captured[0], captured[1]) / 2
    total.backward()
    expected = {name: p.detach() - lr * p.grad for name, p in model.named_parameters()}

    trainer.train()
    trained = dict(trainer.model.named_parameters())
    assert any(not torch.allclose(expected[n], p) for n, p in model.named_parameters())  # the step moved them
    for name, value in expected.items():
        torch.testing.assert_close(trained[name].detach(), value, atol=1e-6, rtol=1e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")


# --------------------------------------------------------------------------------------------------------- flags


@pytest.mark.parametrize("flags, message", [
    ({"domain_loss": "coral"}, r"--target_unlabeled_file and --domain_loss together.*found --domain_loss coral "
                               r"without --target_unlabeled_file"),
    ({"target_unlabeled_file": "t.txt"}, r"found --target_unlabeled_file t.txt with --domain_loss none"),
    ({"domain_loss": "wasserstein", "target_unlabeled_file": "t.txt"},
     r"--domain_loss must be one of none, coral, mmd, adversarial, got 'wasserstein'"),
    ({"domain_loss": "mmd", "target_unlabeled_file": "t.txt", "strategy": "features"},
     r"found --strategy features, which .* trains no network"),
    ({"domain_loss": "mmd", "target_unlabeled_file": "t.txt", "domain_loss_weight": -1.0},
     r"--domain_loss_weight must be >= 0, got -1.0"),
])
def test_flag_errors(flags, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        FinetuneArguments(output_dir=str(tmp_path), **flags)


def test_target_file_errors_name_the_flag(tmp_path):
    with pytest.raises(DataError, match=r"--target_unlabeled_file .*missing.txt does not exist"):
        load_target_texts(str(tmp_path / "missing.txt"))
    one = tmp_path / "one.txt"
    one.write_text("only one text\n\n   \n")
    with pytest.raises(DataError, match=r"holds too few texts(?s:.*)found:    1 text"):
        load_target_texts(str(one))
    csv = tmp_path / "target.csv"
    csv.write_text("body\nfirst\n\nsecond\n")
    assert load_target_texts(str(csv), text_column="body") == ["first", "second"]
    with pytest.raises(ConfigError, match="holds single texts, but the task has text pairs"):
        load_target_texts(str(csv), text_column="body", text_pair_column="other")


def test_finetune_command_records_the_alignment_and_fails_early(model_dir, tiny_data_dir, tmp_path, monkeypatch):
    target = tmp_path / "tweets.txt"
    target.write_text("\n".join(target_texts(12)) + "\n\n")
    flags = ["--model_name_or_path", str(model_dir), "--train_file", str(tiny_data_dir / "train.jsonl"),
             "--validation_file", str(tiny_data_dir / "validation.jsonl"), "--test_file",
             str(tiny_data_dir / "test.jsonl"), "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
             "--latency_samples", "1", "--disable_tqdm", "true", "--max_length", "16",
             "--target_unlabeled_file", str(target), "--domain_loss", "coral", "--domain_loss_weight", "2"]
    report = finetune.main([*flags, "--output_dir", str(tmp_path / "run")])
    assert report["domain_adaptation"] == {"target_unlabeled_file": str(target), "num_target_texts": 12,
                                           "domain_loss": "coral", "domain_loss_weight": 2.0}
    assert json.loads((tmp_path / "run" / "report.json").read_text()) == report
    assert set(report["model"]["test"]) == {"accuracy", "macro_f1"}
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the target texts were checked")

    monkeypatch.setattr("nlp_reuse.pipeline.load_for_finetuning", no_model)
    target.write_text("just one\n")
    with pytest.raises(DataError, match="too few texts"):
        finetune.main([*flags, "--output_dir", str(tmp_path / "again")])


@pytest.mark.parametrize("loss", ["coral", "mmd"])
def test_a_last_batch_of_one_example_trains_on_its_cross_entropy(loss, model_dir, source, tmp_path):
    data, _ = source
    batch = len(data["train"]) - 1  # two steps: a full batch, then one example
    trainer = make_trainer(model_dir, source, tmp_path, domain_loss=loss, per_device_train_batch_size=batch)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and logged[0]["domain_loss"] > 0 and logged[1]["domain_loss"] == 0.0
    assert np.isfinite(logged[1]["loss"]) and logged[1]["loss"] > 0
