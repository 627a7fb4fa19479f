"""Multi-task fine-tuning and distillation (nlp_reuse.multitask) on tiny models: the task sampler's proportions, one
shared encoder, the joint and per-task checkpoints, the distilled multi-task student, the tasks-file errors, and
publishing one task of a multi-task student (`nlp-reuse push --task`)."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import concatenate_datasets
from hub_support import REPO, ROOT_FILES, expected_cells, folder_bytes, split_card, table_rows
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, TrainerCallback

from conftest import build_tiny_bert, make_examples, write_jsonl
from nlp_reuse import commands
from nlp_reuse.commands import distill, finetune, push
from nlp_reuse.config import DistillationArguments, FinetuneArguments
from nlp_reuse.errors import ConfigError, StrategyError
from nlp_reuse.hub import default_commit_message, load_run_report, push_to_hub, render_model_card
from nlp_reuse.losses import kd_kl_loss
from nlp_reuse.modeling import load_for_finetuning
from nlp_reuse.multitask import (
    MultiTaskDistillationTrainer,
    MultiTaskModel,
    MultiTaskTrainer,
    TaskBatchSampler,
    load_multitask,
    load_tasks_file,
    multitask_student,
    parse_multitask_args,
    save_multitask,
    task_probabilities,
)
from nlp_reuse.multitask.pipeline import tokenize_tasks
from nlp_reuse.multitask.tasks import load_task_data
from nlp_reuse.report import MultiTaskReport, ReportError

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--latency_samples", "2",
        "--disable_tqdm", "true"]
TEXTS = ["the movie was great", "an awful boring plot", "okay story and acting", "spam ham hello world"]


# ------------------------------------------------------------------------------------------------ the sampler
def _task_frequencies(sizes: list[int], probabilities, epochs: int, batch_size: int = 10) -> np.ndarray:
    """Fraction of the batches drawn from each task over `epochs` epochs; checks each batch holds one task."""
    sampler = TaskBatchSampler(sizes, batch_size, probabilities, seed=3)
    bounds = np.cumsum([0, *sizes])
    counts = np.zeros(len(sizes))
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            tasks = {int(np.searchsorted(bounds, i, side="right")) - 1 for i in batch}
            assert len(tasks) == 1, f"batch mixes tasks {tasks}"
            counts[tasks.pop()] += 1
    assert counts.sum() == epochs * len(sampler) and sampler.drawn == counts.tolist()
    return counts / counts.sum()


@pytest.mark.parametrize("temperature", [1.0, 2.0, 1e6])
def test_sampler_draws_tasks_in_their_proportions(temperature):
    sizes = [1000, 300, 50]
    expected = task_probabilities(sizes, temperature)
    manual = np.array(sizes, dtype=float) ** (1 / temperature)
    np.testing.assert_allclose(expected, manual / manual.sum())
    if temperature == 1e6:
        np.testing.assert_allclose(expected, [1 / 3] * 3, atol=1e-5)  # T -> inf: uniform over tasks
    frequencies = _task_frequencies(sizes, expected, epochs=150)  # ~20k batches: 1 sd of a frequency < 0.004
    np.testing.assert_allclose(frequencies, expected, atol=0.015)


def test_sampler_epochs_are_seeded_and_passes_cover_every_example():
    sizes = [23, 7]
    sampler = TaskBatchSampler(sizes, 4, [0.5, 0.5], seed=1)
    assert len(sampler) == 6 + 2  # ceil(23/4) + ceil(7/4): an epoch is the sum of the per-task batch counts
    first, again = list(sampler), list(sampler)
    assert first == again
    sampler.set_epoch(1)
    assert list(sampler) != first
    # Within an epoch a task's examples come in whole shuffled passes (each example once per pass), however
    # often the task is drawn.
    sampler = TaskBatchSampler(sizes, 4, [0.1, 0.9], seed=1)
    passes = 0
    for epoch in range(10):
        sampler.set_epoch(epoch)
        rows = [i for batch in sampler if batch[0] >= 23 for i in batch]
        full = len(rows) // 7
        assert all(sorted(rows[p * 7:(p + 1) * 7]) == list(range(23, 30)) for p in range(full))
        passes += full
    assert passes > 20  # ~3.6 passes per epoch


# ------------------------------------------------------------------------------------------------ data and files
def _binary(rows: list[dict]) -> list[dict]:
    return [{"text": r["text"], "label": "pos" if r["label"] == "positive" else "other"} for r in rows]


@pytest.fixture(scope="module")
def tasks_yaml(tmp_path_factory) -> Path:
    """Two tasks on local files: 3-class sentiment and a binary 'positive or not' (20% of its examples)."""
    root = tmp_path_factory.mktemp("multitask_data")
    for name, convert, n in (("sentiment", list, 48), ("binary", _binary, 24)):
        for split, size, seed in (("train", n, 1), ("validation", 12, 2), ("test", 12, 3)):
            write_jsonl(root / f"{name}_{split}.jsonl", convert(make_examples(size, seed=seed)))
    spec = {"sampling": "temperature", "sampling_temperature": 2.0, "max_length": 16, "tasks": [
        {"name": name, **{f"{s}_file": str(root / f"{name}_{s}.jsonl") for s in ("train", "validation", "test")}}
        for name in ("sentiment", "binary")]}
    path = root / "tasks.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _write_tasks(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


TWO = [{"name": "a", "dataset_name": "builtin:trec6"}, {"name": "b", "dataset_name": "builtin:sms_spam"}]


@pytest.mark.parametrize("spec, messages", [
    ({"tasks": [{"name": "a", "dataset_nme": "builtin:trec6"}, TWO[1]]},
     ["task 'a' has unknown key(s)", "'dataset_nme' (did you mean dataset_name", "fix:"]),
    ({"tasks": [TWO[0]]}, ["fewer than two tasks", "expected: a `tasks:` list of at least 2 tasks",
                           "found:    1 task(s)"]),
    ({"tasks": [TWO[0], {**TWO[1], "name": "a"}]}, ["names a task twice", "duplicate name(s) ['a']"]),
    ({"sampling": "uniform", "tasks": TWO}, ["unknown sampling rule", "one of proportional, temperature",
                                             "'uniform'"]),
    ({"sampling_temperature": 3, "tasks": TWO}, ["sampling_temperature is set but sampling is proportional"]),
    ({"dataset_name": "builtin:trec6", "tasks": TWO}, ["unknown top-level key", "a data flag: set it under each"]),
    ({"tasks": [{**TWO[0], "max_length": 4}, TWO[1]]}, ["task 'a'", "--max_length must be >= 8, got 4"]),
    ({"tasks": [{**TWO[0], "max_length": "long"}, TWO[1]]}, ["task 'a'", "invalid int value: 'long'"]),
])
def test_tasks_file_errors(tmp_path, spec, messages):
    with pytest.raises(ConfigError) as err:
        load_tasks_file(_write_tasks(tmp_path, spec))
    for message in messages:
        assert message in str(err.value)


def test_tasks_file_shared_keys_and_defaults(tmp_path):
    spec = load_tasks_file(_write_tasks(tmp_path, {"max_length": 32, "tasks": [{**TWO[0], "max_length": 64},
                                                                                {**TWO[1], "text_column": "t"}]}))
    assert (spec.names, spec.sampling, spec.sampling_temperature) == (["a", "b"], "proportional", 1.0)
    assert [t.data.max_length for t in spec.tasks] == [64, 32] and spec.tasks[1].data.text_column == "t"


def test_a_tasks_extra_training_rows_are_recorded_at_load_time(tasks_yaml, tmp_path):
    spec = yaml.safe_load(tasks_yaml.read_text())
    extra = write_jsonl(tmp_path / "extra.jsonl", [{"text": "brand new good words", "label": "positive"}])
    spec["tasks"][0]["extra_train_file"] = str(extra)
    data = load_task_data(load_tasks_file(_write_tasks(tmp_path, spec)))
    assert data["sentiment"].extra_train == {"extra_train_file": str(extra.resolve()), "num_extra_train": 1}
    assert len(data["sentiment"].splits["train"]) == 48 + 1 and data["binary"].extra_train == {}


def test_shipped_multitask_configs_parse(tmp_path):
    spec = load_tasks_file(ROOT / "configs/multitask_tasks.yaml")
    assert spec.names == ["trec6", "sms_spam", "movie_reviews"] and spec.sampling == "temperature"
    tasks_args, args = parse_multitask_args((FinetuneArguments,), "", [
        "--config", str(ROOT / "configs/multitask_teacher.yaml"), "--output_dir", str(tmp_path)])
    assert (tasks_args.tasks, args.model_name_or_path) == ("configs/multitask_tasks.yaml", "builtin:minilm")


@pytest.mark.parametrize("command", [finetune, distill])
def test_help_lists_tasks(command, capsys):
    with pytest.raises(SystemExit):
        command.main(["--help"])
    assert "--tasks TASKS" in capsys.readouterr().out


def test_finetune_tasks_refuses_single_task_data_flags(tmp_path, tasks_yaml):
    with pytest.raises(ConfigError, match=r"(?s)single-task data flags do not apply.*found:    --dataset_name"):
        finetune.main(["--tasks", str(tasks_yaml), "--dataset_name", "builtin:trec6", "--output_dir",
                       str(tmp_path / "o")])
    config = tmp_path / "run.yaml"
    config.write_text(f"tasks: {tasks_yaml}\nmax_length: 32\n")
    with pytest.raises(ConfigError, match=r"max_length \(in --config .*run.yaml\)"):
        finetune.main(["--config", str(config), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(StrategyError, match="expected: --strategy full"):
        finetune.main(["--tasks", str(tasks_yaml), "--strategy", "lora", "--output_dir", str(tmp_path / "o")])
    target = tmp_path / "target.txt"
    target.write_text("one text\nanother text\n")
    with pytest.raises(ConfigError, match="no target domain to align with"):
        finetune.main(["--tasks", str(tasks_yaml), "--target_unlabeled_file", str(target), "--domain_loss", "mmd",
                       "--output_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_distill_tasks_refuses_what_it_does_not_support(tmp_path, tasks_yaml):
    with pytest.raises(ConfigError) as err:
        distill.main(["--tasks", str(tasks_yaml), "--teacher_model_name_or_path", str(tmp_path), "--output_dir",
                      str(tmp_path / "o"), "--student_num_layers", "2", "--run_baseline", "true", "--augment",
                      "masking"])
    assert "found:    --run_baseline true, --augment" in str(err.value)


# ------------------------------------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def base_dir(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    return build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("base"), labels=None)


def _logits(model, tokenizer, task: int | None = None) -> torch.Tensor:
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        if task is None:
            return model.eval()(**batch).logits
        return model.eval()(task_ids=torch.full((len(TEXTS),), task), **batch).logits


def _two_task_model(base_dir: Path) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel({"sentiment": load_for_finetuning(str(base_dir), ["negative", "neutral", "positive"]),
                           "binary": load_for_finetuning(str(base_dir), ["other", "pos"])})


def test_joint_checkpoint_reloads_with_identical_logits(base_dir, tmp_path):
    model = _two_task_model(base_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    save_multitask(model, tmp_path / "joint", tokenizer)
    loaded = load_multitask(tmp_path)  # the run folder or its joint/ folder
    assert loaded.task_names == ["sentiment", "binary"] and loaded.labels("binary") == ["other", "pos"]
    for task in (0, 1):
        assert torch.equal(_logits(loaded, tokenizer, task), _logits(model, tokenizer, task))
    with pytest.raises(OSError):  # the joint folder is no single-task model folder
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "joint")


def test_encoder_is_one_shared_module_while_training(base_dir, tasks_yaml, tmp_path):
    model = _two_task_model(base_dir)
    spec = load_tasks_file(tasks_yaml)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenized = tokenize_tasks(spec, load_task_data(spec), tokenizer, model.task_model(0).config, "base")
    start = model.encoder.embeddings.word_embeddings.weight.detach().clone()
    seen = []

    class Check(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            ids = [id(p) for group in optimizer.param_groups for p in group["params"]]
            seen.append((len(ids) == len(set(ids)), set(ids) == {id(p) for p in model.parameters()},
                         model.task_model(0).base_model is model.task_model(1).base_model is model.encoder))

    args = FinetuneArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=8,
                             learning_rate=1e-2, disable_tqdm=True)
    trainer = MultiTaskTrainer(
        model=model, args=args, callbacks=[Check()], data_collator=DataCollatorWithPadding(tokenizer),
        train_dataset=concatenate_datasets([tokenized[n]["train"] for n in spec.names]),
        task_sizes=[len(tokenized[n]["train"]) for n in spec.names], task_probabilities=[0.5, 0.5])
    trainer.train()
    assert seen == [(True, True, True)] * 4
    assert sum(trainer.task_sampler.drawn) >= 4 and min(trainer.task_sampler.drawn) > 0
    # Both tasks' models see the trained encoder: it is one module, not two copies.
    assert not torch.equal(model.encoder.embeddings.word_embeddings.weight, start)
    shared = model.encoder.embeddings.word_embeddings.weight
    assert all(model.task_model(task).bert.embeddings.word_embeddings.weight is shared for task in (0, 1))


def test_distillation_loss_meets_the_teachers_head_of_the_batchs_task(base_dir, tasks_yaml, tmp_path):
    teacher = _two_task_model(base_dir).eval().requires_grad_(False)
    torch.manual_seed(1)
    for head in teacher.heads:  # heads that disagree with the student's copies, so the soft loss is not ~0
        head.classifier.weight.normal_()
    student = multitask_student(_two_task_model(base_dir), 2).eval()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    spec = load_tasks_file(tasks_yaml)
    tokenized = tokenize_tasks(spec, load_task_data(spec), tokenizer, teacher.task_model(0).config, "base")
    args = DistillationArguments(output_dir=str(tmp_path), alpha=1.0, temperature=2.0, disable_tqdm=True)
    trainer = MultiTaskDistillationTrainer(model=student, teacher_model=teacher, args=args, task_sizes=[1, 1],
                                           task_probabilities=[0.5, 0.5], train_dataset=tokenized["binary"]["train"])
    collate = DataCollatorWithPadding(tokenizer)
    for name in ("sentiment", "binary"):
        batch = collate([tokenized[name]["test"][i] for i in range(4)])
        with torch.no_grad():
            loss = trainer.compute_loss(student, dict(batch))
            features = {k: v for k, v in batch.items() if k not in ("labels", "task_ids")}
            task = spec.names.index(name)
            expected = kd_kl_loss(student.task_model(task)(**features).logits,
                                  teacher.task_model(task)(**features).logits, 2.0).mean()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and expected > 1e-3


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def finetuned(base_dir, tasks_yaml, tmp_path_factory):
    out = tmp_path_factory.mktemp("mt") / "teacher"
    report = finetune.main(["--tasks", str(tasks_yaml), "--model_name_or_path", str(base_dir), "--output_dir",
                            str(out), *FAST])
    return out, report


def test_finetune_tasks_writes_joint_task_folders_and_report(finetuned, base_dir):
    out, report = finetuned
    assert json.loads((out / "report.json").read_text()) == report
    assert MultiTaskReport.from_dict(report).to_dict() == report  # what the run writes fits the schema
    assert report["command"].startswith("nlp-reuse finetune --tasks ")
    sampling = report["sampling"]
    assert sampling["rule"] == "temperature" and sampling["temperature"] == 2.0
    expected = task_probabilities([48, 24], 2.0)
    assert list(sampling["probabilities"].values()) == pytest.approx(expected, abs=1e-6)
    assert sampling["batches_per_epoch"] == {"sentiment": 6, "binary": 3}
    assert sum(sampling["batches_drawn"].values()) == 9  # one epoch: the sum of the per-task batch counts
    for name, labels in (("sentiment", ["negative", "neutral", "positive"]), ("binary", ["other", "pos"])):
        entry = report["tasks"][name]
        assert entry["task"]["labels"] == labels and entry["task"]["num_train"] in (48, 24)
        assert set(entry["model"]["test"]) == set(entry["model"]["validation"]) == {"accuracy", "macro_f1"}
        assert entry["model"]["latency_ms"] > 0 and entry["model"]["path"] == f"tasks/{name}"
    joint = load_multitask(out)
    tokenizer = AutoTokenizer.from_pretrained(out / "joint")
    for task, name in enumerate(joint.task_names):
        alone = AutoModelForSequenceClassification.from_pretrained(out / "tasks" / name)
        assert list(alone.config.id2label.values()) == joint.labels(name)
        AutoTokenizer.from_pretrained(out / "tasks" / name)
        diff = (_logits(alone, tokenizer) - _logits(joint, tokenizer, task)).abs().max()
        assert diff < 1e-5, f"{name}: max abs diff {diff}"
    # The shared encoder is stored once in the joint checkpoint.
    assert report["multitask"]["params"] < 2 * report["multitask"]["encoder_params"]


def test_multitask_student_copies_teacher_layers_and_heads(finetuned):
    teacher = load_multitask(finetuned[0])
    student = multitask_student(teacher, 2)
    assert student.task_model(0).base_model is student.task_model(1).base_model is student.encoder
    assert len(student.encoder.encoder.layer) == 2
    for s, t in zip(student.encoder.encoder.layer, [teacher.encoder.encoder.layer[i] for i in (0, 3)]):
        assert all(torch.equal(a, b) for a, b in zip(s.state_dict().values(), t.state_dict().values()))
    for task in (0, 1):
        assert torch.equal(student.heads[task].classifier.weight, teacher.heads[task].classifier.weight)


@pytest.fixture(scope="module")
def distilled(finetuned, tasks_yaml, tmp_path_factory):
    out = tmp_path_factory.mktemp("mt") / "student"
    report = distill.main(["--tasks", str(tasks_yaml), "--teacher_model_name_or_path", str(finetuned[0]),
                           "--student_num_layers", "2", "--output_dir", str(out), "--temperature", "2", *FAST])
    return out, report


def test_distill_tasks_writes_students_and_retention(finetuned, distilled):
    teacher_report = finetuned[1]
    out, report = distilled
    assert json.loads((out / "report.json").read_text()) == report
    assert MultiTaskReport.from_dict(report).to_dict() == report
    assert report["distillation"]["student_init"] == "teacher_layers:[0, 3]"
    for name in ("sentiment", "binary"):
        entry = report["tasks"][name]
        # The teacher measured here is the fine-tuning run's model, on the same test split.
        assert entry["teacher"]["test"] == teacher_report["tasks"][name]["model"]["test"]
        assert entry["retention"] == pytest.approx(
            entry["student"]["test"]["accuracy"] / entry["teacher"]["test"]["accuracy"], abs=1e-4)
        assert (entry["teacher"]["num_layers"], entry["student"]["num_layers"]) == (4, 2)
        model = AutoModelForSequenceClassification.from_pretrained(out / "tasks" / name)
        assert model.config.num_hidden_layers == 2
        assert list(model.config.id2label.values()) == entry["task"]["labels"]
    assert load_multitask(out).task_names == ["sentiment", "binary"]
    assert report["retention"] == pytest.approx(np.mean([report["tasks"][n]["retention"] for n in report["tasks"]]),
                                                abs=1e-4)


# ------------------------------------------------------------------------------------------------ publishing one task
def test_push_task_ships_that_tasks_folder_and_card(distilled, finetuned, tmp_path, capsys):
    out, report = distilled
    dry = tmp_path / "dry"
    push.main(["--model_dir", str(out), "--task", "binary", "--dry_run", str(dry)])
    assert "Dry run, nothing uploaded" in capsys.readouterr().out
    files = folder_bytes(dry)
    assert set(files) == ROOT_FILES | {"README.md", "report.json", "run_args.json"}  # no joint/, no other task
    task_dir = out / "tasks" / "binary"
    assert files["model.safetensors"] == (task_dir / "model.safetensors").read_bytes()
    shipped, saved = load_file(dry / "model.safetensors"), load_file(task_dir / "model.safetensors")
    assert shipped.keys() == saved.keys() and all(torch.equal(shipped[k], saved[k]) for k in saved)
    entry, other = report["tasks"]["binary"], report["tasks"]["sentiment"]
    model = AutoModelForSequenceClassification.from_pretrained(dry)
    assert list(model.config.id2label.values()) == entry["task"]["labels"]
    assert json.loads(files["report.json"]) == report  # the whole run's numbers, as the run wrote them

    card = files["README.md"].decode()
    assert card == render_model_card(out, task="binary")
    meta, body = split_card(card)
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"accuracy": entry["student"]["test"]["accuracy"], "f1": entry["student"]["test"]["macro_f1"]}
    assert "multi-task" in meta["tags"] and "onnx" not in meta["tags"]
    assert table_rows(body) == {
        f"Multi-task teacher (`{finetuned[0]}`), its `binary` head": expected_cells(entry["teacher"],
                                                                                     entry["teacher"]),
        "**Student (this model)**": expected_cells(entry["student"], entry["teacher"])}
    assert f"{100 * entry['retention']:.1f}% of the teacher's accuracy" in body
    assert "\n".join(f"| {i} | {label} |" for i, label in enumerate(entry["task"]["labels"])) in body
    assert f"({entry['task']['num_test']} examples) it reaches accuracy " in body
    kd = report["distillation"]
    assert f"temperature {kd['temperature']}; alpha {kd['alpha']}" in body and "Hidden-state loss:** off" in body
    assert f"initialised as `{kd['student_init']}`" in body
    lineage = ("**Multi-task:** trained jointly with tasks `sentiment` and `binary` on one shared encoder (sampling: "
               "temperature 2.0, each batch's task drawn with probability ∝ n^(1/2.0), n its training-set size); "
               "this repo holds task `binary`'s head and the shared encoder. The multi-task teacher's own `binary` "
               f"head reaches test accuracy {entry['teacher']['test']['accuracy']:.4f}; the other tasks' heads on "
               f"this student's encoder reach test accuracy `sentiment` {other['student']['test']['accuracy']:.4f}.")
    assert f"\n- {lineage}\n" in body
    assert f"fine-tuned with:\n\n```bash\n{finetuned[1]['command']}\n```" in body
    assert f"distilled from it with:\n\n```bash\n{report['command']}\n```" in body


def test_push_task_from_another_directory_finds_a_relative_teacher_and_its_lineage(finetuned, tasks_yaml, tmp_path,
                                                                                  monkeypatch):
    # The teacher was fine-tuned from an encoder adapted by continued pretraining (`nlp-reuse adapt`): the card's
    # lineage reads that encoder's report through the teacher's.
    adapted = tmp_path / "adapted"
    adapted.mkdir()
    (adapted / "report.json").write_text(json.dumps({
        "model": {"name_or_path": "builtin:minilm"}, "texts": {"sources": [{"name": "tweets.txt", "texts": 40}]},
        "masked_lm_loss": {"heldout": {"before": 9.81, "after": 3.2}}}))
    teacher = Path(shutil.copytree(finetuned[0], tmp_path / "work" / "mt" / "teacher"))
    teacher_report = json.loads((teacher / "report.json").read_text())
    teacher_report["finetuning"]["model_name_or_path"] = str(adapted)
    (teacher / "report.json").write_text(json.dumps(teacher_report))
    out = tmp_path / "student"
    monkeypatch.chdir(tmp_path / "work")  # the teacher as typed, relative to where distill runs
    report = distill.main(["--tasks", str(tasks_yaml), "--teacher_model_name_or_path", "mt/teacher",
                           "--student_num_layers", "2", "--output_dir", str(out), *FAST])
    for entry in report["tasks"].values():
        assert (entry["teacher"]["name_or_path"], entry["teacher"]["local_path"]) == ("mt/teacher",
                                                                                      str(teacher.resolve()))

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # here `mt/teacher` names no folder, and reads as a Hub repo id
    push.main(["--model_dir", str(out), "--task", "binary", "--dry_run", str(tmp_path / "dry")])
    meta, body = split_card((tmp_path / "dry" / "README.md").read_text())
    assert "base_model" not in meta  # the teacher derives from a local folder: no Hub repo to name
    assert "mt/teacher" not in yaml.safe_dump(meta)
    assert (f"\n- **Continued pretraining:** the teacher's encoder `{adapted}` is `builtin:minilm` after masked-LM "
            "training on unlabeled target-domain texts: tweets.txt (40 texts); held-out masked-token loss 9.810 → "
            "3.200.\n") in body
    assert f"fine-tuned with:\n\n```bash\n{teacher_report['command']}\n```" in body


def test_push_task_leaves_the_run_level_onnx_and_export_record_home(distilled, tmp_path, caplog):
    out = Path(shutil.copytree(distilled[0], tmp_path / "run"))
    (out / "onnx").mkdir()
    (out / "onnx" / "model.onnx").write_bytes(b"some other model's graph")
    (out / "export_report.json").write_text(json.dumps({"deliverable": "onnx_int8"}))
    dry = tmp_path / "dry"
    with caplog.at_level(logging.WARNING, logger="nlp_reuse.hub.upload"):
        push.main(["--model_dir", str(out), "--task", "binary", "--dry_run", str(dry)])
    assert set(folder_bytes(dry)) == ROOT_FILES | {"README.md", "report.json", "run_args.json"}
    assert "onnx" not in split_card((dry / "README.md").read_text())[0]["tags"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"Not uploaded with --task binary: onnx/, export_report.json of {out}. ")
               for m in warnings), warnings


def test_push_task_finds_the_tasks_folder_when_the_report_names_no_path(distilled, tmp_path, capsys):
    out = Path(shutil.copytree(distilled[0], tmp_path / "run"))
    report = json.loads((out / "report.json").read_text())
    del report["tasks"]["binary"]["student"]["path"]
    (out / "report.json").write_text(json.dumps(report))
    dry = tmp_path / "dry"
    push.main(["--model_dir", str(out), "--task", "binary", "--dry_run", str(dry)])
    assert (dry / "model.safetensors").read_bytes() == (out / "tasks" / "binary" / "model.safetensors").read_bytes()
    shutil.rmtree(out / "tasks" / "binary")
    assert commands.main(["push", "--model_dir", str(out), "--task", "binary", "--dry_run",
                          str(tmp_path / "dry2")]) == 2
    assert f"expected: {out / 'tasks' / 'binary'} (report.json tasks.binary.student.path)" in capsys.readouterr().err


def test_push_task_to_the_hub_standin(distilled, hub, tmp_path):
    out, report = distilled
    assert push_to_hub(out, REPO, task="sentiment") == f"{hub.endpoint}/{REPO}"
    dry = push_to_hub(out, REPO, task="sentiment", dry_run=tmp_path / "dry")
    remote = hub.files(REPO)
    assert remote.pop(".gitattributes")
    assert remote == folder_bytes(Path(dry))
    assert remote["model.safetensors"] == (out / "tasks" / "sentiment" / "model.safetensors").read_bytes()
    summary = hub.commits(REPO)[-1].summary
    assert summary == default_commit_message(load_run_report(out, "sentiment"), "sentiment")
    accuracy = report["tasks"]["sentiment"]["student"]["test"]["accuracy"]
    assert summary.startswith(f"Upload 2-layer task sentiment of a multi-task distilled student (test accuracy "
                              f"{accuracy:.4f}, ")


def test_push_task_errors_say_expected_found_fix_before_writing(distilled, finetuned, trec6_run, tmp_path, capsys):
    out, report = distilled
    dry = tmp_path / "dry"

    def refused(model_dir, *flags) -> str:
        assert commands.main(["push", "--model_dir", str(model_dir), *flags, "--dry_run", str(dry)]) == 2
        assert not dry.exists()
        err = capsys.readouterr().err
        assert err.startswith("nlp-reuse push: error: ") and "\n  expected: " in err and "\n  fix:      " in err
        return err

    err = refused(out)
    assert f"{out} is a multi-task run (2 tasks, one shared encoder)" in err
    assert "expected: --task NAME, one of ['sentiment', 'binary']" in err and "found:    no --task" in err
    assert "fix:      add --task NAME (e.g. --task sentiment)" in err
    err = refused(out, "--task", "binar")
    assert f"{out} has no task 'binar'" in err and "found:    --task binar (did you mean binary?)" in err
    err = refused(trec6_run, "--task", "binary")
    assert "--task binary picks one task of a multi-task run" in err and "is a single-task run" in err
    assert "fix:      drop --task" in err

    broken = Path(shutil.copytree(out, tmp_path / "broken"))
    shutil.rmtree(broken / "tasks" / "binary")
    err = refused(broken, "--task", "binary")
    assert f"Task 'binary' of {broken} has no model folder" in err
    assert f"found:    {broken / 'tasks'} holds sentiment" in err
    push.main(["--model_dir", str(broken), "--task", "sentiment", "--dry_run", str(tmp_path / "sentiment")])
    assert (tmp_path / "sentiment" / "model.safetensors").is_file()  # the other task still ships

    report_path = broken / "report.json"
    damaged = json.loads(report_path.read_text())
    del damaged["tasks"]["sentiment"]["student"]["test"]["accuracy"]
    report_path.write_text(json.dumps(damaged))
    err = refused(broken, "--task", "binary")
    assert "'tasks.sentiment.student.test' lacks ['accuracy']" in err


def test_push_refuses_multitask_finetune_runs_as_it_refuses_single_task_ones(finetuned, tmp_path, capsys):
    teacher_dir, teacher_report = finetuned
    # A single-task fine-tuning run is refused as a report that is no distill run's: multi-task ones the same way.
    single = tmp_path / "single"
    single.mkdir()
    entry = teacher_report["tasks"]["sentiment"]
    (single / "report.json").write_text(json.dumps({"task": entry["task"], "model": entry["model"],
                                                    "finetuning": teacher_report["finetuning"],
                                                    "command": "nlp-reuse finetune ..."}))
    with pytest.raises(ReportError, match=r"lacks \['teacher', 'student', 'retention', 'distillation'\]"):
        push.main(["--model_dir", str(single), "--dry_run", str(tmp_path / "dry")])
    for flags in ([], ["--task", "binary"]):
        with pytest.raises(ReportError) as err:
            push.main(["--model_dir", str(teacher_dir), *flags, "--dry_run", str(tmp_path / "dry")])
        message = str(err.value)
        assert "is a multi-task fine-tuning run (`nlp-reuse finetune --tasks`)" in message
        assert "expected: the report of `nlp-reuse distill --tasks`" in message
        assert f"fix:      distill it first (nlp-reuse distill --tasks TASKS.yaml --teacher_model_name_or_path " \
               f"{teacher_dir} " in message
    assert not (tmp_path / "dry").exists()


def test_push_help_lists_task(capsys):
    with pytest.raises(SystemExit):
        push.main(["--help"])
    out = capsys.readouterr().out
    assert "--task TASK" in out and "multi-task run" in out
