"""The SFT config: our own fields, plus a `trainer:` block passed unchanged to `TrainingArguments`.

Pure data and validation; nothing here imports torch or transformers at module level (STYLE rules 10, 17).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from selfinstruct.errors import SelfInstructError

# Defaults we change from `TrainingArguments`, in one commented block (nanoGPT style). Anything the user puts
# under `trainer:` wins over these. Alpaca's recipe (Taori et al. 2023, train.py README) is lr 2e-5, cosine,
# warmup ratio 0.03, 3 epochs, batch 128; the batch is scaled down so that a run of a few hundred examples
# still takes more than a handful of optimizer steps.
TRAINER_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-5,  # transformers: 5e-5
    "lr_scheduler_type": "cosine",  # transformers: linear
    "warmup_steps": 0.03,  # a ratio of total steps (floats < 1 are ratios); transformers: 0
    "num_train_epochs": 3,  # same as transformers; listed because Alpaca's recipe says so too
    "per_device_train_batch_size": 4,  # transformers: 8
    "gradient_accumulation_steps": 4,  # transformers: 1; 4 x 4 = 16 examples a step on one device
    "train_sampling_strategy": "group_by_length",  # transformers: random; less padding, same data per epoch
    "logging_steps": 1,  # transformers: 500; metrics.jsonl should hold a loss curve even for 20 steps
    "save_steps": 200,  # transformers: 500; small runs still leave a checkpoint to resume from
    "save_total_limit": 2,  # transformers: keep all
    "remove_unused_columns": False,  # our dataset already holds exactly the model's inputs
    "include_num_input_tokens_seen": "non_padding",  # transformers: no; feeds the "tokens trained" summary
    # transformers: None = True unless gradient checkpointing; every trainable weight of ours is used in each
    # forward, and the search costs a graph traversal per step
    "ddp_find_unused_parameters": False,
    "disable_tqdm": True,  # the CLI draws its own progress bar
    "report_to": "none",
}

# LoRA trains a few new low-rank matrices, one of each pair starting at zero, so its update is far smaller per
# step than a full fine-tune's at the same rate: 2e-5 barely moves it. 2e-4 is the rate the QLoRA paper
# (Dettmers et al. 2023) used for its 7B and 13B models, and peft's and TRL's LoRA examples use the same
# order. A `trainer.learning_rate` of the user's still wins.
LORA_LEARNING_RATE = 2e-4

# Trainer settings we must own, because a different value would silently train on the wrong thing.
_OWNED = {
    "output_dir": "set by `--out`",
    "label_names": "labels are built by selfinstruct.sft.data",
    # With our token-normalised loss function the Trainer would skip its label smoother without a word.
    "label_smoothing_factor": "label smoothing is not supported by the token-normalised loss",
}


# `trainer:` values TrainingArguments takes as they are but training then fails on, deep in torch, after the
# model has loaded: checked here so the error names the field (and its line in a config file).
_POSITIVE_INTS = ("per_device_train_batch_size", "gradient_accumulation_steps")


class TrainerFieldError(SelfInstructError, ValueError):
    """A bad `trainer.KEY`. A ValueError, so pydantic reports it as the `trainer` field's error; `field` and
    `detail` let the CLI point at the key's own line in a config file."""

    def __init__(self, key: str, detail: str):
        self.field, self.detail = f"trainer.{key}", detail
        super().__init__(f"`{self.field}` {detail}")


def _number(key: str, value: Any, *, positive: bool) -> float:
    """A finite number (YAML reads `2e-5`, without a dot, as a string: accepted when it parses)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TrainerFieldError(key, f"must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise TrainerFieldError(key, f"must be {'above' if positive else 'at least'} 0, got {value!r}")
    return value


class LoraSettings(BaseModel):
    """Low-rank adapters through peft (the `lora` extra). Merged into the weights on save by default,
    so the output is a plain checkpoint vLLM loads."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="Rank of each adapter.")
    alpha: int = Field(32, ge=1, description="Scaling numerator; the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get adapters: peft's 'all-linear' or a list of module names."
    )
    merge: bool = Field(
        True, description="Merge the adapters into the base weights on save (False saves the adapter only)."
    )


