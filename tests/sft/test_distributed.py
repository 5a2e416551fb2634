"""Multi-process training for real on CPU: `torchrun --nproc_per_node 2` (gloo) runs `selfinstruct train` on
the embedded model; its loss curve matches one process with doubled gradient accumulation, one process writes
our files, and the checkpoint loads in the vLLM CPU engine.

Same global batch both ways (2 processes x 2 examples x 2 accumulation = 1 x 2 x 4), sequential order, so
both see the same 8 examples in each step. The loss is a sum over the step's supervised tokens divided by
their count across all micro-batches and processes, so the gradients agree up to float summation order:
the curves must match within a relative 1e-3.

Run: .venv/bin/pytest -q tests/sft/test_distributed.py   (about 3-4 minutes on 2 cores)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

BIN = Path(sys.executable).parent
CONFIG = """trainer:
  learning_rate: 1.0e-4
  warmup_steps: 0
  lr_scheduler_type: constant
  per_device_train_batch_size: 2
  gradient_accumulation_steps: {accumulation}
  train_sampling_strategy: sequential
  save_steps: 100
  seed: 0
"""


def _train(cmd: list[str], tmp_path: Path, name: str, accumulation: int, data: Path, model: Path) -> dict:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(CONFIG.format(accumulation=accumulation))
    out = tmp_path / name
    args = ["train", "-d", str(data), "-o", str(out), "-m", str(model), "-c", str(cfg)]
    args += ["--max-steps", "2", "--max-length", "128", "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd + args, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stdout  # one process speaks for all
    return json.loads(lines[0])


def _curve(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def short_alpaca(tmp_path_factory, external) -> Path:
    records = json.loads((external / "stanford_alpaca_pr152_alpaca_5000.json").read_text())
    short = [r for r in records if len(r["output"]) < 80 and len(r["instruction"]) < 80 and not r["input"]]
    path = tmp_path_factory.mktemp("data") / "alpaca16.json"
    path.write_text(json.dumps(short[:16]))
    return path


def test_two_processes_match_one_with_doubled_accumulation(tmp_path, embedded_model, short_alpaca):
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "selfinstruct"]
    two = _train(torchrun, tmp_path, "two", 2, short_alpaca, embedded_model)
    one = _train([sys.executable, "-m", "selfinstruct"], tmp_path, "one", 4, short_alpaca, embedded_model)

    assert two["steps"] == one["steps"] == 2 and two["epochs"] == one["epochs"] == 1.0
    assert two["tokens_trained"] == one["tokens_trained"] > 0  # every example once, counted over processes
    curve_two, curve_one = _curve(tmp_path / "two"), _curve(tmp_path / "one")
    assert [s for s, _ in curve_two] == [1, 2]  # one row per step: only the main process logs
    assert [loss for _, loss in curve_two] == pytest.approx([loss for _, loss in curve_one], rel=1e-3)
    summary = json.loads((tmp_path / "two" / "sft.json").read_text())
    assert summary["fingerprint"]["world_size"] == 2
    assert not list((tmp_path / "two").glob("*.tmp"))  # no rank left a temp file behind

    from selfinstruct.llm.base import Request, Sampling
    from selfinstruct.llm.vllm_engine import VLLMBackend

    backend = VLLMBackend(str(tmp_path / "two"), enforce_eager=True, max_model_len=512, seed=0)
    try:
        s = Sampling(temperature=0.0, max_tokens=16)
        [c] = backend.generate(
            [Request(id="a", messages=({"role": "user", "content": "Name a colour."},), sampling=s)]
        )
    finally:
        backend.close()
    assert c.ok and c.completion_tokens >= 1 and c.text.strip()
