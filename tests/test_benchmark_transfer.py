"""The transfer benchmark's harness (benchmarks/transfer.py): held-out target halves, statistics, evaluation cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's benchmarks/ folder
from benchmarks import transfer  # noqa: E402


def test_target_halves_are_disjoint_stratified_and_whole(tmp_path):
    files = transfer.split_targets(tmp_path)
    unlabeled_all = files["all"]["unlabeled"].read_text().splitlines()
    total = 0
    for domain in transfer.TARGETS:
        test = pd.read_json(files[domain]["test"], lines=True)
        train = pd.read_json(files[domain]["train"], lines=True)
        whole = transfer.BUILTIN_DATASETS[f"builtin:sentiment_{domain}"]()
        # Every text in exactly one half; no test text among the texts adaptation and alignment read.
        assert len(test) + len(train) == len(whole)
        assert not set(test["text"]) & set(train["text"])
        assert not set(test["text"]) & set(unlabeled_all)
        assert files[domain]["unlabeled"].read_text().splitlines() == [t.replace("\n", " ") for t in train["text"]]
        # Stratified: each label's count halves (floor to the test side).
        for label, count in whole["label"].value_counts().items():
            assert (test["label"] == label).sum() == count // 2
        total += len(train)
    assert len(unlabeled_all) == total
    # Seeded: a second call writes the same halves.
    again = transfer.split_targets(tmp_path / "again")
    assert again["nyt"]["test"].read_text() == files["nyt"]["test"].read_text()


def test_mean_std_and_paired_delta_by_hand():
    assert transfer.mean_std([0.80, 0.82, 0.84]) == "82.00 ± 2.00"
    assert transfer.mean_std([0.5]) == "50.00 ± 0.00"
    # Paired by seed: differences +1, +3, +5 points -> mean +3, sd 2.
    assert transfer.delta([0.81, 0.85, 0.89], [0.80, 0.82, 0.84]) == "+3.00 ± 2.00"


def test_target_accuracy_is_evaluated_once_per_model_domain_and_file(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(transfer, "accuracy_on", lambda model, test, length: calls.append(test.name) or 0.75)
    test_file = tmp_path / "nyt_test.jsonl"
    test_file.write_text('{"text": "a", "label": "positive"}\n')
    model = tmp_path / "run"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    assert transfer.target_accuracy(model, "nyt", test_file, 64) == 0.75
    assert transfer.target_accuracy(model, "nyt", test_file, 64) == 0.75
    assert calls == ["nyt_test.jsonl"]
    test_file.write_text('{"text": "a b", "label": "negative"}\n')  # another test file: evaluated again
    transfer.target_accuracy(model, "nyt", test_file, 64)
    transfer.target_accuracy(model, "nyt", test_file, 32)
    assert len(calls) == 3
    (model / "model.safetensors").write_bytes(b"retrained")  # a new run in the same folder: evaluated again
    transfer.target_accuracy(model, "nyt", test_file, 32)
    assert len(calls) == 4


@pytest.mark.parametrize("values, expected", [([0.9, 0.9], "90.00 ± 0.00"), ([0.1, 0.3], "20.00 ± 14.14")])
def test_mean_std_two_seeds(values, expected):
    assert transfer.mean_std(values) == expected


@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    """cross_domain with every training, pseudo-labelling and evaluation replaced by a record of what was asked."""
    calls = []

    def run_command(command, flags, output_dir, log=None, inputs=()):
        calls.append((command, list(flags), output_dir))
        return {"model": {"validation": {"accuracy": 0.8}, "test": {"accuracy": 0.8}}}

    def run_pseudo_label(args):
        calls.append(("pseudo-label", args.model_name_or_path, args.unlabeled_file, args.output_file, args.fraction,
                      args.balance))
        path = Path(args.output_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'{{"text": "{path.stem}", "label": "positive"}}\n')
        path.with_name(path.name + ".report.json").write_text(json.dumps({  # what run_pseudo_label records
            "model_name_or_path": str(Path(args.model_name_or_path).resolve()),
            "unlabeled_file": str(Path(args.unlabeled_file).resolve()), "fraction": args.fraction,
            "balance": args.balance, "per_label": []}))

    monkeypatch.setattr(transfer, "run_command", run_command)
    monkeypatch.setattr(transfer, "run_pseudo_label", run_pseudo_label)
    monkeypatch.setattr(transfer, "target_accuracy", lambda folder, domain, test, length: 0.7)
    return calls


def flag(flags, name):
    return flags[flags.index(name) + 1] if name in flags else None


def test_per_domain_methods_align_each_target_alone(tmp_path, fake_runs):
    transfer.cross_domain(tmp_path, [1], transfer.Budget(), ["source", "coral@10000:per_domain"], 1.0, 3.0, 1e-4)
    aligned = [(flags, out) for command, flags, out in fake_runs if flag(flags, "--domain_loss") == "coral"]
    assert [out.relative_to(tmp_path).as_posix() for _, out in aligned] == [
        f"coral_w10000_per_domain/{domain}/seed1" for domain in transfer.TARGETS]
    assert [Path(flag(flags, "--target_unlabeled_file")).name for flags, _ in aligned] == [
        f"{domain}_unlabeled.txt" for domain in transfer.TARGETS]
    assert all(flag(flags, "--domain_loss_weight") == "10000.0" for flags, _ in aligned)
    with pytest.raises(ValueError, match="expected METHOD or METHOD:per_domain, found the suffix 'each'"):
        transfer.cross_domain(tmp_path, [1], transfer.Budget(), ["source", "coral:each"], 1.0, 3.0, 1e-4)


def test_self_training_labels_the_unlabeled_halves_with_the_chosen_model(tmp_path, fake_runs):
    transfer.cross_domain(tmp_path, [2], transfer.Budget(), ["source", "coral@10000", "self_train+coral@10000"],
                          1.0, 3.0, 1e-4, pseudo_label_fraction=0.4, pseudo_label_from="coral@10000")
    labelled = [call for call in fake_runs if call[0] == "pseudo-label"]
    assert [Path(c[2]).name for c in labelled] == [f"{d}_unlabeled.txt" for d in transfer.TARGETS]
    assert {c[1] for c in labelled} == {str(tmp_path / "coral_w10000" / "seed2")} and {c[4] for c in labelled} == {0.4}
    command, flags, out = fake_runs[-1]
    assert out == tmp_path / "self_train_coral_w10000_from_coral_w10000_f0.4" / "seed2"
    assert flag(flags, "--domain_loss") == "coral" and flag(flags, "--seed") == "2"
    combined = Path(flag(flags, "--extra_train_file"))
    assert combined.read_text().splitlines() == [f'{{"text": "{d}", "label": "positive"}}' for d in transfer.TARGETS]
    fake_runs.clear()
    for methods in (["source", "self_train"], ["source", "self_train", "mmd"]):  # absent, or listed after
        with pytest.raises(ValueError, match="--pseudo_label_from mmd: expected a method"):
            transfer.cross_domain(tmp_path / "b", [1], transfer.Budget(), methods, 1.0, 3.0, 1e-4,
                                  pseudo_label_from="mmd")
    with pytest.raises(ValueError, match="--balance is unknown"):
        transfer.cross_domain(tmp_path / "b", [1], transfer.Budget(), ["source", "self_train"], 1.0, 3.0, 1e-4,
                              pseudo_label_balance="uniform")
    assert fake_runs == []  # refused before any run


def test_self_training_with_equal_balance_has_its_own_folders(tmp_path, fake_runs):
    transfer.cross_domain(tmp_path, [1], transfer.Budget(), ["source", "self_train"], 1.0, 3.0, 1e-4,
                          pseudo_label_balance="equal")
    labelled = [call for call in fake_runs if call[0] == "pseudo-label"]
    assert {Path(c[3]).parent.relative_to(tmp_path).as_posix() for c in labelled} == {
        "pseudo_labels/fraction0.5_equal/seed1"}
    assert {c[5] for c in labelled} == {"equal"}
    assert fake_runs[-1][2] == tmp_path / "self_train_f0.5_equal" / "seed1"


def test_self_training_per_domain_reads_its_own_domains_labels(tmp_path, fake_runs):
    transfer.cross_domain(tmp_path, [1], transfer.Budget(), ["source", "self_train:per_domain"], 1.0, 3.0, 1e-4)
    runs = [(c[1], c[2]) for c in fake_runs if c[0] == "finetune" and "--extra_train_file" in c[1]]
    assert [Path(flag(flags, "--extra_train_file")).name for flags, _ in runs] == [
        f"{d}.jsonl" for d in transfer.TARGETS]
    labeller = {call[1] for call in fake_runs if call[0] == "pseudo-label"}
    assert labeller == {str(tmp_path / "source" / "seed1")}


def test_pseudo_labels_are_reused_only_while_the_labeller_and_selection_are_unchanged(tmp_path, fake_runs):
    methods = ["source", "coral@10000", "self_train+coral@10000"]

    def run():
        transfer.cross_domain(tmp_path, [1], transfer.Budget(), methods, 1.0, 3.0, 1e-4,
                              pseudo_label_from="coral@10000")

    def labelled():
        return [call for call in fake_runs if call[0] == "pseudo-label"]

    run()
    assert len(labelled()) == 3
    fake_runs.clear()
    run()  # same labeller, texts and selection: the three files are reused
    assert labelled() == []
    trained = tmp_path / "coral_w10000" / "seed1" / "report.json"  # the labeller was trained again since
    trained.parent.mkdir(parents=True, exist_ok=True)
    trained.write_text("{}")
    for record in tmp_path.glob("pseudo_labels/**/*.report.json"):
        os.utime(record, (record.stat().st_mtime - 100,) * 2)
    run()
    assert len(labelled()) == 3
    fake_runs.clear()
    record = tmp_path / "pseudo_labels" / "coral_w10000_fraction0.5" / "seed1" / "nyt.jsonl.report.json"
    record.write_text(record.read_text().replace('"fraction": 0.5', '"fraction": 0.3'))  # made with another setting
    run()
    assert [Path(call[3]).name for call in labelled()] == ["nyt.jsonl"]


def test_a_run_is_redone_when_a_file_it_was_given_changed_since(tmp_path, monkeypatch):
    runs = []

    def fake_run(argv, stdout, stderr, env):  # the subprocess: writes the report it would write
        out = Path(argv[argv.index("--output_dir") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps({"run": len(runs)}))
        runs.append(argv)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(transfer.subprocess, "run", fake_run)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("{}\n")
    out = tmp_path / "run"
    assert transfer.run_command("finetune", [], out, inputs=[labels]) == {"run": 0}
    assert transfer.run_command("finetune", [], out, inputs=[labels]) == {"run": 0}  # reused
    os.utime(out / "report.json", (labels.stat().st_mtime - 100,) * 2)  # the labels were made again after the run
    assert transfer.run_command("finetune", [], out, inputs=[labels]) == {"run": 1}
    assert len(runs) == 2


def test_combined_pseudo_labels_are_rewritten_only_when_they_change(tmp_path, fake_runs):
    methods = ["source", "self_train"]
    transfer.cross_domain(tmp_path, [1], transfer.Budget(), methods, 1.0, 3.0, 1e-4)
    both = tmp_path / "pseudo_labels" / "fraction0.5" / "seed1" / "all.jsonl"
    os.utime(both, (both.stat().st_mtime - 100,) * 2)
    before = both.stat().st_mtime
    transfer.cross_domain(tmp_path, [1], transfer.Budget(), methods, 1.0, 3.0, 1e-4)
    assert both.stat().st_mtime == before
    (both.parent / "nyt.jsonl").write_text('{"text": "other", "label": "negative"}\n')
    transfer.cross_domain(tmp_path, [1], transfer.Budget(), methods, 1.0, 3.0, 1e-4)
    assert both.read_text().endswith('{"text": "other", "label": "negative"}\n') and both.stat().st_mtime > before


def test_multi_teacher_strategies_trains_three_recipes_and_picks_the_best_on_validation(tmp_path, monkeypatch):
    calls = []
    validation = {"seed1": 0.90, "llrd0.8_seed2": 0.93, "lora16_seed3": 0.91}

    def run_command(command, flags, output_dir, log=None, inputs=()):
        calls.append((command, list(flags), output_dir))
        if command == "finetune":
            return {"model": {"validation": {"accuracy": validation[output_dir.name]}, "test": {"accuracy": 0.9}}}
        return {"student": {"test": {"accuracy": 0.88}}, "teacher": {"test": {"accuracy": 0.92}}}

    monkeypatch.setattr(transfer, "run_command", run_command)
    text, results = transfer.multi_teacher(tmp_path, [1], transfer.Budget(), "trec6", 3, 2.0, 0.5, 3.0,
                                           teacher_set="strategies")
    teachers = [(flags, out) for command, flags, out in calls if command == "finetune"]
    assert [out.relative_to(tmp_path).as_posix() for _, out in teachers] == [
        "single/trec6/seed1", "single/trec6/llrd0.8_seed2", "single/trec6/lora16_seed3"]
    assert flag(teachers[1][0], "--layerwise_lr_decay") == "0.8"
    lora = teachers[2][0]
    rates = [lora[i + 1] for i, name in enumerate(lora) if name == "--learning_rate"]
    assert flag(lora, "--strategy") == "lora" and rates[-1] == "1e-3"  # the last one given wins
    students = [(flags, out) for command, flags, out in calls if command == "distill"]
    assert [out.parent.name for _, out in students] == ["best_single_teacher_strategies", "ensemble_of_3_strategies"]
    best = str(tmp_path / "single" / "trec6" / "llrd0.8_seed2")
    assert flag(students[0][0], "--teacher_model_name_or_path") == best and results["best_teacher"] == best
    assert "teacher llrd0.8 seed 2 (best on validation)" in text and "teacher lora16 seed 3" in text
    calls.clear()
    validation.update({"seed2": 0.92, "seed3": 0.91})
    text, _ = transfer.multi_teacher(tmp_path, [1], transfer.Budget(), "trec6", 3, 2.0, 0.5, 3.0)
    assert "| teacher seed 2 (best on validation) |" in text and "| teacher seed 1 |" in text
    with pytest.raises(ValueError, match="--teachers 'models': expected one of seeds, strategies"):
        transfer.multi_teacher(tmp_path, [1], transfer.Budget(), "trec6", 3, 2.0, 0.5, 3.0, teacher_set="models")


def test_a_self_training_run_depends_on_its_domains_label_files(tmp_path, fake_runs, monkeypatch):
    given = {}
    record = transfer.run_command  # the fixture's fake

    def run_command(command, flags, output_dir, log=None, inputs=()):
        given[output_dir.relative_to(tmp_path).as_posix()] = [Path(p).name for p in inputs]
        return record(command, flags, output_dir, log)

    monkeypatch.setattr(transfer, "run_command", run_command)
    transfer.cross_domain(tmp_path, [1], transfer.Budget(), ["source", "self_train", "self_train:per_domain"],
                          1.0, 3.0, 1e-4)
    assert given["source/seed1"] == []
    assert given["self_train_f0.5/seed1"] == [f"{d}.jsonl" for d in transfer.TARGETS]  # not all.jsonl, their join
    assert given["self_train_f0.5_per_domain/nyt/seed1"] == ["nyt.jsonl"]