class SFTConfig(BaseModel):
    """How to fine-tune a student on instruction data, with the loss on response tokens only.

    Fields (ours):
      model, max_length, template, packing, attn_implementation, lora, validation, trainer.

    Defaults we change from transformers' `TrainingArguments` (override any of them under `trainer:`):
      learning_rate 2e-5 (5e-5), lr_scheduler_type cosine (linear), warmup_steps 0.03 = 3% of steps (0),
      num_train_epochs 3 (same), per_device_train_batch_size 4 (8), gradient_accumulation_steps 4 (1),
      train_sampling_strategy group_by_length (random), logging_steps 1 (500), save_steps 200 (500),
      save_total_limit 2 (none), remove_unused_columns False (True), ddp_find_unused_parameters False
      (None), include_num_input_tokens_seen non_padding (no), disable_tqdm True (auto),
      dataloader_pin_memory False without CUDA (True), bf16 True on a CUDA device that supports it (False);
      with `lora`, learning_rate 2e-4; with `validation`, eval_strategy steps (no), eval_steps = save_steps,
      prediction_loss_only True (False); under torchrun without CUDA, use_cpu True and ddp_backend gloo.

    Always ours, refused under `trainer:`: output_dir, label_names, label_smoothing_factor.
    The loss is a sum over supervised tokens divided by the supervised tokens of the whole accumulated batch
    (all micro-batches, all devices), whatever the batch shapes.
    """

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, description="Student checkpoint (a Hugging Face directory); None means the embedded model."
    )
    max_length: int = Field(
        1024, ge=8, description="Most tokens of prompt + response; longer examples are skipped and counted."
    )
    template: Literal["auto", "chat", "plain"] = Field(
        "auto",
        description="How to render an example: the tokenizer's chat template ('chat'), our own instruction "
        "template ('plain'), or 'auto' = chat when the tokenizer has a chat template.",
    )
    packing: bool | None = Field(
        None,
        description="Padding-free packing with per-example position ids. Needs CUDA and a varlen "
        "flash-attention kernel (attention must never cross examples); None = on exactly then.",
    )
    attn_implementation: str | None = Field(
        None,
        description="Attention kernel for the student; None = flash_attention_2 when installed on CUDA, "
        "else sdpa.",
    )
    lora: LoraSettings | None = Field(None, description="Train LoRA adapters instead of every weight.")
    validation: float | None = Field(
        None,
        gt=0.0,
        lt=0.5,
        description="Share of the examples held out to report an eval loss (in metrics.jsonl at every "
        "`trainer.eval_steps`, default `save_steps`, and at the end); chosen by example id, so the same "
        "examples stay out on resume. None: train on all.",
    )
    trainer: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed unchanged to transformers.TrainingArguments (over our defaults).",
    )

    @field_validator("trainer")
    @classmethod
    def _checked(cls, v: dict[str, Any]) -> dict[str, Any]:
        v = dict(v)
        for key in v:
            if key in _OWNED:
                raise TrainerFieldError(key, f"cannot be set: {_OWNED[key]}")
        for key in _POSITIVE_INTS:
            if key in v and (isinstance(v[key], bool) or not isinstance(v[key], int) or v[key] < 1):
                raise TrainerFieldError(key, f"must be a positive integer, got {v[key]!r}")
        if "seed" in v and (isinstance(v["seed"], bool) or not isinstance(v["seed"], int)):
            raise TrainerFieldError("seed", f"must be an integer, got {v['seed']!r}")
        if "learning_rate" in v:
            v["learning_rate"] = _number("learning_rate", v["learning_rate"], positive=False)
        if "num_train_epochs" in v:
            v["num_train_epochs"] = _number("num_train_epochs", v["num_train_epochs"], positive=True)
        return v

    def trainer_kwargs(self, *, output_dir: str, cuda: bool, bf16: bool) -> dict[str, Any]:
        """Our defaults, then the user's `trainer:` block, then the fields we own. `bf16`: the device
        supports it."""
        kwargs = dict(TRAINER_DEFAULTS)
        if self.lora is not None:
            kwargs["learning_rate"] = LORA_LEARNING_RATE
        if self.validation is not None:
            kwargs["eval_strategy"] = "steps"
        if bf16:
            kwargs["bf16"] = True
        if not cuda:
            kwargs["dataloader_pin_memory"] = False  # pinning needs an accelerator; it only warns without one
        kwargs.update(self.trainer)
        if self.validation is not None:
            kwargs.setdefault("eval_steps", kwargs["save_steps"])
            kwargs.setdefault("prediction_loss_only", True)  # else evaluation gathers every logit
        kwargs["output_dir"] = output_dir
        return kwargs


def check_trainer_keys(config: SFTConfig) -> None:
    """Refuse unknown `trainer:` keys by name before transformers turns them into a TypeError."""
    import dataclasses

    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    for key in config.trainer:
        if key not in known:
            raise TrainerFieldError(key, "is not a transformers.TrainingArguments field")
