"""Training a tiny random Llama on CPU: the loss falls, metrics are written, a crash resumes the same run and
only the same run, the loss is normalised over tokens across accumulation steps, LoRA merges, the checkpoint
carries its template, stop token and provenance.

Run: .venv/bin/pytest -q tests/sft/test_train.py
"""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from selfinstruct.errors import SelfInstructError
from selfinstruct.sft.config import SFTConfig
from selfinstruct.sft.train import read_summary, refuse_data_parallel, refuse_shared_gpus, train

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


def test_resume_in_a_later_epoch_keeps_the_length_grouped_order(tmp_path, tiny_llama, alpaca_small):
    """`train_sampling_strategy: group_by_length` (our default) draws each epoch's order from a generator
    seeded by the run's seed and the epoch, not from the global RNG that a checkpoint restore resets: a
    resume in epoch 2 trains the same batches as the uninterrupted run (6 steps an epoch here)."""
    config = _config(tiny_llama, per_device_train_batch_size=8, save_steps=7, lr_scheduler_type="constant")
    kwargs = config.trainer_kwargs(output_dir="x", cuda=False, bf16=False)
    assert kwargs["train_sampling_strategy"] == "group_by_length"
    straight = tmp_path / "straight"
    train(config, alpaca_small, straight, max_steps=10)
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="injected crash"):
        train(config, alpaca_small, crashed, max_steps=10, callbacks=[_Crash(9)])
    result = train(config, alpaca_small, crashed, max_steps=10)
    assert result.resumed_from.endswith("checkpoint-7") and result.steps == 10
    a = [r["loss"] for r in _metrics(straight) if "loss" in r]
    b = [r["loss"] for r in _metrics(crashed) if "loss" in r]
    assert b == pytest.approx(a, rel=1e-4)


@pytest.fixture(scope="session")
def mean_loss_llama(tmp_path_factory, tiny_llama):
    """The tiny Llama as a model class that takes no loss kwargs (`accepts_loss_kwargs = False`, as Qwen2.5-VL,
    PaliGemma or Gemma 4 declare): its own loss is a per-micro-batch mean, so only our loss function makes the
    step's gradient a mean over tokens. With plain Llama the model's own loss already normalises, and a test
    on it alone passes without ours."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    class MeanLossConfig(LlamaConfig):
        model_type = "selfinstruct-mean-loss-llama"

    class MeanLossLlama(LlamaForCausalLM):
        config_class = MeanLossConfig
        accepts_loss_kwargs = False

    AutoConfig.register(MeanLossConfig.model_type, MeanLossConfig, exist_ok=True)
    AutoModelForCausalLM.register(MeanLossConfig, MeanLossLlama, exist_ok=True)
    llama = LlamaForCausalLM.from_pretrained(tiny_llama)
    model = MeanLossLlama(MeanLossConfig(**llama.config.to_diff_dict()))
    model.load_state_dict(llama.state_dict())
    path = tmp_path_factory.mktemp("mean-loss-llama")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(path)
    return path


@pytest.mark.parametrize("student", ["tiny_llama", "mean_loss_llama"])
def test_loss_is_normalised_over_tokens_across_accumulation(tmp_path, request, student, alpaca_small):
    """One SGD step over 4 examples of different lengths gives the same weights whether they come as one
    batch of 4 or as 4 accumulated batches of 1: the step's gradient is a mean over its tokens. Fails for
    `mean_loss_llama` without `compute_loss_func=token_loss`."""
    import torch
    from transformers import AutoModelForCausalLM

    tiny_llama = request.getfixturevalue(student)

    common = {
        "optim": "sgd",
        "lr_scheduler_type": "constant",
        "max_grad_norm": 0.0,
        "train_sampling_strategy": "sequential",
        "learning_rate": 1.0,
        # float32 on any device: on a GPU the default bf16 rounds the gradients far beyond the 1e-5 below
        "bf16": False,
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


def test_resume_only_the_same_run(tmp_path, tiny_llama, alpaca_small):
    """A different data set in the same --out is refused (naming what changed), resumed with `force`, and
    `fresh` removes the old checkpoints and files but never a file of the user's."""
    out = tmp_path / "student"
    train(_config(tiny_llama, save_steps=2), alpaca_small, out, max_steps=2)
    assert (out / "checkpoint-2").is_dir() and (out / "fingerprint.json").is_file()
    other = _two_records(tmp_path)
    with pytest.raises(SelfInstructError, match=r"different training run \(data.examples_sha256: '"):
        train(_config(tiny_llama, save_steps=2), other, out, max_steps=4)
    with pytest.raises(SelfInstructError, match=r"trainer.learning_rate: 0.003 -> 0.001"):
        train(_config(tiny_llama, save_steps=2, learning_rate=1e-3), alpaca_small, out, max_steps=2)
    forced = train(_config(tiny_llama, save_steps=2), other, out, max_steps=3, force=True)
    assert forced.resumed_from.endswith("checkpoint-2") and forced.steps == 3
    (out / "notes.txt").write_text("mine")
    fresh = train(_config(tiny_llama, save_steps=5), alpaca_small, out, max_steps=1, fresh=True)
    assert fresh.resumed_from is None and fresh.steps == 1
    # Only the new run's final checkpoint; the user's file untouched.
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]
    assert (out / "notes.txt").read_text() == "mine"
    assert [r["step"] for r in _metrics(out) if "loss" in r] == [1]


