"""Training a tiny random Llama on CPU: the loss falls, metrics are written, a crash resumes, the loss is
normalised over tokens across accumulation steps, LoRA merges.

Run: .venv/bin/pytest -q tests/sft/test_train.py
"""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from selfinstruct.errors import SelfInstructError
from selfinstruct.sft.config import SFTConfig
from selfinstruct.sft.train import read_summary, train

FAST = {
    "learning_rate": 3e-3,
    "warmup_steps": 0,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "save_steps": 5,
    "seed": 0,
}


def _config(model, **trainer):
    return SFTConfig(model=str(model), max_length=256, trainer={**FAST, **trainer})


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_weights_change_and_checkpoint_is_complete(tmp_path, tiny_llama, alpaca_small):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "student"
    result = train(_config(tiny_llama), alpaca_small, out, max_steps=24)
    assert result.steps == 24 and result.used == 48 and result.template == "chat"
    assert result.stop_token == "<|endoftext|>" and result.tokens_trained > result.response_tokens > 0
    rows = [r for r in _metrics(out) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 25))
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first - 1.0, (first, last)
    assert result.final_loss == rows[-1]["loss"]
    before = AutoModelForCausalLM.from_pretrained(tiny_llama)
    after = AutoModelForCausalLM.from_pretrained(out)
    for (name, p0), (_, p1) in zip(before.named_parameters(), after.named_parameters(), strict=True):
        assert not torch.equal(p0, p1), f"{name} did not change"
    assert (out / "tokenizer.json").is_file() and (out / "checkpoint-20").is_dir()
    summary = read_summary(out)
    assert summary["result"]["template"] == "chat" and summary["trainer"]["learning_rate"] == 3e-3


class _Crash(TrainerCallback):
    """Injects a crash after `step` optimizer steps (a real process kill can't be timed to a step)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("injected crash")


def test_resume_after_a_crash_continues_the_same_curve(tmp_path, tiny_llama, alpaca_small):
    config = _config(tiny_llama, lr_scheduler_type="constant")
    straight = tmp_path / "straight"
    train(config, alpaca_small, straight, max_steps=8)
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="injected crash"):
        train(config, alpaca_small, crashed, max_steps=8, callbacks=[_Crash(7)])
    assert (crashed / "checkpoint-5").is_dir() and not (crashed / "sft.json").exists()
    result = train(config, alpaca_small, crashed, max_steps=8)
    assert result.resumed_from.endswith("checkpoint-5") and result.steps == 8
    a = [r["loss"] for r in _metrics(straight) if "loss" in r]
    b = [r["loss"] for r in _metrics(crashed) if "loss" in r]
    assert [r["step"] for r in _metrics(crashed) if "loss" in r] == list(
        range(1, 9)
    )  # steps 6, 7 not doubled
    assert b == pytest.approx(a, rel=1e-4)


def test_loss_is_normalised_over_tokens_across_accumulation(tmp_path, tiny_llama, alpaca_small):
    """One SGD step over 4 examples of different lengths gives the same weights whether they come as one
    batch of 4 or as 4 accumulated batches of 1: the step's gradient is a mean over its tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    common = {
        "optim": "sgd",
        "lr_scheduler_type": "constant",
        "max_grad_norm": 0.0,
        "train_sampling_strategy": "sequential",
        "learning_rate": 1.0,
    }
    one = train(
        _config(tiny_llama, **common, per_device_train_batch_size=4, gradient_accumulation_steps=1),
        alpaca_small,
        tmp_path / "one",
        max_steps=1,
    )
    acc = train(
        _config(tiny_llama, **common, per_device_train_batch_size=1, gradient_accumulation_steps=4),
        alpaca_small,
        tmp_path / "acc",
        max_steps=1,
    )
    assert one.tokens_trained == acc.tokens_trained
    base = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "one").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "acc").state_dict()
    moved = 0
    for k in base:
        assert torch.allclose(a[k] - base[k], b[k] - base[k], atol=1e-5), k
        moved += int(not torch.equal(a[k], base[k]))
    assert moved > 0


@pytest.mark.parametrize("checkpointing", [False, True])
def test_lora_trains_and_merges_into_a_plain_checkpoint(tmp_path, tiny_llama, alpaca_small, checkpointing):
    """With gradient checkpointing too: frozen embeddings feed the checkpointed layers inputs that need no
    gradient, the classic way adapters end up silently untrained."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from selfinstruct.sft.config import LoraSettings

    trainer = {**FAST, "gradient_checkpointing": checkpointing}
    config = SFTConfig(
        model=str(tiny_llama), max_length=256, lora=LoraSettings(r=4, alpha=8), trainer=trainer
    )
    train(config, alpaca_small, tmp_path / "lora", max_steps=3)
    keys = load_file(tmp_path / "lora" / "model.safetensors").keys()
    assert not [k for k in keys if "lora" in k]
    base = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "lora").state_dict()
    for layer in (0, 1):  # every layer's adapters trained and merged in
        for name in ("self_attn.q_proj", "mlp.down_proj"):
            key = f"model.layers.{layer}.{name}.weight"
            assert not torch.equal(base[key], merged[key]), key
    assert torch.equal(base["model.embed_tokens.weight"], merged["model.embed_tokens.weight"])


def test_config_guards(tmp_path, tiny_llama, alpaca_small):
    from pydantic import ValidationError

    with pytest.raises(SelfInstructError, match=r"`trainer.learning_rat` is not a transformers"):
        train(SFTConfig(model=str(tiny_llama), trainer={"learning_rat": 1e-4}), alpaca_small, tmp_path / "x")
    with pytest.raises(ValidationError, match="trainer.label_smoothing_factor"):
        SFTConfig(trainer={"label_smoothing_factor": 0.1})
    with pytest.raises(ValidationError, match="max_lenght"):
        SFTConfig(max_lenght=512)
    # Packing on CPU would let attention cross examples (or cost a dense mask): refused, naming the field.
    with pytest.raises(SelfInstructError, match="`packing` needs CUDA"):
        train(SFTConfig(model=str(tiny_llama), packing=True), alpaca_small, tmp_path / "y")
    with pytest.raises(SelfInstructError, match="no usable example.*2 longer than `max_length` 8"):
        train(SFTConfig(model=str(tiny_llama), max_length=8), _two_records(tmp_path), tmp_path / "z")


def _two_records(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text(
        '{"instruction": "Say hi.", "output": "Hi there."}\n'
        '{"instruction": "Say bye.", "output": "Bye now."}\n'
    )
    return path
