"""The trained student loads in the vLLM CPU engine and generates; `selfinstruct eval` compares it with its
base. Each test starts its own engine on the tiny model and closes it.

Run: .venv/bin/pytest -q -m vllm tests/sft
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.sft.config import SFTConfig
from selfinstruct.sft.train import train

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_llama, alpaca_small):
    out = tmp_path_factory.mktemp("student")
    config = SFTConfig(
        model=str(tiny_llama),
        max_length=256,
        trainer={"learning_rate": 3e-3, "warmup_steps": 0, "gradient_accumulation_steps": 1},
    )
    train(config, alpaca_small, out, max_steps=12)
    return out


def test_student_loads_in_vllm_and_generates(student):
    from selfinstruct.llm.base import Request, Sampling
    from selfinstruct.llm.vllm_engine import VLLMBackend

    backend = VLLMBackend(str(student), enforce_eager=True, max_model_len=512, seed=0)
    try:
        s = Sampling(temperature=0.0, max_tokens=12)
        reqs = [
            Request(id="a", messages=({"role": "user", "content": "Name a colour."},), sampling=s),
            Request(id="b", messages=({"role": "user", "content": "Give a synonym for big."},), sampling=s),
        ]
        outs = backend.generate(reqs)
        # The stop token we trained is one vLLM stops at (generation_config.eos_token_id).
        gen = json.loads((student / "generation_config.json").read_text())
        assert backend._tokenizer.convert_tokens_to_ids("<|endoftext|>") in (
            gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
        )
    finally:
        backend.close()
    assert [o.request_id for o in outs] == ["a", "b"]
    for o in outs:
        assert o.ok and o.completion_tokens >= 1 and o.finish_reason in ("stop", "length")
        assert o.finish_reason == "stop" or o.completion_tokens == 12


def test_eval_cli_compares_base_and_student(tmp_path, student, tiny_llama, external):
    rows = [
        json.loads(line)
        for line in (external / "self_instruct_user_oriented_instructions.jsonl").read_text().splitlines()[:3]
    ]
    # A fourth item longer than the context: the backend refuses it alone, and eval counts it as an error.
    rows.append(
        {"id": "huge", "instruction": "Summarise.", "instances": [{"input": "word " * 2000, "output": "x"}]}
    )
    data = tmp_path / "held_out.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = tmp_path / "answers.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            str(student),
            "--base",
            str(tiny_llama),
            "--data",
            str(data),
            "--max-tokens",
            "16",
            "--max-model-len",
            "512",
            "--answers",
            str(answers),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["items"] == 4
    for role in ("base", "student"):
        score = report[role]
        assert score["answers"] == 3 and score["errors"] == 1 and score["template"] == "chat"
        assert score["stop_share"] + score["length_share"] == pytest.approx(1.0)
        assert 0 < score["mean_tokens"] <= 16 and 0.0 <= score["rouge_l"] <= 1.0
    written = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [(r["role"], r["id"]) for r in written] == [
        (role, r["id"]) for role in ("base", "student") for r in rows[:3]
    ]
    assert report["student"]["model"] == str(student) and report["base"]["model"] == str(tiny_llama)
