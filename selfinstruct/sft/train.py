"""Masked SFT on the transformers `Trainer`: read data, tokenize with labels, train, save for vLLM.

The Trainer brings multi-GPU (torchrun/accelerate), mixed precision, gradient accumulation, checkpoints and
resume. We bring the labels (data.py), the loss normalisation, the batch shapes and the metrics file.
This module knows nothing of how the data was generated.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from selfinstruct.errors import SelfInstructError
from selfinstruct.models import default_model_dir
from selfinstruct.sft.config import SFTConfig, check_trainer_keys
from selfinstruct.sft.data import PackCollator, PadCollator, encode_all, load_examples, preview
from selfinstruct.sft.render import Renderer, load_tokenizer
from selfinstruct.store import repair_torn_tail, write_json_atomic

SUMMARY = "sft.json"  # written last into the output directory; eval reads the template and base from it
METRICS = "metrics.jsonl"


class TrainResult(BaseModel):
    """What a training run did; printed by the CLI and stored in DIR/sft.json."""

    out: str
    base_model: str
    template: str
    stop_token: str
    examples: int
    used: int
    skipped: dict[str, int] = Field(default_factory=dict)
    neutralised_special_tokens: int = 0
    prompt_tokens: int = Field(0, description="Prompt tokens in the used examples (one epoch).")
    response_tokens: int = Field(0, description="Supervised tokens in the used examples (one epoch).")
    tokens_trained: int = Field(0, description="Non-pad tokens through the model over the whole run.")
    steps: int = 0
    epochs: float = 0.0
    final_loss: float | None = None
    packing: bool = False
    attn_implementation: str = ""
    resumed_from: str | None = None
    seconds: float = 0.0


# ---- loss --------------------------------------------------------------------------------------------------


def token_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Summed next-token cross-entropy over supervised tokens, divided by the supervised tokens of the
    whole optimizer step.

    The Trainer counts `num_items_in_batch` over every micro-batch of an accumulation step (and every
    device), so a step's gradient is the mean over its tokens whatever the micro-batch shapes; a per-batch
    mean would weight a short answer's tokens more when it shares a micro-batch with few others
    (transformers#34242). Passing this as `compute_loss_func` also makes the Trainer treat the loss as
    already scaled for accumulation, for any model class, rather than relying on the model's own loss.
    """
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    logits = logits[..., :-1, :].float()
    targets = labels[..., 1:].to(logits.device)
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    n = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum()
    return total / n


# ---- callbacks ---------------------------------------------------------------------------------------------