def test_a_foreign_model_directory_is_not_trained_over(tmp_path, tiny_llama, alpaca_small):
    with pytest.raises(SelfInstructError, match="did not record"):
        train(_config(tiny_llama), alpaca_small, tiny_llama, max_steps=1)


def test_a_half_written_checkpoint_is_not_resumed(tmp_path, tiny_llama, alpaca_small):
    """A kill during a checkpoint save leaves checkpoint-N without trainer_state.json (written last): the
    next run resumes from the last complete one and removes the cut one."""
    import shutil

    out = tmp_path / "student"
    with pytest.raises(RuntimeError, match="injected crash"):
        train(_config(tiny_llama, save_steps=2), alpaca_small, out, max_steps=8, callbacks=[_Crash(5)])
    shutil.copytree(out / "checkpoint-4", out / "checkpoint-6")
    (out / "checkpoint-6" / "trainer_state.json").unlink()
    shutil.copytree(out / "checkpoint-4", out / "checkpoint-7")
    # The Trainer writes trainer_state.json in place: a kill during that write leaves it torn.
    state = out / "checkpoint-7" / "trainer_state.json"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    result = train(_config(tiny_llama, save_steps=2), alpaca_small, out, max_steps=8)
    assert result.resumed_from.endswith("checkpoint-4") and result.steps == 8
    assert not (out / "checkpoint-7").exists()


def test_a_diverging_run_stops_with_an_error_and_saves_no_student(tmp_path, tiny_llama, alpaca_small):
    out = tmp_path / "student"
    with pytest.raises(SelfInstructError, match=r"diverged at step \d+: .* is (nan|inf).*learning_rate"):
        train(_config(tiny_llama, learning_rate=1e8), alpaca_small, out, max_steps=6)
    assert not (out / "sft.json").exists() and not (out / "model.safetensors").exists()


def _held_out_long(tmp_path, n_long):
    """40 records; `n_long` of those held out for `validation: 0.25` are too long for `max_length` 256."""
    from selfinstruct.sft.train import held_out

    recs, long_left = [], n_long
    for i in range(40):
        rid = f"ex{i}"
        long = held_out(rid, 0.25) and long_left > 0
        long_left -= long
        recs.append({"id": rid, "instruction": "Say a word.", "output": "word " * (400 if long else 1)})
    path = tmp_path / "held.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path, sum(held_out(r["id"], 0.25) for r in recs)


def test_held_out_examples_that_are_too_long_are_counted_as_skipped(tmp_path, tiny_llama):
    data, held = _held_out_long(tmp_path, 1)
    config = SFTConfig(model=str(tiny_llama), max_length=256, validation=0.25, trainer=FAST)
    result = train(config, data, tmp_path / "a", max_steps=1)
    assert held > 1 and result.skipped == {"too_long": 1}
    assert (result.used, result.validation_examples) == (40 - held, held - 1)
    data, held = _held_out_long(tmp_path, 40)
    with pytest.raises(
        SelfInstructError, match=rf"all {held} examples held out for `validation`.*max_length"
    ):
        train(config, data, tmp_path / "b", max_steps=1)


def test_a_rerun_of_a_finished_max_steps_run_trains_no_further(tmp_path, tiny_llama, alpaca_small):
    """Rerunning a finished `--max-steps` command, or resuming from its final checkpoint after a kill during
    the final save, ends with the same steps, curve and weights (the Trainer would train one step more)."""
    out = tmp_path / "student"
    config = _config(tiny_llama, save_steps=5)
    first = train(config, alpaca_small, out, max_steps=2)
    weights = (out / "model.safetensors").read_bytes()
    for killed_in_final_save in (False, True):
        if killed_in_final_save:
            (out / "sft.json").unlink()
            (out / "model.safetensors").unlink()
        again = train(config, alpaca_small, out, max_steps=2)
        assert again.steps == 2 and again.final_loss == first.final_loss
        assert again.tokens_trained == first.tokens_trained
        assert [r["step"] for r in _metrics(out) if "loss" in r] == [1, 2]
        assert (out / "model.safetensors").read_bytes() == weights
        assert read_summary(out)["result"]["steps"] == 2


