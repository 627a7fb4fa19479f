"""Two-process CPU data parallel (gloo) through `accelerate launch`: both ranks must end with identical weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def accelerate_launch(script: Path | list[str], *args: str, config_file: Path | None = None,
                      cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`accelerate launch SCRIPT args` (or `accelerate launch -m MODULE args` when `script` is ["-m", MODULE])."""
    # --cpu --num_processes 2 would start ONE process; --multi_gpu with use_cpu starts two gloo processes on CPU.
    launch = ["--config_file", str(config_file)] if config_file else [
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no"]
    target = script if isinstance(script, list) else [str(script)]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch, "--main_process_port", "0", *target, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_two_process_cpu_ddp_gives_identical_weights(tiny_teacher_dir, tiny_data_dir, tmp_path):
    proc = accelerate_launch(ROOT / "tests" / "ddp_worker.py", str(tiny_teacher_dir), str(tiny_data_dir),
                             str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(i["world_size"] == 2 and i["distributed_type"] == "DistributedType.MULTI_CPU" for i in info)
    assert all(i["global_step"] == 4 for i in info)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys() and any(k.startswith("projector.") for k in rank0)
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("entry", ["script", "module"])
def test_distill_under_accelerate_launch_with_teacher_cache(tiny_teacher_dir, tiny_data_dir, tmp_path, entry):
    """From a checkout (`accelerate launch scripts/distill.py`) and, for an installed user, from any folder
    (`accelerate launch -m nlp_reuse.commands.distill`)."""
    out = tmp_path / "run"
    target = ROOT / "scripts" / "distill.py" if entry == "script" else ["-m", "nlp_reuse.commands.distill"]
    proc = accelerate_launch(
        target, "--teacher_model_name_or_path", str(tiny_teacher_dir),
        "--train_file", str(tiny_data_dir / "train.jsonl"), "--test_file", str(tiny_data_dir / "test.jsonl"),
        "--student_num_layers", "2", "--num_train_epochs", "1", "--per_device_train_batch_size", "4",
        "--use_cpu", "true", "--ddp_find_unused_parameters", "false", "--latency_samples", "2",
        "--output_dir", str(out), "--disable_tqdm", "true", "--teacher_cache", str(tmp_path / "cache"),
        config_file=ROOT / "configs" / "accelerate" / "cpu_ddp.yaml",  # the shipped launch config
        cwd=ROOT if entry == "script" else tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert (report["distillation"]["world_size"], report["distillation"]["distributed_type"]) == (2, "MULTI_CPU")
    assert report["command"].startswith("python scripts/distill.py --teacher_model_name_or_path " if entry == "script"
                                        else "nlp-reuse distill --teacher_model_name_or_path ")
    assert report["teacher_cache"]["computed"]  # rank 0 computed it; rank 1 found it (main_process_first)
    # One logits entry (not one per rank) and the teacher's measurements beside it.
    assert sorted(p.name == "measurements" for p in (tmp_path / "cache").iterdir()) == [False, True]
    assert not report["teacher_measurements"]["reused"]
    assert report["student"]["num_layers"] == 2
    assert (out / "student" / "model.safetensors").is_file()
    assert proc.stdout.count("retention (student / teacher accuracy)") == 1  # the report is printed by rank 0 only