def _callbacks(metrics_path: Path, progress: Callable[[int, int, dict], None] | None) -> list[Any]:
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """Appends every log (loss, grad norm, lr) as one JSON line: the loss curve survives a crash."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": state.epoch, **logs, "time": round(time.time(), 3)}
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if progress is not None:
                progress(state.global_step, state.max_steps, logs)

        def on_step_end(self, args, state, control, **kwargs):
            if progress is not None and state.is_world_process_zero:
                progress(state.global_step, state.max_steps, {})

    return [MetricsCallback()]


def _trim_metrics(path: Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint: those steps are trained again."""
    if not path.is_file():
        return
    repair_torn_tail(path)  # a kill mid-append leaves a half row
    keep = [
        ln
        for ln in path.read_text(encoding="utf-8").splitlines()
        if ln.strip() and json.loads(ln).get("step", 0) <= step
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")
    os.replace(tmp, path)


# ---- the run -----------------------------------------------------------------------------------------------


def _attention(config: SFTConfig) -> tuple[str, bool, bool]:
    """(attn_implementation, cuda, packing)."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    flash = importlib.util.find_spec("flash_attn") is not None
    attn = config.attn_implementation or ("flash_attention_2" if cuda and flash else "sdpa")
    varlen = cuda and "flash" in attn
    packing = varlen if config.packing is None else config.packing
    # Packing without a varlen kernel would either let examples attend to each other or build a dense
    # block mask that costs more than the padding it saves: refuse instead of quietly doing either.
    if packing and not varlen:
        raise SelfInstructError(
            f"`packing` needs CUDA and a flash-attention kernel (`attn_implementation: flash_attention_2`), "
            f"got cuda={cuda}, attn_implementation={attn}; set `packing: false`"
        )
    return attn, cuda, packing


def _stop_ids_from_generation_config(model_path: str) -> tuple[int, ...]:
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:
        return ()
    return tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ())


def train(
    config: SFTConfig,
    data: str | Path,
    out: str | Path,
    *,
    max_steps: int | None = None,
    epochs: float | None = None,
    resume: bool = True,
    progress: Callable[[int, int, dict], None] | None = None,
    callbacks: Sequence[Any] = (),
    show: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Train `config.model` on `data` (a run directory or an alpaca/messages file) into `out`.

    `out` receives the checkpoint and tokenizer (loadable by vLLM), checkpoint-N/ directories, metrics.jsonl
    and sft.json. With `resume`, an existing checkpoint in `out` is continued rather than started over.
    `callbacks` are extra TrainerCallbacks (tests use one to inject a crash); `show` receives a rich preview
    of the first example's supervised tokens before training starts.
    """
    import torch
    from transformers import AutoModelForCausalLM, PrinterCallback, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    t0 = time.perf_counter()
    check_trainer_keys(config)
    out = Path(out)
    model_path = str(config.model or default_model_dir())
    if not Path(model_path, "config.json").is_file():
        raise SelfInstructError(f"`model` {model_path} is not a Hugging Face checkpoint (no config.json)")
    model_path = str(Path(model_path).resolve())  # sft.json records it; eval may run from another directory

    attn, cuda, packing = _attention(config)

    # ---- data
    examples = load_examples(data)
    tokenizer = load_tokenizer(model_path)
    renderer = Renderer(
        tokenizer, template=config.template, extra_stop_ids=_stop_ids_from_generation_config(model_path)
    )
    rows, stats = encode_all(examples, renderer, config.max_length)
    if not rows:
        raise SelfInstructError(
            f"no usable example in {data}: {stats.counts.get('skipped_too_long', 0)} longer than "
            f"`max_length` {config.max_length}, "
            f"{stats.counts.get('skipped_empty_output', 0)} with an empty output"
        )
    if show is not None:
        show(preview(rows[0], tokenizer))

    # ---- model
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_path, attn_implementation=attn, dtype=torch.float32
        )
    except (OSError, ValueError, ImportError) as e:
        raise SelfInstructError(f"cannot load `model` {model_path}: {str(e).splitlines()[0]}") from None
    if config.lora is not None:
        model = _with_lora(model, config)

    # ---- trainer
    out.mkdir(parents=True, exist_ok=True)
    kwargs = config.trainer_kwargs(
        output_dir=str(out), cuda=cuda, bf16=cuda and torch.cuda.is_bf16_supported()
    )
    if epochs is not None:
        kwargs["num_train_epochs"] = epochs
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    if packing and kwargs.get("include_num_input_tokens_seen") == "non_padding":
        # A packed row has no padding and no attention mask; the Trainer would then count tokens that are not
        # the pad id, and pad may equal EOS, so every trained stop token would go uncounted.
        kwargs["include_num_input_tokens_seen"] = "all"
    try:
        args = TrainingArguments(**kwargs)
    except (TypeError, ValueError) as e:
        raise SelfInstructError(f"`trainer`: {str(e).splitlines()[0]}") from None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else renderer.stop_id
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=PackCollator() if packing else PadCollator(pad_id),
        processing_class=tokenizer,
        compute_loss_func=token_loss,
        callbacks=_callbacks(out / METRICS, progress) + list(callbacks),
    )
    # With tqdm off the Trainer prints every log dict to stdout; metrics.jsonl and `progress` have them, and
    # stdout belongs to the CLI (`--json` prints exactly one object).
    trainer.remove_callback(PrinterCallback)
    last = get_last_checkpoint(str(out)) if resume else None
    if last is not None:
        _trim_metrics(out / METRICS, int(Path(last).name.split("-")[-1]))
    elif (out / METRICS).exists():
        (out / METRICS).unlink()  # a fresh run starts a fresh curve
    trainer.train(resume_from_checkpoint=last)

    # ---- save
    _save(trainer, tokenizer, renderer, out, merge=config.lora is None or config.lora.merge)
    state = trainer.state
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    counts = stats.counts
    result = TrainResult(
        out=str(out),
        base_model=model_path,
        template=renderer.mode,
        stop_token=renderer.stop_token,
        examples=counts["total"],
        used=counts["kept"],
        skipped={k.removeprefix("skipped_"): v for k, v in counts.items() if k.startswith("skipped_")},
        neutralised_special_tokens=counts.get("neutralised_special_tokens", 0),
        prompt_tokens=counts["prompt_tokens"],
        response_tokens=counts["response_tokens"],
        tokens_trained=int(state.num_input_tokens_seen),
        steps=state.global_step,
        epochs=state.epoch or 0.0,
        final_loss=losses[-1] if losses else None,
        packing=packing,
        attn_implementation=attn,
        resumed_from=last,
        seconds=round(time.perf_counter() - t0, 2),
    )
    summary = {"result": result.model_dump(), "config": config.model_dump(), "trainer": _jsonable(kwargs)}
    write_json_atomic(out / SUMMARY, summary)
    return result


def _with_lora(model: Any, config: SFTConfig) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise SelfInstructError("`lora` needs peft: pip install 'selfinstruct[lora]'") from None
    lc = config.lora
    return get_peft_model(
        model,
        LoraConfig(
            r=lc.r,
            lora_alpha=lc.alpha,
            lora_dropout=lc.dropout,
            target_modules=lc.target_modules,
            task_type="CAUSAL_LM",
        ),
    )


def _save(trainer: Any, tokenizer: Any, renderer: Renderer, out: Path, *, merge: bool) -> None:
    model = trainer.model
    if hasattr(model, "merge_and_unload") and merge:
        model = model.merge_and_unload()
    # vLLM stops at the ids in generation_config.eos_token_id; the stop token we trained must be one of them.
    gen = model.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    eos = [i for i in eos if i is not None]
    if renderer.stop_id not in eos:
        gen.eos_token_id = eos + [renderer.stop_id] if eos else renderer.stop_id
    if trainer.args.should_save:
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))


def _jsonable(d: dict) -> dict:
    return {
        k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
        for k, v in d.items()
    }


def read_summary(model_dir: str | Path) -> dict | None:
    """DIR/sft.json of a trained student, or None for a model this package did not train."""
    path = Path(model_dir) / SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
