"""Transfer-learning strategies on tiny models: what trains, what stays bit-identical, layer-wise learning rates,
PEFT adapters merged into plain folders, the features baseline, the distillation student, the comparison script,
and every bad-input message."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer

from conftest import LABELS, build_tiny_bert
from nlp_reuse.commands import compare_strategies, distill, finetune
from nlp_reuse.config import DataArguments, DistillationArguments, FinetuneArguments
from nlp_reuse.data import load_splits, tokenize_splits
from nlp_reuse.modeling import load_for_finetuning, load_teacher, student_from_config, student_from_teacher_layers
from nlp_reuse.predict import predict_logits
from nlp_reuse.strategies import (
    FeatureClassifier,
    GradualUnfreezingCallback,
    StrategyError,
    apply_strategy,
    extract_features,
    fit_feature_classifier,
    layerwise_param_groups,
    save_trained_model,
    strategy_trainer_kwargs,
)
from nlp_reuse.trainers import DistillationTrainer

ROOT = Path(__file__).resolve().parents[1]

FAST = ["--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--latency_samples", "2",
        "--disable_tqdm", "true", "--max_length", "16", "--use_cpu", "true", "--report_to", "none"]
HEAD = ("classifier.", "bert.pooler.")


def data_flags(data_dir):
    return ["--train_file", str(data_dir / "train.jsonl"), "--validation_file", str(data_dir / "validation.jsonl"),
            "--test_file", str(data_dir / "test.jsonl")]


@pytest.fixture(scope="module")
def tokenized(tiny_data_dir, tiny_tokenizer_dir):
    splits, _ = load_splits(DataArguments(train_file=str(tiny_data_dir / "train.jsonl"),
                                          validation_file=str(tiny_data_dir / "validation.jsonl"),
                                          test_file=str(tiny_data_dir / "test.jsonl")), label_names=LABELS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    return tokenize_splits(splits, tokenizer, max_length=16), tokenizer


@pytest.fixture(scope="module")
def base_dir(tiny_tokenizer_dir, tmp_path_factory):
    """A tiny 'pretrained' encoder without named labels (what scripts/finetune.py starts from)."""
    return build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("base"), labels=None)


def targs(tmp_path, **overrides) -> FinetuneArguments:
    kwargs = dict(output_dir=str(tmp_path), per_device_train_batch_size=16, num_train_epochs=1, learning_rate=1e-2,
                  report_to="none", use_cpu=True, seed=0, disable_tqdm=True, warmup_ratio=0.0, weight_decay=0.01,
                  save_strategy="no", logging_strategy="no")
    kwargs.update(overrides)
    return FinetuneArguments(**kwargs)


def make_trainer(model_dir, tokenized, tmp_path, **overrides):
    data, tokenizer = tokenized
    args = targs(tmp_path, **overrides)
    applied = apply_strategy(load_for_finetuning(str(model_dir), LABELS), args)
    trainer = Trainer(model=applied.model, args=args, train_dataset=data["train"], processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), **strategy_trainer_kwargs(applied, args))
    return applied, trainer


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


EXPECTED_TRAINABLE = {
    "full": lambda n: True,
    "head_only": lambda n: n.startswith(HEAD),
    "partial": lambda n: n.startswith(HEAD + ("bert.encoder.layer.2.", "bert.encoder.layer.3.")),
    # Adapters on every Linear of the layers (the default targets), the head's trainable copies; the original head
    # stays frozen.
    "lora": lambda n: (".lora_" in n and ".encoder.layer." in n) or ".modules_to_save." in n,
    "ia3": lambda n: (".ia3_l." in n and any(f".{m}." in n for m in ("key", "value", "output.dense")))
                     or ".modules_to_save." in n,
}


@pytest.mark.parametrize("strategy", sorted(EXPECTED_TRAINABLE))
def test_exactly_the_intended_parameters_train(strategy, base_dir, tokenized, tmp_path):
    applied, trainer = make_trainer(base_dir, tokenized, tmp_path, strategy=strategy, max_steps=3,
                                    unfreeze_top_k=2)
    model = applied.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n for n, _ in model.named_parameters() if EXPECTED_TRAINABLE[strategy](n)}
    assert trainable == expected and trainable
    assert applied.trainable_params == sum(p.numel() for n, p in model.named_parameters() if n in expected)
    before = params(model)
    trainer.train()
    after = params(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == trainable  # everything that may train did, the rest is bit-identical
    if strategy in ("lora", "ia3"):
        assert any("original_module" in n for n in before)  # the pretrained head is kept, frozen


def test_ia3_rescales_ffn_inputs_and_attention_outputs(base_dir):
    args = targs("unused", strategy="ia3")
    applied = apply_strategy(load_for_finetuning(str(base_dir), LABELS), args)
    config = applied.peft_model.peft_config["default"]
    assert sorted(config.feedforward_modules) == [f"bert.encoder.layer.{i}.output.dense" for i in range(4)]
    assert "bert.encoder.layer.0.attention.output.dense" in config.target_modules


def test_gradual_unfreezing_releases_one_layer_per_epoch_top_first(base_dir, tokenized, tmp_path):
    applied, trainer = make_trainer(base_dir, tokenized, tmp_path, strategy="partial", unfreeze_top_k=2,
                                    gradual_unfreeze_every=1.0, num_train_epochs=3)
    snapshots = []
    from transformers import TrainerCallback

    class Snapshot(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            snapshots.append(params(applied.model))

    trainer.add_callback(Snapshot())
    start = params(applied.model)
    trainer.train()
    unfreezer = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GradualUnfreezingCallback))
    assert unfreezer.history == [(0, 0), (3, 1), (6, 2)]  # 48 examples / 16 = 3 steps per epoch

    def moved(a, b, prefix):
        return any(not torch.equal(a[n], b[n]) for n in a if n.startswith(prefix))

    epochs = [start, *snapshots]
    layer3, layer2 = "bert.encoder.layer.3.", "bert.encoder.layer.2."
    assert moved(epochs[0], epochs[1], "classifier.") and not moved(epochs[0], epochs[1], layer3)
    assert moved(epochs[1], epochs[2], layer3) and not moved(epochs[1], epochs[2], layer2)
    assert moved(epochs[2], epochs[3], layer2)
    for prefix in ("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1."):
        assert not moved(epochs[0], epochs[3], prefix)
    # Afterwards the model carries the strategy's full trainable set again.
    assert all(p.requires_grad for p in applied.model.bert.encoder.layer[2].parameters())


def test_layerwise_decay_gives_each_layer_the_rate_above_times_d(base_dir, tokenized, tmp_path):
    _, trainer = make_trainer(base_dir, tokenized, tmp_path, strategy="full", layerwise_lr_decay=0.5,
                              learning_rate=1e-3)
    optimizer = trainer.create_optimizer()
    rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert rates == pytest.approx({"head": 1e-3, "layer.3": 5e-4, "layer.2": 2.5e-4, "layer.1": 1.25e-4,
                                   "layer.0": 6.25e-5, "embeddings": 3.125e-5})
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    grouped = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(names.values())  # every parameter in exactly one group
    for group in optimizer.param_groups:
        no_decay = [names[id(p)] for p in group["params"] if "bias" in names[id(p)] or "LayerNorm" in names[id(p)]]
        assert group["weight_decay"] == (0.0 if no_decay else 0.01)
        assert not no_decay or len(no_decay) == len(group["params"])
    assert all(names[id(p)].startswith("bert.encoder.layer.1.") for g in optimizer.param_groups
               if g["name"] == "layer.1" for p in g["params"])


def test_layerwise_decay_reaches_lora_and_the_distillation_projector(tiny_teacher_dir, tokenized, tmp_path):
    data, tokenizer = tokenized
    teacher = load_teacher(str(tiny_teacher_dir))
    # A narrower student, so DistillationTrainer adds its hidden-state projector group.
    student = student_from_config(teacher, {"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2,
                                            "intermediate_size": 32})
    args = DistillationArguments(output_dir=str(tmp_path),
                                 strategy="lora", layerwise_lr_decay=0.5, learning_rate=1e-3, hidden_loss_weight=1.0,
                                 use_cpu=True, report_to="none", max_steps=2, per_device_train_batch_size=8,
                                 disable_tqdm=True)
    applied = apply_strategy(student, args)
    trainer = DistillationTrainer(model=applied.model, teacher_model=teacher, args=args, train_dataset=data["train"],
                                  processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                                  **strategy_trainer_kwargs(applied, args))
    optimizer = trainer.create_optimizer()
    rates = {g.get("name", "projector"): g["lr"] for g in optimizer.param_groups}
    assert rates == pytest.approx({"head": 1e-3, "layer.1": 5e-4, "layer.0": 2.5e-4, "projector": 1e-3})
    projector = list(trainer.projector.parameters())
    assert any(p is q for g in optimizer.param_groups for p in g["params"] for q in projector)
    lora_groups = [g["name"] for g in optimizer.param_groups for p in g["params"]
                   if any(p is q for n, q in applied.model.named_parameters() if "lora_" in n)]
    assert set(lora_groups) == {"layer.0", "layer.1"}
    trainer.train()  # the layer-mapped hidden loss walks the adapted student's layers


def test_layerwise_groups_only_hold_trainable_parameters(base_dir):
    model = apply_strategy(load_for_finetuning(str(base_dir), LABELS), targs("x", strategy="partial",
                                                                             unfreeze_top_k=1)).model
    groups = layerwise_param_groups(model, 1.0, 0.9, 0.0)
    assert {g["name"] for g in groups} == {"head", "layer.3"}
    assert sorted({g["lr"] for g in groups}) == pytest.approx([0.9, 1.0])


# ------------------------------------------------------------------------------------- end to end via scripts
@pytest.fixture(scope="module")
def lora_teacher(base_dir, tiny_data_dir, tmp_path_factory):
    """scripts/finetune.py --strategy lora: merged folder + adapter folder + report."""
    out = tmp_path_factory.mktemp("lora") / "teacher"
    report = finetune.main(["--model_name_or_path", str(base_dir), "--output_dir", str(out), "--strategy", "lora",
                            "--lora_r", "4", "--learning_rate", "5e-3", *data_flags(tiny_data_dir), *FAST])
    return out, report


def test_lora_finetune_report_and_folders(lora_teacher):
    out, report = lora_teacher
    assert json.loads((out / "report.json").read_text()) == report
    ft = report["finetuning"]
    assert ft["strategy"] == "lora" and ft["lora_r"] == 4 and ft["target_modules"] == ["query", "key", "value", "dense"]
    assert 0 < ft["trainable_params"] < ft["total_params"]
    assert ft["trainable_fraction"] == pytest.approx(ft["trainable_params"] / ft["total_params"], abs=1e-6)
    assert ft["train_runtime_s"] > 0 and ft["peak_memory_mb"] > 0 and ft["peak_memory_kind"].startswith("cpu")
    assert report["model"]["params"] == AutoModelForSequenceClassification.from_pretrained(out).num_parameters()
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
        p.name for p in (out / "adapter").iterdir()}


def test_merged_lora_equals_adapter_model_and_loads_without_peft(lora_teacher, base_dir, tokenized):
    from peft import PeftModel

    out, _ = lora_teacher
    data, tokenizer = tokenized
    batch = DataCollatorWithPadding(tokenizer)([data["test"][i] for i in range(6)])
    features = {k: v for k, v in batch.items() if k != "labels"}
    adapter_model = PeftModel.from_pretrained(load_for_finetuning(str(base_dir), LABELS), str(out / "adapter"))
    merged = AutoModelForSequenceClassification.from_pretrained(out)
    with torch.no_grad():
        expected = adapter_model.eval()(**features).logits
        got = merged.eval()(**features).logits
    base = load_for_finetuning(str(base_dir), LABELS).eval()
    with torch.no_grad():
        assert not torch.allclose(base(**features).logits, got, atol=1e-3)  # the adapter did change the model
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    keys = load_file(str(out / "model.safetensors")).keys()
    assert not any(("lora" in k or "modules_to_save" in k or "base_layer" in k) for k in keys)
    # A fresh interpreter where `import peft` fails loads the folder with nothing missing or unexpected.
    code = ("import sys; sys.modules['peft'] = None\n"
            "from transformers import AutoModelForSequenceClassification as A\n"
            f"m, info = A.from_pretrained({str(out)!r}, output_loading_info=True)\n"
            "assert not any(info.values()), info\nprint(m.config.id2label[2])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "positive"


def test_ia3_merge_equals_adapter_model(base_dir, tokenized, tmp_path):
    applied, trainer = make_trainer(base_dir, tokenized, tmp_path, strategy="ia3", max_steps=3)
    trainer.train()
    data, tokenizer = tokenized
    batch = DataCollatorWithPadding(tokenizer)([data["test"][i] for i in range(6)])
    features = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        expected = applied.model.eval()(**features).logits
    merged = save_trained_model(applied, trainer, tmp_path / "merged", tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(merged.eval()(**features).logits, expected, atol=1e-5, rtol=0)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**features).logits, expected, atol=1e-5, rtol=0)


def test_distill_lora_student_from_a_lora_teacher(lora_teacher, tiny_data_dir, tmp_path):
    teacher_dir, _ = lora_teacher
    out = tmp_path / "run"
    report = distill.main(["--teacher_model_name_or_path", str(teacher_dir), "--output_dir", str(out),
                           "--student_num_layers", "2", "--strategy", "lora", "--lora_r", "2",
                           "--lora_target_modules", "query,value",
                           "--learning_rate", "5e-3", "--hidden_loss_weight", "1.0", "--run_baseline", "true",
                           *data_flags(tiny_data_dir), *FAST])
    assert report["distillation"]["strategy"] == "lora"
    assert report["distillation"]["strategy_config"]["lora_r"] == 2
    teacher = load_teacher(str(teacher_dir))  # the merged LoRA teacher is a plain teacher
    initial = student_from_teacher_layers(teacher, 2).state_dict()  # layers [0, 3] of the teacher
    for name in ("student", "baseline"):
        cost = report["training_cost"][name]
        # r * (in + out) for query and value in 2 layers, plus the head copies (classifier, pooler dense).
        lora = 2 * 2 * 2 * (32 + 32)
        head = 32 * 3 + 3 + 32 * 32 + 32
        assert cost["trainable_params"] == lora + head
        assert cost["trainable_fraction"] < 0.2
        merged = load_file(str(out / name / "model.safetensors"))
        assert not any("lora" in k or "modules_to_save" in k for k in merged)
        for key, value in initial.items():
            # LoRA merges into the weights of query/value only; their biases stay as they were.
            untouched = not any(part in key for part in (".query.weight", ".value.weight", "classifier", "pooler"))
            assert torch.equal(merged[key], value) == untouched, key
        assert (out / f"{name}_adapter" / "adapter_config.json").is_file()
    AutoModelForSequenceClassification.from_pretrained(out / "student")


# ------------------------------------------------------------------------------------------------ features
def test_fit_feature_classifier_matches_scikit_learn(tiny_teacher_dir, tokenized, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModel

    data, tokenizer = tokenized
    collator = DataCollatorWithPadding(tokenizer)
    encoder = AutoModel.from_pretrained(tiny_teacher_dir)
    for labels, train in ((LABELS, data["train"]), (LABELS[:2], data["train"].filter(lambda r: r["label"] < 2))):
        model = fit_feature_classifier(encoder, train, collator, labels, c=0.5, batch_size=16)
        x = extract_features(encoder, data["test"], collator, 16, torch.device("cpu"))
        reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)).fit(
            extract_features(encoder, train, collator, 16, torch.device("cpu")), np.asarray(train["label"]))
        probs = torch.softmax(torch.tensor(predict_logits(model, data["test"], collator=collator, batch_size=16)),
                              -1).numpy()
        np.testing.assert_allclose(probs, reference.predict_proba(x), atol=1e-4)
        assert probs.shape == (len(data["test"]), len(labels))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * 32 + 2  # only the linear layer


def test_features_strategy_trains_saves_and_reloads(base_dir, tiny_data_dir, tokenized, tmp_path):
    out = tmp_path / "features"
    report = finetune.main(["--model_name_or_path", str(base_dir), "--output_dir", str(out), "--strategy", "features",
                            "--features_logreg_c", "2.0", *data_flags(tiny_data_dir), *FAST])
    ft = report["finetuning"]
    assert ft["strategy"] == "features" and ft["features_logreg_c"] == 2.0 and ft["pooling"] == "mean"
    assert ft["trainable_params"] == 3 * 32 + 3 and ft["total_params"] == report["model"]["params"]
    assert set(report["model"]["test"]) == {"accuracy", "macro_f1"} and report["model"]["num_layers"] == 4
    assert not (out / "config.json").exists()  # not mistaken for a sequence-classification folder
    data, tokenizer = tokenized
    reloaded = FeatureClassifier.from_pretrained(out)
    assert reloaded.labels == LABELS
    logits = predict_logits(reloaded, data["test"], collator=DataCollatorWithPadding(tokenizer), batch_size=8)
    from nlp_reuse.evaluation import classification_metrics

    assert classification_metrics(logits.argmax(-1), np.asarray(data["test"]["label"])) == pytest.approx(
        report["model"]["test"])
    assert AutoTokenizer.from_pretrained(out / "encoder").vocab_size == tokenizer.vocab_size


# ------------------------------------------------------------------------------------------ comparison script
def test_compare_strategies_writes_one_table(base_dir, tiny_data_dir, tmp_path, capsys):
    rows = compare_strategies.main([
        "--model_name_or_path", str(base_dir), "--output_dir", str(tmp_path / "cmp"),
        "--strategies", "head_only,partial,features", "--unfreeze_top_k", "1", "--gradual_unfreeze_every", "0.5",
        "--learning_rate", "1e-4", "--strategy_learning_rates", "head_only=3e-3", *data_flags(tiny_data_dir), *FAST])
    assert [r["strategy"] for r in rows] == ["head_only", "partial", "features"]
    assert [r["learning_rate"] for r in rows] == [3e-3, 1e-4, None]
    assert rows[0]["trainable_params"] < rows[1]["trainable_params"]
    saved = json.loads((tmp_path / "cmp" / "strategies.json").read_text())
    assert saved["rows"] == rows
    partial = json.loads((tmp_path / "cmp" / "partial" / "report.json").read_text())["finetuning"]
    assert partial["unfreeze_top_k"] == 1 and partial["gradual_unfreeze_every"] == 0.5
    markdown = (tmp_path / "cmp" / "strategies.md").read_text().splitlines()
    assert markdown[0].startswith("| strategy | trainable params") and len(markdown) == 5
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "features" in printed


# ---------------------------------------------------------------------------------------------- bad inputs
def test_unknown_strategy_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown --strategy 'prompt': expected one of full, head_only, partial, "
                                         r"lora, ia3, features"):
        targs(tmp_path, strategy="prompt")
    with pytest.raises(ValueError, match=r"Unknown --strategy 'features' \(features trains no network: "
                                         r"scripts/finetune.py only\)"):
        DistillationArguments(output_dir=str(tmp_path), strategy="features")
    with pytest.raises(ValueError, match="--strategies must list distinct strategies"):
        compare_strategies.CompareArguments(strategies="full,lora,adapterz")
    with pytest.raises(ValueError, match="STRATEGY=RATE"):
        compare_strategies.CompareArguments(strategies="full,lora", strategy_learning_rates="adapterz=1e-3")
    with pytest.raises(ValueError, match="STRATEGY=RATE"):
        compare_strategies.CompareArguments(strategies="full,lora", strategy_learning_rates="lora=-1")
    # A rate for a strategy not run this time is fine (one config serves the sweep and a single rerun).
    rerun = compare_strategies.CompareArguments(strategies="lora", strategy_learning_rates="head_only=2e-3,lora=1e-3")
    assert rerun.learning_rates == {"head_only": 2e-3, "lora": 1e-3}


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.5])
def test_layerwise_decay_outside_zero_one_is_refused(decay, tmp_path):
    with pytest.raises(ValueError, match=rf"--layerwise_lr_decay must be in \(0.0, 1.0\], got {decay}"):
        targs(tmp_path, layerwise_lr_decay=decay)


def test_top_k_larger_than_the_layer_count_fails_before_training(base_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(StrategyError, match=r"--unfreeze_top_k 5 is larger than the model's 4 encoder layers: "
                                            r"expected 1 to 4"):
        finetune.main(["--model_name_or_path", str(base_dir), "--output_dir", str(out), "--strategy", "partial",
                       "--unfreeze_top_k", "5", *data_flags(tiny_data_dir), *FAST])
    assert not (out / "model.safetensors").exists()
    with pytest.raises(ValueError, match="--unfreeze_top_k must be >= 1"):
        targs(tmp_path, unfreeze_top_k=0)


def test_missing_target_module_lists_the_linear_modules(base_dir, tmp_path):
    model = load_for_finetuning(str(base_dir), LABELS)
    with pytest.raises(StrategyError) as err:
        apply_strategy(model, targs(tmp_path, strategy="lora", lora_target_modules="query,q_proj"))
    message = str(err.value)
    assert "'q_proj' matches no Linear module in the encoder layers of BertForSequenceClassification" in message
    assert ("attention.output.dense, attention.self.key, attention.self.query, attention.self.value, "
            "intermediate.dense, output.dense") in message
    assert all(p.requires_grad for p in model.parameters())  # nothing was frozen or wrapped on the way


def test_option_combinations_that_make_no_sense_are_refused(base_dir, tiny_data_dir, tmp_path):
    with pytest.raises(StrategyError, match="--gradual_unfreeze_every .* needs --strategy partial; found "
                                            "--strategy lora"):
        finetune.main(["--model_name_or_path", str(base_dir), "--output_dir", str(tmp_path / "a"), "--strategy",
                       "lora", "--gradual_unfreeze_every", "1", *data_flags(tiny_data_dir), *FAST])
    assert not (tmp_path / "a").exists()  # refused before the output folder was made
    with pytest.raises(StrategyError, match="--strategy head_only trains none"):
        finetune.main(["--model_name_or_path", str(base_dir), "--output_dir", str(tmp_path / "b"), "--strategy",
                       "head_only", "--layerwise_lr_decay", "0.8", *data_flags(tiny_data_dir), *FAST])
    for flag, value, message in (("--gradual_unfreeze_every", "0", "must be > 0 epochs"),
                                 ("--lora_r", "0", "--lora_r must be >= 1"),
                                 ("--lora_dropout", "1.0", r"--lora_dropout must be in \[0, 1\)"),
                                 ("--features_logreg_c", "0", "--features_logreg_c must be > 0")):
        with pytest.raises(ValueError, match=message):
            finetune.main(["--output_dir", str(tmp_path / "c"), flag, value, *data_flags(tiny_data_dir), *FAST])
