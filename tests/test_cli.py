"""Argument parsing: YAML defaults, command-line overrides, unknown keys, range checks, --help."""

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from nlp_reuse.cli import ConfigError, command_line, make_parser, parse_args
from nlp_reuse.commands import COMMANDS, main
from nlp_reuse.config import DataArguments, DistillationArguments, DistillScriptArguments, FinetuneArguments

ROOT = Path(__file__).resolve().parents[1]


DISTILL = (DataArguments, DistillScriptArguments, DistillationArguments)


def parse(argv):
    """(data, script, trainer) arguments of `nlp-reuse distill`."""
    return parse_args(make_parser(DISTILL, "test"), argv)


def write_yaml(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_gives_defaults_and_cli_overrides(tmp_path):
    cfg = write_yaml(tmp_path, "dataset_name: builtin:trec6\nteacher_model_name_or_path: runs/t\n"
                               "student_num_layers: 3\ntemperature: 4.0\nalpha: 0.9\nlearning_rate: 1.0e-4\n"
                               f"output_dir: {tmp_path / 'out'}\nrun_baseline: true\n")
    data, script, distill = parse(["--config", cfg, "--alpha", "0.2"])
    assert data.dataset_name == "builtin:trec6"
    assert distill.temperature == 4.0 and distill.alpha == 0.2  # YAML value, then CLI override
    assert distill.learning_rate == pytest.approx(1e-4) and script.run_baseline is True
    assert script.teacher_model_name_or_path == ["runs/t"] and script.student_num_layers == 3


def test_unknown_yaml_key_is_an_error_with_a_suggestion(tmp_path):
    cfg = write_yaml(tmp_path, "dataset_name: builtin:trec6\ntemprature: 2.0\n")
    with pytest.raises(ConfigError,
                       match=r"Unknown key\(s\) in --config .*'temprature' \(did you mean temperature\?\)"):
        parse(["--config", cfg])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"--config .*nope.yaml does not exist"):
        parse(["--config", str(tmp_path / "nope.yaml")])


def test_unknown_cli_flag_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="unrecognized arguments: --temprature"):
        parse(["--dataset_name", "builtin:trec6", "--teacher_model_name_or_path", "t", "--student_num_layers", "2",
               "--output_dir", str(tmp_path), "--temprature", "2"])


@pytest.mark.parametrize("extra,message", [
    (["--alpha", "1.5"], r"--alpha must be in \[0.0, 1.0\], got 1.5"),
    (["--temperature", "0"], r"--temperature must be > 0, got 0.0"),
    (["--student_config", '{"hidden_size": 16}'],
     r"exactly one student source.*'student_num_layers', 'student_config'"),
    (["--hidden_loss_weight", "-1"], r"--hidden_loss_weight must be >= 0"),
])
def test_range_checks(tmp_path, extra, message):
    base = ["--dataset_name", "builtin:trec6", "--teacher_model_name_or_path", "t", "--student_num_layers", "2",
            "--output_dir", str(tmp_path)]
    with pytest.raises(ValueError, match=message):
        parse(base + extra)


