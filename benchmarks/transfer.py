"""Transfer across domains, tasks and teachers, measured over seeds: the harness of scripts/benchmark_transfer.py.

Every training is one `nlp-reuse` command in its own process, one after the other (two at once on a 2-core machine
run many times slower); a run whose report.json exists is reused, so an interrupted benchmark resumes. The tables
give the mean and the sample standard deviation over seeds of test accuracy (%), and each method's difference to its
reference measured on the same seeds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nlp_reuse.data import BUILTIN_DATASETS
from nlp_reuse.pseudo_label import PseudoLabelArguments, pseudo_label_record, report_path, run_pseudo_label
from nlp_reuse.tables import render_table

TARGETS = ("tweets", "amazon", "nyt")
TASKS = ("trec6", "sms_spam", "movie_reviews")
PER_DOMAIN = "per_domain"
BASES = ("source", "dapt", "self_train")  # what a method starts from; +LOSS adds alignment


@dataclass
class Budget:
    """The training budget every fine-tuning of one experiment shares."""

    max_train_samples: int = 2000
    num_train_epochs: float = 3.0
    learning_rate: float = 1e-4
    batch_size: int = 32
    max_length: int = 64

    def training_flags(self) -> list[str]:
        return ["--num_train_epochs", str(self.num_train_epochs), "--learning_rate", str(self.learning_rate),
                "--per_device_train_batch_size", str(self.batch_size), "--warmup_ratio", "0.06", "--weight_decay",
                "0.01", "--latency_samples", "16", "--disable_tqdm", "true"]

    def flags(self) -> list[str]:
        """Single-task fine-tuning: data flags, training flags, batches of similar lengths."""
        return ["--max_train_samples", str(self.max_train_samples), "--max_length", str(self.max_length),
                *self.training_flags(), "--train_sampling_strategy", "group_by_length"]


def run_command(command: str, flags: Sequence[str], output_dir: Path, log: Path | None = None,
                inputs: Sequence[Path] = ()) -> dict:
    """`nlp-reuse COMMAND FLAGS --output_dir OUTPUT_DIR` in a fresh process, unless its report.json exists and is
    newer than every file of `inputs` (files the harness itself makes, such as pseudo-labels); the report. A failed
    run stops the benchmark with the tail of its log. Reuse goes by modification times: copy a runs folder with
    them (`cp -p`, rsync -a)."""
    report = output_dir / "report.json"
    if report.is_file() and all(path.stat().st_mtime <= report.stat().st_mtime for path in inputs):
        return json.loads(report.read_text())
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    log = log or output_dir.with_name(output_dir.name + ".log")
    argv = [sys.executable, "-m", "nlp_reuse.commands", command, *flags, "--output_dir", str(output_dir),
            "--overwrite_output_dir", "true"]
    start = time.perf_counter()
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(argv[3:])}", flush=True)
    with log.open("w") as handle:
        done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[3:])} failed ({done.returncode}); log {log}:\n"
                           + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
    print(f"    done in {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(report.read_text())


def labels_current(path: Path, labeller: Path, unlabeled: Path, fraction: float, balance: str) -> bool:
    """Whether the pseudo-labels at `path` can be reused: written by this labeller (after its last training, whose
    report.json is written last) from these texts with this selection; otherwise they are made again."""
    record = pseudo_label_record(path)
    if record is None or not path.is_file():
        return False
    made = (record["model_name_or_path"], record["unlabeled_file"], record["fraction"], record["balance"])
    if made != (str(labeller.resolve()), str(Path(unlabeled).resolve()), fraction, balance):
        return False
    trained = labeller / "report.json"
    return not trained.is_file() or trained.stat().st_mtime <= report_path(path).stat().st_mtime


def mean_std(values: Sequence[float]) -> str:
    """`mean ± sd` in percent points (sd over seeds; 0 for one seed)."""
    values = [100 * v for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def delta(values: Sequence[float], reference: Sequence[float]) -> str:
    """Mean paired difference in points (same seeds, signed) and its sd."""
    diffs = [100 * (v - r) for v, r in zip(values, reference)]
    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return f"{statistics.mean(diffs):+.2f} ± {sd:.2f}"


def table(rows: list[dict]) -> str:
    header = list(rows[0])
    return render_table(header, [[str(row[k]) for k in header] for row in rows], markdown=True)


# ------------------------------------------------------------------------------------------------ cross-domain


def split_targets(out: Path, seed: int = 42) -> dict[str, dict[str, Path]]:
    """Each target domain cut in two halves (seeded, stratified): texts without labels for adaptation, and a
    labelled test half never seen by any run. The unlabeled halves of all targets also go into one file."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    files, unlabeled = {}, []
    for domain in TARGETS:
        df = BUILTIN_DATASETS[f"builtin:sentiment_{domain}"]()
        rng = np.random.default_rng(seed)
        test_rows = []
        for _, group in df.groupby("label"):
            order = rng.permutation(len(group))
            test_rows.extend(group.index[order[: len(group) // 2]])
        test = df.loc[sorted(test_rows)]
        rest = df.drop(index=test.index)
        test_file, text_file = data / f"{domain}_test.jsonl", data / f"{domain}_unlabeled.txt"
        train_file = data / f"{domain}_train.jsonl"  # the unlabeled half with its labels: the in-domain ceiling only
        test.to_json(test_file, orient="records", lines=True)
        rest.to_json(train_file, orient="records", lines=True)
        text_file.write_text("".join(t.replace("\n", " ") + "\n" for t in rest["text"]))
        unlabeled.extend(rest["text"])
        files[domain] = {"test": test_file, "unlabeled": text_file, "train": train_file}
    all_file = data / "targets_unlabeled.txt"
    all_file.write_text("".join(t.replace("\n", " ") + "\n" for t in unlabeled))
    files["all"] = {"unlabeled": all_file}
    return files


def accuracy_on(model_dir: Path, test_file: Path, max_length: int) -> float:
    """Accuracy of the classifier in `model_dir` on a labelled jsonl file (labels by name)."""
    from transformers import AutoModelForSequenceClassification

    from nlp_reuse.modeling import load_tokenizer
    from nlp_reuse.predict import predict_logits

    df = pd.read_json(test_file, lines=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    logits = predict_logits(model, list(df["text"]), tokenizer=load_tokenizer(model_dir), batch_size=64,
                            max_length=max_length)
    gold = df["label"].map(model.config.label2id).to_numpy()
    return float((logits.argmax(-1) == gold).mean())


def target_accuracy(model_dir: Path, domain: str, test_file: Path, max_length: int) -> float:
    """`accuracy_on`, remembered in the run folder (target_accuracy.json) so a resumed benchmark does not evaluate
    finished runs again (~70 s per model on 2 cores). The key names the domain, the test file, the length and the
    weights (size and modification time): a run trained again into the same folder is evaluated again."""
    cache = model_dir / "target_accuracy.json"
    weights = (model_dir / "model.safetensors").stat()
    key = (f"{domain}|{test_file.name}|{test_file.stat().st_size}|{max_length}|"
           f"{weights.st_size}|{weights.st_mtime_ns}")
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if key not in known:
        known[key] = accuracy_on(model_dir, test_file, max_length)
        cache.write_text(json.dumps(known, indent=2) + "\n")
    return known[key]


def in_domain(out: Path, files: dict, seeds: Sequence[int], budget: Budget) -> dict[str, list[float]]:
    """The ceiling, not a method: MiniLM fine-tuned on each target's other half *with* its labels (which every
    method above only reads as unlabeled texts), tested on the same held-out half."""
    scores: dict[str, list[float]] = {d: [] for d in TARGETS}
    for domain in TARGETS:
        for seed in seeds:
            report = run_command("finetune", ["--model_name_or_path", "builtin:minilm", "--train_file",
                                              str(files[domain]["train"]), "--test_file", str(files[domain]["test"]),
                                              *budget.flags(), "--seed", str(seed)],
                                 out / "in_domain" / domain / f"seed{seed}")
            scores[domain].append(report["model"]["test"]["accuracy"])
    return scores


def cross_domain(out: Path, seeds: Sequence[int], budget: Budget, methods: Sequence[str], domain_loss_weight: float,
                 adapt_epochs: float, adapt_learning_rate: float, ceiling: bool = False,
                 head_warmup_steps: int = 0, pseudo_label_fraction: float = 0.5,
                 pseudo_label_from: str = "source", pseudo_label_balance: str = "proportional") -> tuple[str, dict]:
    """Fine-tune on movie snippets; test on the held-out halves of tweets, Amazon and NYT. `methods`: source
    (source only), dapt (continued MLM pretraining on the targets' unlabeled halves first), coral | mmd |
    adversarial (alignment with the unlabeled halves while fine-tuning), dapt+LOSS (both), self_train (one round:
    the source model of the seed labels the unlabeled halves, each predicted class keeps its most confident
    `pseudo_label_fraction`, and MiniLM is fine-tuned on the source data plus those texts; `pseudo_label_from`: the
    method, earlier in `methods`, whose model of the seed labels them; `pseudo_label_balance`: pseudo-label
    --balance), self_train+LOSS
    (that, aligned too); METHOD:per_domain trains
    one model per target, adapted and aligned to that target's half alone (its source columns: the mean of the
    three runs of a seed), instead of one model for the three halves together. `ceiling`: also the
    in-domain row (`in_domain`), how much room each target leaves. `head_warmup_steps`: MiniLM's new MLM head trains
    alone that many steps before continued pretraining (its runs go to folders suffixed `_head{N}`)."""
    # Bad self-training settings fail here, not after hours of training.
    PseudoLabelArguments("check", "check", "check.jsonl", fraction=pseudo_label_fraction,
                         balance=pseudo_label_balance, overwrite_output_file=True)
    labeller_at = methods.index(pseudo_label_from) if pseudo_label_from in methods else None
    for at, method in enumerate(methods):
        late = labeller_at is None or labeller_at > at
        if method.startswith("self_train") and pseudo_label_from != "source" and late:
            raise ValueError(f"--pseudo_label_from {pseudo_label_from}: expected a method (one model for the three "
                             f"targets) listed before the self_train methods in --methods; found {list(methods)}.")
    files = split_targets(out)
    suffix = f"_head{head_warmup_steps}" if head_warmup_steps else ""
    adapted: dict[str, Path] = {}

    def adapt_on(scope: str) -> Path:  # scope: "all" (one adaptation for the three targets) or one domain
        if scope not in adapted:
            adapted[scope] = out / ("adapted" + ("" if scope == "all" else f"_{scope}") + suffix)
            run_command("adapt", ["--model_name_or_path", "builtin:minilm", "--unlabeled_file",
                                  str(files[scope]["unlabeled"]), "--head_warmup_steps", str(head_warmup_steps),
                                  "--num_train_epochs", str(adapt_epochs), "--learning_rate", str(adapt_learning_rate),
                                  "--max_length", str(budget.max_length), "--per_device_train_batch_size", "32",
                                  "--seed", "1", "--disable_tqdm", "true"], adapted[scope])
        return adapted[scope]

    def source_run(seed: int) -> Path:  # the source-only model of a seed: the reference row, the labeller
        folder = out / "source" / f"seed{seed}"
        run_command("finetune", ["--model_name_or_path", "builtin:minilm", "--dataset_name",
                                 "builtin:sentiment_movies", *budget.flags(), "--seed", str(seed)], folder)
        return folder

    folders: dict[tuple[str, int], Path] = {}  # (method, seed) -> its one model for the three targets

    def pseudo_labels(seed: int, scope: str) -> Path:  # the labeller's confident labels of the unlabeled halves
        if pseudo_label_from == "source":
            labeller, name = source_run(seed), f"fraction{pseudo_label_fraction:g}"
        elif (pseudo_label_from, seed) in folders:
            labeller = folders[(pseudo_label_from, seed)]
            name = f"{labeller.parent.name}_fraction{pseudo_label_fraction:g}"
        else:
            raise ValueError(f"--pseudo_label_from {pseudo_label_from}: expected a method (one model for the three "
                             f"targets) listed before the self_train methods in --methods; found {list(methods)}.")
        name += "" if pseudo_label_balance == "proportional" else f"_{pseudo_label_balance}"
        folder = out / "pseudo_labels" / name / f"seed{seed}"
        for domain in TARGETS:
            path = folder / f"{domain}.jsonl"
            if not labels_current(path, labeller, files[domain]["unlabeled"], pseudo_label_fraction,
                                  pseudo_label_balance):
                run_pseudo_label(PseudoLabelArguments(
                    model_name_or_path=str(labeller), unlabeled_file=str(files[domain]["unlabeled"]),
                    output_file=str(path), fraction=pseudo_label_fraction, balance=pseudo_label_balance,
                    max_length=budget.max_length,
                    overwrite_output_file=True))
        if scope != "all":
            return folder / f"{scope}.jsonl"
        both = folder / "all.jsonl"  # the three domains' kept texts in one file: one model for all targets
        text = "".join((folder / f"{domain}.jsonl").read_text() for domain in TARGETS)
        if not both.is_file() or both.read_text() != text:  # rewritten only when changed: runs on it stay current
            both.write_text(text)
        return both

    results: dict[str, dict[str, list[float]]] = {}
    for method in methods:
        name, _, scope = method.partition(":")
        if scope not in ("", PER_DOMAIN):
            raise ValueError(f"Method {method!r}: expected METHOD or METHOD:{PER_DOMAIN}, found the suffix {scope!r}.")
        loss = name.split("+", 1)[1] if "+" in name else (name if name not in BASES else None)
        weight = domain_loss_weight
        if loss and "@" in loss:  # LOSS@WEIGHT: the losses live on different scales (CORAL divides by 4 d^2)
            loss, weight = loss.split("@")[0], float(loss.split("@")[1])
        scores = results.setdefault(method, {d: [] for d in ("source_validation", "source_test", *TARGETS)})
        folder_name = name.replace("+", "_").replace("@", "_w") + (suffix if name.startswith("dapt") else "")
        if name.startswith("self_train"):
            folder_name += ("" if pseudo_label_from == "source" else f"_from_{pseudo_label_from}".replace(
                "+", "_").replace("@", "_w")) + f"_f{pseudo_label_fraction:g}" + (
                "" if pseudo_label_balance == "proportional" else f"_{pseudo_label_balance}")
        # One model for the three targets, or (METHOD:per_domain) one per target, adapted/aligned to it alone.
        scopes = list(TARGETS) if scope else ["all"]
        for seed in seeds:
            validation, test = [], []
            for target in scopes:
                base = str(adapt_on(target)) if name.startswith("dapt") else "builtin:minilm"
                align = ["--target_unlabeled_file", str(files[target]["unlabeled"]), "--domain_loss", loss,
                         "--domain_loss_weight", str(weight)] if loss else []
                labels = pseudo_labels(seed, target) if name.startswith("self_train") else None
                align += ["--extra_train_file", str(labels)] if labels else []
                made = []  # label files made again after the run redo it (all.jsonl only joins the domains')
                if labels is not None:
                    made = [labels.with_name(f"{d}.jsonl") for d in TARGETS] if target == "all" else [labels]
                folder = (out / f"{folder_name}_{PER_DOMAIN}" / target if scope else out / folder_name) / f"seed{seed}"
                report = run_command("finetune", ["--model_name_or_path", base, "--dataset_name",
                                                  "builtin:sentiment_movies", *budget.flags(), "--seed", str(seed),
                                                  *align], folder, inputs=made)
                if not scope:
                    folders[(method, seed)] = folder
                validation.append(report["model"]["validation"]["accuracy"])  # selects W, no target labels
                test.append(report["model"]["test"]["accuracy"])
                for domain in (TARGETS if target == "all" else [target]):
                    scores[domain].append(target_accuracy(folder, domain, files[domain]["test"], budget.max_length))
            scores["source_validation"].append(statistics.mean(validation))
            scores["source_test"].append(statistics.mean(test))
    reference = results[methods[0]]
    rows = []
    for method, scores in results.items():
        row = {"method": method, "movies (source) validation": mean_std(scores["source_validation"]),
               "movies test": mean_std(scores["source_test"])}
        for domain in TARGETS:
            row[domain] = mean_std(scores[domain])
            row[f"{domain} vs {methods[0]}"] = delta(scores[domain], reference[domain])
        row["targets >= +2 points"] = sum(
            statistics.mean(scores[d]) - statistics.mean(reference[d]) >= 0.02 for d in TARGETS)
        rows.append(row)
    if ceiling:
        results["in_domain"] = scores = in_domain(out, files, seeds, budget)
        row = {"method": "in-domain labels (ceiling, not a method)", "movies (source) validation": "",
               "movies test": ""}
        for domain in TARGETS:
            row[domain] = mean_std(scores[domain])
            row[f"{domain} vs {methods[0]}"] = delta(scores[domain], reference[domain])
        rows.append({**row, "targets >= +2 points": ""})
    return table(rows), results


# ------------------------------------------------------------------------------------------------ multi-teacher


# Three teachers that differ by more than their seed (--teachers strategies), fixed before any was measured: plain
# fine-tuning, layer-wise learning-rate decay (lower layers move less), LoRA adapters (the encoder's weights stay).
TEACHER_RECIPES = {
    "full": [],
    "llrd0.8": ["--layerwise_lr_decay", "0.8", "--learning_rate", "2e-4"],
    "lora16": ["--strategy", "lora", "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "1e-3"],
}
TEACHER_SETS = {"seeds": [("full", 1), ("full", 2), ("full", 3)],
                "strategies": [("full", 1), ("llrd0.8", 2), ("lora16", 3)]}


def single_task(out: Path, task: str, seed: int, budget: Budget, recipe: str = "full") -> tuple[Path, dict]:
    """The embedded MiniLM fine-tuned on one builtin task (with one of TEACHER_RECIPES): the multi-task comparison's
    reference and a teacher."""
    folder = out / "single" / task / (f"seed{seed}" if recipe == "full" else f"{recipe}_seed{seed}")
    flags = [*budget.flags(), *TEACHER_RECIPES[recipe]]  # a recipe's own learning rate comes last and wins
    return folder, run_command("finetune", ["--model_name_or_path", "builtin:minilm", "--dataset_name",
                                            f"builtin:{task}", *flags, "--seed", str(seed)], folder)


def multi_teacher(out: Path, seeds: Sequence[int], budget: Budget, task: str, student_layers: int,
                  temperature: float, alpha: float, student_epochs: float,
                  teacher_set: str = "seeds") -> tuple[str, dict]:
    """Three teachers (`teacher_set`: MiniLM fine-tuned with seeds 1, 2, 3, or with three recipes) into one student,
    against the student of the best single teacher (by validation accuracy, so the test split chooses nothing), same
    student init (the best teacher's layers), data, budget and seeds."""
    if teacher_set not in TEACHER_SETS:
        raise ValueError(f"--teachers {teacher_set!r}: expected one of {', '.join(TEACHER_SETS)}.")
    recipes = TEACHER_SETS[teacher_set]
    teachers = [single_task(out, task, seed, budget, recipe) for recipe, seed in recipes]
    labels = {folder: f"teacher {'' if teacher_set == 'seeds' else recipe + ' '}seed {seed}"
              for (folder, _), (recipe, seed) in zip(teachers, recipes)}
    ranked = sorted(teachers, key=lambda t: -t[1]["model"]["validation"]["accuracy"])
    best = ranked[0][0]
    distill = ["--dataset_name", f"builtin:{task}", "--student_num_layers", str(student_layers),
               "--max_train_samples", str(budget.max_train_samples), "--max_length", str(budget.max_length),
               "--num_train_epochs", str(student_epochs), "--learning_rate", str(budget.learning_rate * 2),
               "--per_device_train_batch_size", str(budget.batch_size), "--warmup_ratio", "0.06",
               "--temperature", str(temperature), "--alpha", str(alpha), "--latency_samples", "16",
               "--teacher_cache", str(out / "teacher_cache"), "--disable_tqdm", "true"]
    runs = {"best single teacher": [str(best)], "ensemble of 3": [str(t[0]) for t in ranked]}
    results: dict[str, list[float]] = {}
    ensemble_teacher = None
    for name, teacher_dirs in runs.items():
        for seed in seeds:
            folder = (out / "multi_teacher" / task / (name.replace(" ", "_") + (
                "" if teacher_set == "seeds" else f"_{teacher_set}")) / f"seed{seed}")
            report = run_command("distill", [*distill, "--teacher_model_name_or_path", *teacher_dirs,
                                             "--seed", str(seed)], folder)
            results.setdefault(name, []).append(report["student"]["test"]["accuracy"])
            if len(teacher_dirs) > 1:
                ensemble_teacher = report["teacher"]["test"]["accuracy"]
    rows = [{"model": labels[folder] + (" (best on validation)" if folder == best else ""),
             "test accuracy %": mean_std([report["model"]["test"]["accuracy"]]), "vs best-teacher student": ""}
            for folder, report in teachers]
    rows.append({"model": "teacher ensemble (3, equal weights)", "test accuracy %": mean_std([ensemble_teacher]),
                 "vs best-teacher student": ""})
    reference = results["best single teacher"]
    for name, scores in results.items():
        rows.append({"model": f"{student_layers}-layer student of {name}", "test accuracy %": mean_std(scores),
                     "vs best-teacher student": delta(scores, reference) if scores is not reference else ""})
    return table(rows), {"students": results, "teachers": {f.name: r["model"]["test"] for f, r in teachers},
                         "ensemble_teacher_accuracy": ensemble_teacher, "best_teacher": str(best),
                         "teachers_differ_by": teacher_set}


# ------------------------------------------------------------------------------------------------ multi-task


def multitask(out: Path, seeds: Sequence[int], budget: Budget, student_layers: int, student_epochs: float,
              temperature: float, alpha: float) -> tuple[str, dict]:
    """TREC-6 + SMS spam + movie reviews: three single-task MiniLMs against one shared encoder with three heads
    (same data, epochs, learning rate and seeds: proportional sampling of equal-sized tasks), then the multi-task
    teacher distilled into a multi-task student built from its layers (retention per task)."""
    tasks_file = out / "multitask_tasks.yaml"
    tasks_file.parent.mkdir(parents=True, exist_ok=True)
    tasks_file.write_text(
        "sampling: proportional\n"
        f"max_length: {budget.max_length}\n"
        "tasks:\n" + "".join(f"  - name: {task}\n    dataset_name: builtin:{task}\n"
                             f"    max_train_samples: {budget.max_train_samples}\n" for task in TASKS))
    # Per-task data flags are in the tasks file; batches are drawn by task, so no group_by_length here.
    common = budget.training_flags()
    single: dict[str, list[float]] = {task: [] for task in TASKS}
    joint: dict[str, list[float]] = {task: [] for task in TASKS}
    student: dict[str, list[float]] = {task: [] for task in TASKS}
    retention: dict[str, list[float]] = {task: [] for task in TASKS}
    for seed in seeds:
        for task in TASKS:
            single[task].append(single_task(out, task, seed, budget)[1]["model"]["test"]["accuracy"])
        teacher = out / "multitask" / "teacher" / f"seed{seed}"
        report = run_command("finetune", ["--model_name_or_path", "builtin:minilm", "--tasks", str(tasks_file),
                                          *common, "--seed", str(seed)], teacher)
        for task in TASKS:
            joint[task].append(report["tasks"][task]["model"]["test"]["accuracy"])
        distilled = run_command("distill", [
            "--tasks", str(tasks_file), "--teacher_model_name_or_path", str(teacher), "--student_num_layers",
            str(student_layers), "--num_train_epochs", str(student_epochs), "--learning_rate",
            str(budget.learning_rate * 2), "--per_device_train_batch_size", str(budget.batch_size),
            "--temperature", str(temperature), "--alpha", str(alpha), "--latency_samples", "16",
            "--disable_tqdm", "true", "--seed", str(seed)], out / "multitask" / f"student_l{student_layers}" /
            f"seed{seed}")
        for task in TASKS:
            student[task].append(distilled["tasks"][task]["student"]["test"]["accuracy"])
            retention[task].append(distilled["tasks"][task]["retention"])
    rows = [{"task": task, "single-task (3 encoders)": mean_std(single[task]),
             "multi-task (1 encoder)": mean_std(joint[task]), "multi-task vs single": delta(joint[task], single[task]),
             f"multi-task {student_layers}-layer student": mean_std(student[task]),
             "retention vs multi-task teacher": mean_std(retention[task]).replace(" ±", " % ±", 1)}
            for task in TASKS]
    return table(rows), {"single": single, "multitask": joint, "student": student, "retention": retention}
