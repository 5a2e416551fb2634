"""`selfinstruct train` / `eval` through typer's CliRunner. Run: .venv/bin/pytest -q tests/sft/test_cli.py"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app

runner = CliRunner()
FAST = (
    "trainer:\n  learning_rate: 0.003\n  warmup_steps: 0\n  per_device_train_batch_size: 4\n"
    "  gradient_accumulation_steps: 1\n"
)


def test_train_json_prints_one_object_and_writes_the_checkpoint(tmp_path, tiny_llama, alpaca_small):
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(FAST)
    out = tmp_path / "student"
    res = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(alpaca_small),
            "--model",
            str(tiny_llama),
            "--out",
            str(out),
            "--max-steps",
            "3",
            "--config",
            str(cfg),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["steps"] == 3 and result["used"] == 48 and result["final_loss"] > 0
    assert (out / "config.json").is_file() and (out / "metrics.jsonl").is_file()


def test_train_human_output_shows_preview_summary_and_skips(tmp_path, tiny_llama):
    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"instruction": "Say hi.", "input": "", "output": "Hi there."}\n'
        '{"instruction": "Write a long text.", "input": "", "output": "' + "word " * 300 + '"}\n'
    )
    res = runner.invoke(
        app,
        [
            "train",
            "-d",
            str(data),
            "-m",
            str(tiny_llama),
            "-o",
            str(tmp_path / "s"),
            "--max-steps",
            "1",
            "--max-length",
            "64",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "1/2 examples used (skipped: 1 too long)" in res.stdout
    assert "final loss" in res.stdout
    assert "sft.max_length = 64" in res.stderr and "supervised" in res.stderr
    assert "Hi there." in res.stderr  # the coloured preview of the first example


def test_bad_input_is_one_red_line(tmp_path, tiny_llama):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x"}\n')
    res = runner.invoke(app, ["train", "-d", str(data), "-m", str(tiny_llama), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1] == f"error: {data}:2: output: Field required"
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["train", "-d", str(data), "-o", str(tmp_path / "o"), "--template", "fancy"])
    assert (
        res.exit_code == 1 and "sft config: template: Input should be 'auto', 'chat' or 'plain'" in res.stderr
    )
    res = runner.invoke(app, ["eval", "rouge", "--model", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "is not a Hugging Face checkpoint" in res.stderr
    res = runner.invoke(
        app, ["train", "-d", str(data), "-m", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]
    )
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: model directory {tmp_path / 'missing'} does not exist (run `selfinstruct model prepare` for the embedded "
        "one; a relative path is read from the current directory)"
    )


def test_settings_print_as_text_with_their_source(tmp_path):
    cfg = tmp_path / "sft.yaml"
    cfg.write_text('trainer:\n  run_name: "a[/]"\n')
    # No config.json under --model: the command stops right after printing its settings.
    res = runner.invoke(
        app,
        [
            "train",
            "-d",
            str(tmp_path),
            "-m",
            str(tmp_path),
            "-o",
            str(tmp_path / "o"),
            "-c",
            str(cfg),
            "--lora",
        ],
    )
    assert res.exit_code == 1 and "is not a Hugging Face checkpoint" in res.stderr, res.output
    lines = res.stderr.splitlines()
    assert f"sft.trainer = {{'run_name': 'a[/]'}}  ({cfg})" in lines
    assert any(ln.startswith("sft.lora = {'r': 16") and ln.endswith("(flag)") for ln in lines)


def test_bad_data_fails_before_torch_and_transformers_load(tmp_path, tiny_llama):
    """A bad line costs a second, not a model load: the data is read and checked first."""
    import subprocess
    import sys

    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x", "outptu": "y"}\n')
    script = (
        "import sys\n"
        "from selfinstruct.cli import main\n"
        f"sys.argv = ['selfinstruct', 'train', '-d', {str(data)!r}, '-m', {str(tiny_llama)!r}, "
        f"'-o', {str(tmp_path / 'o')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules)\n"
        "print('HEAVY', heavy, 'CODE', code)\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "HEAVY [] CODE 1" in res.stdout, res.stdout + res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(f"error: {data}:2:")
    assert not (tmp_path / "o").exists()


def test_fresh_and_force_flags_on_a_different_run(tmp_path, tiny_llama, alpaca_small):
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(FAST + "  save_steps: 2\n")
    out = tmp_path / "student"
    base = ["train", "-m", str(tiny_llama), "-o", str(out), "-c", str(cfg), "--max-steps", "2", "--json"]
    assert runner.invoke(app, [*base, "-d", str(alpaca_small)]).exit_code == 0
    other = tmp_path / "other.jsonl"
    other.write_text('{"instruction": "Say hi.", "output": "Hi there."}\n' * 4)
    res = runner.invoke(app, [*base, "-d", str(other)])
    assert res.exit_code == 1
    line = res.stderr.strip().splitlines()[-1]
    assert "holds a different training run (data.examples_sha256" in line and "--fresh" in line, line
    res = runner.invoke(app, [*base, "-d", str(other), "--fresh", "--max-steps", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["resumed_from"] is None and not (out / "checkpoint-2").exists()


@pytest.mark.parametrize("writer", ["safetensors", "torch"])
def test_a_failed_checkpoint_write_is_one_line_and_the_next_run_finishes(
    tmp_path, tiny_llama, alpaca_small, writer
):
    """A write that fails for real, a file size limit standing in for a full disk: the weights (safetensors) or
    the optimizer state (torch.save, about twice their size) cannot be written. Each library raises its own
    exception with pages of C++ or Rust detail; the user gets one line naming the folder, and the run after it
    finishes."""
    import subprocess
    import sys

    from filelimit import small_files

    weights = (tiny_llama / "model.safetensors").stat().st_size
    limit = weights // 2 if writer == "safetensors" else weights + (64 << 10)

    cfg = tmp_path / "sft.yaml"
    cfg.write_text(FAST + "  save_steps: 1\n")
    out = tmp_path / "student"
    cmd = [sys.executable, "-m", "selfinstruct", "train", "-d", str(alpaca_small), "-m", str(tiny_llama),
           "-o", str(out), "-c", str(cfg), "--max-steps", "2"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=small_files(limit))
    assert res.returncode == 1, res.stderr[-3000:]
    assert (
        res.stderr.strip().splitlines()[-1] == f"error: {out}: could not write a checkpoint: file too large"
    )
    assert "Traceback" not in res.stderr and "│" not in res.stderr, res.stderr[-3000:]
    res = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["steps"] == 2
