"""The training-throughput harness (benchmarks/, outside the package) runs its variants in subprocesses and reports
comparable numbers."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a folder of the checkout, not installed
from benchmarks.training_throughput import (  # noqa: E402
    BenchSpec,
    add_ratios,
    format_results,
    run_benchmark,
    run_variant,
)


def test_variants_run_and_ratios_are_relative():
    spec = BenchSpec(shape="tiny", seq_len=8, batch_size=4, steps=2, warmup=1, vocab_size=500)
    results = add_ratios(run_benchmark(spec, ("hand_kd", "nlp_reuse_cached")))
    assert [r["variant"] for r in results] == ["hand_kd", "nlp_reuse_cached"]
    for r in results:
        assert r["samples_per_s"] > 0 and r["step_ms"] > 0 and r["peak_mb"] > 0
        assert r["x_hand_kd"] == pytest.approx(r["samples_per_s"] / results[0]["samples_per_s"])
    assert results[0]["x_hand_kd"] == pytest.approx(1.0)
    assert results[1]["cache_seconds"] >= 0
    table = format_results(results, spec)
    assert "shape=tiny seq=8 batch=4" in table and "| nlp_reuse_cached" in table


def test_unknown_variant_fails_loudly():
    with pytest.raises(ValueError, match=r"Unknown benchmark variant 'nope': expected one of \['hand_finetune'"):
        run_variant("nope", BenchSpec(shape="tiny"))


def test_live_variant_in_process():
    result = run_variant("nlp_reuse_live", BenchSpec(shape="tiny", seq_len=8, batch_size=4, steps=2, warmup=1,
                                                     vocab_size=500))
    assert result["variant"] == "nlp_reuse_live" and result["samples_per_s"] > 0
