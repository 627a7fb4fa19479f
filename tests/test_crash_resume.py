"""A distillation run killed with SIGKILL after a checkpoint and resumed ends with the uninterrupted run's student.

The kill is real: `nlp-reuse distill` runs in a child process that is sent SIGKILL once checkpoint-2 is complete
(its steps are slowed down so the kill lands mid-run). The resume and the uninterrupted reference run in this
process. Three cases: logit KD, logit KD from the teacher cache, and hidden-state KD through a learned projector
(student hidden 16, teacher 32), whose state lives outside the student.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nlp_reuse.commands import distill

# Dropout stays on: the checkpoint's RNG state must carry it across the kill.
STUDENT = {"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
CASES = {
    "logit_kd": [],
    "teacher_cache": ["--teacher_cache", "{cache}"],
    "hidden_projector": ["--hidden_loss_weight", "1.0", "--alpha", "0.7"],
}
# The child slows every step so that the parent's kill lands after checkpoint-2 and before the run ends.
CHILD = """
import sys, time
import torch, transformers
torch.set_num_threads(1)
step = transformers.Trainer.training_step
def slow_step(self, *args, **kwargs):
    time.sleep(0.4)
    return step(self, *args, **kwargs)
transformers.Trainer.training_step = slow_step
from nlp_reuse.commands import main
sys.exit(main(sys.argv[1:]))
"""


def case_flags(case: str, teacher: Path, data: Path, out: Path, cache: Path) -> list[str]:
    return ["--teacher_model_name_or_path", str(teacher), "--output_dir", str(out),
            "--student_config", json.dumps(STUDENT), "--train_file", str(data / "train.jsonl"),
            "--validation_file", str(data / "validation.jsonl"), "--test_file", str(data / "test.jsonl"),
            "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--max_length", "16",
            "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1", "--latency_samples", "1",
            "--disable_tqdm", "true", "--seed", "7", "--learning_rate", "1e-3",
            *[f.format(cache=cache) for f in CASES[case]]]


def _kill_after_checkpoint_2(children: dict[str, tuple[subprocess.Popen, Path]], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(children)
    while pending and time.monotonic() < deadline:
        for case, (child, out) in list(pending.items()):
            if (out / "checkpoints" / "student" / "checkpoint-2" / "trainer_state.json").is_file():
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
                del pending[case]
            elif child.poll() is not None:
                raise AssertionError(f"{case}: the child ended ({child.returncode}) before checkpoint-2:\n"
                                     + child.stderr.read().decode()[-3000:])
        time.sleep(0.05)
    assert not pending, f"no checkpoint-2 within {timeout}s for {sorted(pending)}"


@pytest.fixture(scope="module")
def killed_runs(tiny_teacher_dir, tiny_data_dir, tmp_path_factory):
    """The three cases killed after checkpoint-2, all started at once (each child pays its imports in parallel)."""
    root = tmp_path_factory.mktemp("killed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    children = {}
    for case in CASES:
        flags = case_flags(case, tiny_teacher_dir, tiny_data_dir, root / case, root / f"cache-{case}")
        children[case] = (subprocess.Popen([sys.executable, "-c", CHILD, "distill", *flags], env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), root / case)
    try:
        _kill_after_checkpoint_2(children)
    finally:
        for child, _ in children.values():
            child.kill()
    return root


def _test_predictions(folder: Path, texts: list[str]) -> np.ndarray:
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.argmax(-1).numpy()


@pytest.mark.parametrize("case", list(CASES))
def test_killed_and_resumed_run_ends_with_the_uninterrupted_student(case, killed_runs, tiny_teacher_dir,
                                                                   tiny_data_dir, tmp_path):
    killed = killed_runs / case
    done = sorted(p.name for p in (killed / "checkpoints" / "student").glob("checkpoint-*"))
    assert "checkpoint-2" in done and "checkpoint-6" not in done, done  # killed mid-run, after checkpoint-2
    assert not (killed / "report.json").exists() and not (killed / "student").exists()
    if case == "hidden_projector":
        assert (killed / "checkpoints" / "student" / "checkpoint-2" / "projector.safetensors").is_file()

    cache = killed_runs / f"cache-{case}"
    with pytest.raises(FileExistsError, match="did not finish"):
        distill.main(case_flags(case, tiny_teacher_dir, tiny_data_dir, killed, cache))
    resumed = distill.main([*case_flags(case, tiny_teacher_dir, tiny_data_dir, killed, cache),
                            "--resume_from_checkpoint", "last"])
    reference = distill.main(case_flags(case, tiny_teacher_dir, tiny_data_dir, tmp_path / "reference",
                                        tmp_path / "cache"))
    if case == "teacher_cache":
        assert resumed["teacher_cache"]["fingerprint"] == reference["teacher_cache"]["fingerprint"]

    a = load_file(str(killed / "student" / "model.safetensors"))
    b = load_file(str(tmp_path / "reference" / "student" / "model.safetensors"))
    assert a.keys() == b.keys()
    max_diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    start = load_file(str(killed / "checkpoints" / "student" / "checkpoint-2" / "model.safetensors"))
    moved = max((a[k].float() - start[k].float()).abs().max().item() for k in a)
    texts = [json.loads(line)["text"] for line in (tiny_data_dir / "test.jsonl").read_text().splitlines()]
    agreement = float(np.mean(_test_predictions(killed / "student", texts)
                              == _test_predictions(tmp_path / "reference" / "student", texts)))
    print(f"\n{case}: max |w_resumed - w_uninterrupted| = {max_diff:.3g} (weights moved {moved:.3g} after the "
          f"kill), test prediction agreement {agreement:.3f} on {len(texts)} texts")
    assert moved > 1e-4  # the resumed run trained past checkpoint-2, so equality is not the checkpoint's copy
    assert max_diff <= 1e-5
    assert agreement == 1.0