def test_a_stop_leaves_an_unfinished_resumable_directory(tmp_path, tiny_llama, alpaca_small):
    from selfinstruct.signals import Stopped

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Stopped(2)  # what the SIGINT handler raises in the main thread

    out = tmp_path / "student"
    train(_config(tiny_llama), alpaca_small, out, max_steps=2)  # a finished student first
    assert (out / "sft.json").is_file()
    with pytest.raises(Stopped):
        train(
            _config(tiny_llama, save_steps=2), alpaca_small, out, max_steps=4, force=True, callbacks=[Stop()]
        )
    # No sft.json: the directory does not claim a finished student; the checkpoint is complete.
    assert not (out / "sft.json").exists() and (out / "checkpoint-2" / "trainer_state.json").is_file()


def test_checkpoint_carries_template_stop_and_provenance(tmp_path, tiny_llama, alpaca_small):
    """Plain template: the saved chat template renders the trained prompt, generation_config stops at the
    trained stop token, sft.json and README.md say what trained it."""
    from transformers import AutoTokenizer, GenerationConfig

    from selfinstruct.sft.render import plain_prompt

    out = tmp_path / "student"
    config = SFTConfig(model=str(tiny_llama), max_length=256, template="plain", validation=0.2, trainer=FAST)
    result = train(config, alpaca_small, out, max_steps=3)
    tok = AutoTokenizer.from_pretrained(out)
    turn = [{"role": "user", "content": "Name a colour."}]
    assert tok.apply_chat_template(turn, add_generation_prompt=True, tokenize=False) == plain_prompt(
        "Name a colour."
    )
    eos = GenerationConfig.from_pretrained(out).eos_token_id
    assert tok.convert_tokens_to_ids(result.stop_token) in (eos if isinstance(eos, list) else [eos])
    # The validation split: held out, an eval loss in metrics.jsonl and the result.
    assert 0 < result.validation_examples < 48 and result.used + result.validation_examples == 48
    assert result.eval_loss is not None and any("eval_loss" in r for r in _metrics(out))
    summary = read_summary(out)
    assert summary["fingerprint"]["data"]["examples_sha256"] and summary["versions"]["transformers"]
    assert summary["fingerprint"]["base_model"]["path"] == str(tiny_llama.resolve())
    assert "git_revision" in summary and summary["eos_token_id"]
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md"} <= set(
        summary["files"]
    )
    card = (out / "README.md").read_text()
    assert summary["fingerprint"]["data"]["examples_sha256"] in card and "## Task" in card


def test_lora_default_learning_rate_and_floor():
    import tomllib
    from pathlib import Path

    from selfinstruct.sft.config import LoraSettings
    from selfinstruct.sft.train import MIN_TRANSFORMERS

    kw = SFTConfig(lora=LoraSettings()).trainer_kwargs(output_dir="o", cuda=False, bf16=False)
    assert kw["learning_rate"] == 2e-4
    kw = SFTConfig(lora=LoraSettings(), trainer={"learning_rate": 1e-4}).trainer_kwargs(
        output_dir="o", cuda=False, bf16=False
    )
    assert kw["learning_rate"] == 1e-4
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert f"transformers>={MIN_TRANSFORMERS}" in pyproject["project"]["dependencies"]


def test_old_transformers_is_named_not_blamed_on_the_trainer_block(monkeypatch):
    import importlib.metadata

    from selfinstruct.sft.train import check_transformers

    check_transformers()  # the installed one passes
    # A fake: an old transformers cannot be installed beside the real one in this venv.
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "4.57.1")
    with pytest.raises(SelfInstructError, match=r"needs transformers>=5.5.4, found 4.57.1"):
        check_transformers()


def test_data_parallel_is_refused_with_the_launch_command():
    refuse_data_parallel(1)
    with pytest.raises(SelfInstructError, match="torchrun --nproc_per_node 4 -m selfinstruct train"):
        refuse_data_parallel(4)


def test_more_processes_than_gpus_are_refused_with_the_launch_command():
    refuse_shared_gpus(2, 2)
    with pytest.raises(
        SelfInstructError, match="2 processes on this machine share 1 GPU; .*--nproc_per_node 1"
    ):
        refuse_shared_gpus(2, 1)
