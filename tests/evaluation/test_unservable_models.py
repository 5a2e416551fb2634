"""Models an engine would fail on are refused with one line saying what to do, before any engine starts: an
unmerged LoRA student (an adapter, not a model) and weights cut short. Run:
.venv/bin/pytest -q tests/evaluation/test_unservable_models.py"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfinstruct.errors import SelfInstructError
from selfinstruct.evaluation.backends import EngineSlot


def test_an_adapter_only_student_is_refused_with_the_setting_to_change(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    slot = EngineSlot()
    with pytest.raises(SelfInstructError, match=r"lora\.merge: true"):
        slot(str(tmp_path))
    assert slot.starts == 0


def _cut_short_student(src: Path, out: Path, keep: int) -> Path:
    """A copy of checkpoint `src` whose weights stop after `keep` bytes, as a save cut by a full disk leaves it."""
    out.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, out / f.name)
    with open(src / "model.safetensors", "rb") as r, open(out / "model.safetensors", "wb") as w:
        w.write(r.read(keep))
    return out


def test_weights_cut_short_are_refused_in_one_line_before_an_engine_starts(embedded_model, tmp_path):
    """vLLM's workers printed three tracebacks for a model.safetensors cut short before our line; its header says
    how long the file must be, so `eval` names the file and the fix, and starts nothing."""
    student = _cut_short_student(embedded_model, tmp_path / "student", 20 << 20)
    cmd = [sys.executable, "-m", "selfinstruct", "eval", "rouge", "--model", str(student), "-n", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {student / 'model.safetensors'}: cut short (20,971,520 of "), last
    assert "Traceback" not in res.stderr and "starting" not in res.stderr, res.stderr[-3000:]  # no engine


def test_a_weights_file_without_a_whole_header_is_refused(embedded_model, tmp_path):
    student = _cut_short_student(embedded_model, tmp_path / "student", 4)
    slot = EngineSlot()
    with pytest.raises(SelfInstructError, match=r"model\.safetensors: cut short \(4 bytes\)"):
        slot(str(student))
    assert slot.starts == 0


def test_serve_refuses_weights_cut_short_without_announcing_a_start(embedded_model, tmp_path):
    """`serve` said it was starting vLLM, then refused the model: its only line is now the refusal."""
    student = _cut_short_student(embedded_model, tmp_path / "student", 4)
    cmd = [sys.executable, "-m", "selfinstruct", "serve", "--model", str(student), "--port", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr[-3000:]
    lines = (res.stdout + res.stderr).strip().splitlines()
    refusal = f"error: {student / 'model.safetensors'}: cut short"
    assert len(lines) == 1 and lines[0].startswith(refusal), lines
