"""Masked SFT and IFD scoring on a CUDA GPU give what they give on the CPU. Skipped without a GPU: CI has
none, so these run where one is lent (docs/benchmarks.md says when they last ran and what they measured).

The tiny random Llama trains 8 steps on the same 48 Alpaca records three ways: on the CPU in float32
(`trainer: {use_cpu: true}`), on the GPU in float32 and on the GPU with its defaults (bf16 mixed precision).
The float32 curves differ only by summation order, so they must agree to a relative 1e-3; bf16 rounds every
matrix product to 8 bits of mantissa (the weights stay float32), so its curve must stay within 1%. IFD scores
agree to 1e-3.

Run: .venv/bin/pytest -q tests/sft/test_cuda.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from selfinstruct.filters.config import IFDConfig  # noqa: E402
from selfinstruct.filters.ifd import IFDScorer  # noqa: E402
from selfinstruct.sft.config import SFTConfig  # noqa: E402
from selfinstruct.sft.train import read_summary, train  # noqa: E402

STEPS = 8
TRAINER = {
    "learning_rate": 3e-3,
    "warmup_steps": 0,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "save_steps": 100,
    "seed": 0,
}


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _run(tmp_path, tiny_llama, alpaca_small, name, **trainer):
    config = SFTConfig(model=str(tiny_llama), max_length=256, trainer={**TRAINER, **trainer})
    out = tmp_path / name
    result = train(config, alpaca_small, out, max_steps=STEPS)
    return result, _losses(out), out


def test_training_on_the_gpu_follows_the_cpu_curve(tmp_path, tiny_llama, alpaca_small):
    from transformers import AutoModelForCausalLM

    cpu, cpu_loss, _ = _run(tmp_path, tiny_llama, alpaca_small, "cpu", use_cpu=True, bf16=False)
    fp32, fp32_loss, _ = _run(tmp_path, tiny_llama, alpaca_small, "fp32", bf16=False)
    bf16, bf16_loss, out = _run(tmp_path, tiny_llama, alpaca_small, "bf16")
    print("cpu ", cpu_loss, "\ngpu ", fp32_loss, "\nbf16", bf16_loss)
    assert len(cpu_loss) == len(fp32_loss) == len(bf16_loss) == STEPS
    assert cpu_loss[-1] < cpu_loss[0] - 0.5  # it learned, so the curves compare something
    assert fp32_loss == pytest.approx(cpu_loss, rel=1e-3)
    assert bf16_loss == pytest.approx(cpu_loss, rel=1e-2)
    # the same tokens went through each run, and the defaults chose mixed precision on the GPU only
    assert cpu.tokens_trained == fp32.tokens_trained == bf16.tokens_trained > 0
    assert read_summary(out)["trainer"].get("bf16") is True
    # the student is saved in the base's float32, loadable as it is
    student = AutoModelForCausalLM.from_pretrained(out)
    assert student.dtype == torch.float32


def test_ifd_scores_on_the_gpu_are_the_cpu_scores(tiny_llama, alpaca_records):
    triples = [(r["instruction"], r["input"], r["output"]) for r in alpaca_records[:24]]
    cpu = IFDScorer(IFDConfig(model=str(tiny_llama), device="cpu", batch_size=8)).score_texts(triples)
    gpu = IFDScorer(IFDConfig(model=str(tiny_llama), device="cuda", batch_size=8)).score_texts(triples)
    assert len(cpu) == len(gpu) == 24
    for c, g in zip(cpu, gpu, strict=True):
        assert c["ifd"] is not None and g["ifd"] == pytest.approx(c["ifd"], rel=1e-3, abs=1e-4)
        assert g["ppl_answer"] == pytest.approx(c["ppl_answer"], rel=1e-3)


def test_two_processes_on_one_gpu_are_refused_in_one_line(tmp_path, tiny_llama, alpaca_small):
    """torchrun with more processes than GPUs: one line naming the launch to use, not a CUDA traceback."""
    if torch.cuda.device_count() != 1:
        pytest.skip("needs exactly one GPU")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "selfinstruct", "train", "-d", str(alpaca_small), "-o", str(tmp_path / "out")]
    cmd += ["-m", str(tiny_llama), "--max-steps", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode != 0
    assert "2 processes on this machine share 1 GPU" in res.stderr, res.stderr[-3000:]
    assert "invalid device ordinal" not in res.stderr