def test_choices_come_from_the_literal_types(tmp_path, capsys):
    base = ["--dataset_name", "builtin:trec6", "--teacher_model_name_or_path", "t", "--student_num_layers", "2",
            "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit):
        parse(base + ["--hidden_loss", "l1"])
    assert "--hidden_loss/--hidden-loss: invalid choice: 'l1' (choose from 'mse', 'cosine')" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--export must be one of none, onnx, onnx_int8, got 'tflite'"):
        DistillScriptArguments(teacher_model_name_or_path="t", student_num_layers=2, export="tflite")
    with pytest.raises(ValueError, match=r"--teacher_dtype must be one of auto, float32, bfloat16, float16"):
        DistillationArguments(output_dir=str(tmp_path), teacher_dtype="int8")


def test_student_config_json_and_required_teacher(tmp_path):
    _, script, _ = parse(["--dataset_name", "builtin:trec6", "--teacher_model_name_or_path", "t", "--output_dir",
                          str(tmp_path), "--student_config", '{"num_hidden_layers": 2, "hidden_size": 64}'])
    assert script.student_config == {"num_hidden_layers": 2, "hidden_size": 64}
    with pytest.raises(ValueError, match="--teacher_model_name_or_path is required"):
        parse(["--dataset_name", "builtin:trec6", "--student_num_layers", "2", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--output_dir is required"):
        parse_args(make_parser((DataArguments, FinetuneArguments), "t"), ["--dataset_name", "builtin:trec6"])


def test_shipped_configs_parse(tmp_path):
    _, script, _ = parse(["--config", str(ROOT / "configs/trec6_distill.yaml"), "--teacher_model_name_or_path", "t",
                          "--output_dir", str(tmp_path)])
    assert script.student_num_layers == 3 and script.run_baseline
    parse_args(make_parser((DataArguments, FinetuneArguments), "t"),
               ["--config", str(ROOT / "configs/trec6_teacher.yaml"), "--output_dir", str(tmp_path)])
    # The GPU configs ask for bf16, which TrainingArguments refuses on a CPU-only machine: parse them without it.
    _, gpu_script, gpu = parse(["--config", str(ROOT / "configs/bert_base_gpu_distill.yaml"),
                                "--teacher_model_name_or_path", "t", "--output_dir", str(tmp_path), "--bf16", "false"])
    assert gpu_script.student_num_layers == 6 and gpu.hidden_loss_weight == 1.0
    _, gpu_teacher = parse_args(make_parser((DataArguments, FinetuneArguments), "t"),
                                ["--config", str(ROOT / "configs/bert_base_gpu_teacher.yaml"),
                                 "--output_dir", str(tmp_path), "--bf16", "false"])
    assert gpu_teacher.model_name_or_path == "bert-base-uncased"


def test_help_explains_the_flags():
    out = subprocess.run([sys.executable, str(ROOT / "scripts/distill.py"), "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--temperature" in out and "Softmax temperature T" in out and "--config" in out
    assert "accelerate launch scripts/distill.py" in out
    assert "accelerate launch -m nlp_reuse.commands.distill" in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_answers_help(name, capsys):
    """A '%' in a flag's help text crashes argparse's --help (it is a format string); every command prints its flags."""
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--output_dir" in out


@pytest.mark.parametrize("script", ["benchmark_training", "benchmark_transfer"])
def test_benchmark_scripts_answer_help(script, capsys):
    """The two benchmark scripts with their own parser: --help prints the docstring's examples as written."""
    spec = importlib.util.spec_from_file_location(script, ROOT / "scripts" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "\nExamples:\n    python scripts/" in out and "(default:" in out


def test_console_command_dispatches_to_the_same_parsers(capsys):
    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "nlp-reuse"]
    assert entry.value == "nlp_reuse.commands:main"
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    for name in ("finetune", "distill", "export", "benchmark", "push"):
        assert f"\n  {name} " in listing
    with pytest.raises(SystemExit, match="unknown command 'distil'; expected one of finetune, distill"):
        main(["distil"])
    # One real process: `python -m nlp_reuse.commands` reaches the command's own parser, from outside the checkout.
    helped = subprocess.run([sys.executable, "-m", "nlp_reuse.commands", "distill", "--help"], capture_output=True,
                            text=True, check=True, cwd="/").stdout
    assert "--temperature" in helped and "--config" in helped


def test_recorded_command_names_the_console_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/site-packages/nlp_reuse/commands/distill.py"])
    assert command_line("distill", ["--output_dir", "runs/x y", "--hub_token", "hf_abcdefghijklmnopqrstuv"]) == \
        "nlp-reuse distill --output_dir 'runs/x y' --hub_token <redacted>"
    monkeypatch.setattr(sys, "argv", [str(ROOT / "scripts" / "distill.py")])
    monkeypatch.chdir(ROOT)
    assert command_line("distill", []) == "python scripts/distill.py"
    monkeypatch.setattr(sys, "argv", [str(ROOT / "scripts" / "frontier.py"), "--plan", "p.yaml"])
    assert command_line("distill", ["--seed", "1"]) == "nlp-reuse distill --seed 1"  # a run the frontier started
    assert command_line("frontier") == "python scripts/frontier.py --plan p.yaml"


def test_console_command_exits_zero_after_a_run(monkeypatch, tmp_path):
    """The console wrapper exits with main()'s value: a command's report dict must not become exit status 1."""
    from nlp_reuse.commands import push

    monkeypatch.setattr(push, "main", lambda argv: {"written": argv})
    assert main(["push", "--model_dir", "x"]) == 0


def test_finetune_refuses_push_to_hub_instead_of_ignoring_it(tmp_path):
    with pytest.raises(ValueError, match=r"Expected no --push_to_hub for finetune.*Fix: drop it"):
        parse_args(make_parser((DataArguments, FinetuneArguments), "test"),
                   ["--dataset_name", "builtin:trec6", "--output_dir", str(tmp_path), "--push_to_hub", "true",
                    "--hub_model_id", "me/teacher"])


def test_user_errors_print_the_message_and_exit_2_without_a_traceback(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(f'{{"text": "row {i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(8)))
    assert main(["distill", "--train_file", str(data), "--teacher_model_name_or_path", "t",
                 "--student_num_layers", "1", "--output_dir", str(tmp_path / "o"), "--temperature", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlp-reuse distill: error: ") and "temperature" in err and "Traceback" not in err
    assert main(["push", "--model_dir", str(tmp_path / "none"), "--dry_run", str(tmp_path / "up")]) == 2
    assert "Expected a run folder" in capsys.readouterr().err


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write_yaml(tmp_path, "dataset_name: builtin:trec6\nstudent_num_layers: [3\nalpha: 0.5\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line \d+, column \d+: .*fix the line shown"):
        parse(["--config", str(path), "--teacher_model_name_or_path", "t", "--output_dir", str(tmp_path / "o")])


@pytest.mark.parametrize("line, expected", [
    ("num_train_epochs: three", r"line 2: num_train_epochs has a value of the wrong type(?s:.*)expected: float"
                                r"(?s:.*)found:    'three' \(str\)"),
    ("student_num_layers: [1, 2]", r"line 2: student_num_layers has a value of the wrong type(?s:.*)expected: int"
                                   r"(?s:.*)found:    \[1, 2\] \(list\)"),
    ("run_baseline: maybe", r"line 2: run_baseline has a value of the wrong type(?s:.*)expected: true or false"),
    ("optim: adam_sgd_mix", r"line 2: optim is not one of its choices(?s:.*)one of \['adamw_torch'"),
])
def test_config_value_of_the_wrong_type_names_file_line_and_type(tmp_path, line, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(f"temperature: 2.0\n{line}\nalpha: 0.5\n")
    with pytest.raises(ConfigError, match=expected):
        parse_args(make_parser(DISTILL, "test"),
                   ["--config", str(config), "--output_dir", str(tmp_path / "o"), "--teacher_model_name_or_path",
                    "t", "--student_num_layers", "2", "--dataset_name", "builtin:trec6"])


def test_config_values_are_converted_like_flags(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text("num_train_epochs: 2\nrun_baseline: true\nstudent_config: {num_hidden_layers: 2}\n"
                      "learning_rate: 1.0e-4\n")
    _, script, args = parse(["--config", str(config), "--output_dir", str(tmp_path / "o"),
                             "--teacher_model_name_or_path", "t", "--dataset_name", "builtin:trec6"])
    assert (args.num_train_epochs, script.run_baseline, script.student_config, args.learning_rate) == (
        2.0, True, {"num_hidden_layers": 2}, 1e-4)
