"""Masked SFT on the transformers `Trainer`: read data, tokenize with labels, train, save for vLLM.

The Trainer brings multi-process training (torchrun/accelerate), mixed precision, gradient accumulation,
checkpoints and resume. We bring the labels (data.py), the loss normalisation, the batch shapes, the run's
identity (identity.py), the metrics file and a checkpoint that serves itself (save.py). Under torchrun every
process runs this function; only the main one writes our own files. This module knows nothing of how the data
was generated.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from selfinstruct import signals
from selfinstruct.errors import InputError, SelfInstructError, write_errors
from selfinstruct.jsonl import read_json
from selfinstruct.modeldir import require_dir
from selfinstruct.models import default_model_dir
from selfinstruct.schema import Example
from selfinstruct.sft import identity
from selfinstruct.sft.config import SFTConfig, check_trainer_keys
from selfinstruct.sft.data import PackCollator, PadCollator, encode_all, load_examples, preview
from selfinstruct.sft.identity import CARD, FINGERPRINT, METRICS, SUMMARY
from selfinstruct.sft.metrics import callbacks as metric_callbacks
from selfinstruct.sft.metrics import trim_metrics
from selfinstruct.sft.render import Renderer, load_tokenizer
from selfinstruct.sft.save import model_card, save_student
from selfinstruct.store import atomic_file, write_json_atomic

# The oldest transformers that trains correctly with our defaults, found by running tests/sft/test_train.py
# against older releases: `train_sampling_strategy` arrived in 5.2, but 5.2.0-5.5.3 let Accelerate divide
# each accumulated micro-batch's loss by the accumulation steps a second time (our loss is already a mean over
# the whole step), so with accumulation every step came out 1/steps as large; 5.5.4 sets Accelerate's own
# accumulation to 1. pyproject.toml declares the same floor; a test checks that they agree.
MIN_TRANSFORMERS = "5.5.4"


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
    validation_examples: int = Field(0, description="Examples held out for the eval loss.")
    eval_loss: float | None = None
    packing: bool = False
    attn_implementation: str = ""
    adapter_only: bool = Field(False, description="LoRA saved unmerged: DIR holds the adapter, not a model.")
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


# ---- the run -----------------------------------------------------------------------------------------------


def _attention(config: SFTConfig) -> tuple[str, bool, bool]:
    """(attn_implementation, cuda, packing)."""
    import importlib.util

    import torch

    # `trainer: {use_cpu: true}` trains on the CPU of a GPU machine: the CPU's defaults then (float32, gloo)
    cuda = torch.cuda.is_available() and not config.trainer.get("use_cpu", False)
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


def check_transformers() -> None:
    """An older transformers fails on our defaults with a TypeError that seems to blame the `trainer:` block."""
    from importlib.metadata import version

    from packaging.version import Version

    found = version("transformers")
    if Version(found) < Version(MIN_TRANSFORMERS):
        raise SelfInstructError(
            f"`train` needs transformers>={MIN_TRANSFORMERS}, found {found}: "
            f"pip install 'transformers>={MIN_TRANSFORMERS}'"
        )


def refuse_data_parallel(n_gpu: int) -> None:
    # One process that sees several GPUs makes the Trainer wrap the model in DataParallel, which splits each
    # batch but not our token count: the loss and gradients come out scaled by the GPU count.
    if n_gpu > 1:
        raise SelfInstructError(
            f"{n_gpu} GPUs are visible to one process; launch one process per GPU with "
            f"`torchrun --nproc_per_node {n_gpu} -m selfinstruct train ...` or `accelerate launch`, "
            f"or make one GPU visible (CUDA_VISIBLE_DEVICES=0)"
        )


def refuse_shared_gpus(processes_here: int, gpus: int) -> None:
    # torchrun puts process k of a machine on GPU k; with more processes than GPUs the extra ones fail deep in
    # CUDA ("invalid device ordinal") after every process has loaded the model.
    if processes_here > gpus:
        raise SelfInstructError(
            f"{processes_here} processes on this machine share {gpus} GPU{'s' if gpus != 1 else ''}; launch one "
            f"process per GPU: `torchrun --nproc_per_node {gpus} -m selfinstruct train ...`"
        )


def held_out(example_id: str, share: float) -> bool:
    """Whether an example is in the validation split: by a hash of its id, so the split survives a resume
    and does not depend on the order of the file."""
    return int(hashlib.sha256(example_id.encode("utf-8")).hexdigest()[:8], 16) < share * 16**8


def split(examples: list[Example], share: float | None, data: str | Path) -> tuple[list, list]:
    if share is None:
        return examples, []
    val = [ex for ex in examples if held_out(ex.id, share)]
    rest = [ex for ex in examples if not held_out(ex.id, share)]
    if not val or not rest:
        raise SelfInstructError(
            f"`validation` {share} of the {len(examples)} examples in {data} leaves "
            f"{len(val)} for validation and {len(rest)} for training; change `validation` or add data"
        )
    return rest, val


def _trainer_class() -> type:
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class _EpochSeededLengthGroupedSampler(LengthGroupedSampler):
        """transformers' length-grouped order, drawn from a generator seeded by the run's seed and the epoch.
        Its own draws from the global RNG, which a resume resets to the checkpoint's state only after the
        resumed epoch's order is drawn: a resume in epoch 2 or later would train other batches than an
        uninterrupted run. The dataloader calls `set_epoch` before each epoch (accelerate forwards it)."""

        def __init__(self, batch_size: int, *, lengths: list[int], seed: int):
            super().__init__(batch_size, lengths=lengths)
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=g))

    class SafeTrainer(Trainer):
        """A stop (SIGINT/SIGTERM) that arrives while a checkpoint is written waits for the checkpoint to be
        complete, so the output directory never ends with a half-written last checkpoint of ours."""

        def _save_checkpoint(self, *args, **kwargs):
            with signals.critical():
                return super()._save_checkpoint(*args, **kwargs)

        def _get_train_sampler(self, *args, **kwargs):
            sampler = super()._get_train_sampler(*args, **kwargs)
            if type(sampler) is LengthGroupedSampler:
                return _EpochSeededLengthGroupedSampler(
                    sampler.batch_size, lengths=sampler.lengths, seed=self.args.seed
                )
            return sampler

        def training_step(self, *args, **kwargs):
            # A non-finite loss means the weights already are (or this batch's gradients will make them)
            # NaN or inf; the Trainer would log a stand-in loss and save that student as finished.
            loss = super().training_step(*args, **kwargs)
            _check_finite("the loss", float(loss), self.state.global_step + 1)
            return loss

        def log(self, logs, *args, **kwargs):
            # the gradient norm of the last step: NaN or inf there means the update just made the weights so
            if "grad_norm" in logs:
                _check_finite("the gradient norm", float(logs["grad_norm"]), self.state.global_step)
            return super().log(logs, *args, **kwargs)

    return SafeTrainer


def _check_finite(what: str, value: float, step: int) -> None:
    if not math.isfinite(value):
        raise SelfInstructError(
            f"training diverged at step {step}: {what} is {value}; lower `trainer.learning_rate` or set "
            f"`trainer.max_grad_norm`, then train again with --fresh"
        )


def _prepare(out: Path, fp: dict, *, fresh: bool) -> str | None:
    """Main process only, before training: clear (--fresh) or tidy `out`, record the run's fingerprint, and
    cut the metrics back to the checkpoint training resumes from. Returns that checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    if fresh:
        identity.clear(out)
    else:
        for ckpt in identity.checkpoints(out):
            if not identity.complete(ckpt):
                identity.remove(ckpt)  # cut off mid-save by a kill: never resume from it, never rotate by it
        # Until this run saves, the directory holds no finished student.
        (out / SUMMARY).unlink(missing_ok=True)
    write_json_atomic(out / FINGERPRINT, fp)
    last = identity.last_complete_checkpoint(out)
    if last is not None:
        trim_metrics(out / METRICS, int(last.name.split("-")[-1]))
    else:
        (out / METRICS).unlink(missing_ok=True)  # a fresh run starts a fresh curve
    return str(last) if last else None


def train(
    config: SFTConfig,
    data: str | Path,
    out: str | Path,
    *,
    max_steps: int | None = None,
    epochs: float | None = None,
    fresh: bool = False,
    force: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
    callbacks: Sequence[Any] = (),
    show: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Train `config.model` on `data` (a run directory or an alpaca/messages file) into `out`.

    `out` receives the checkpoint and tokenizer (loadable by vLLM, with the chat template and stop token it
    was trained with), checkpoint-N/ directories, fingerprint.json, metrics.jsonl, README.md and, last,
    sft.json. A checkpoint of the same run in `out` is continued; a different run there is refused unless
    `force` (resume it anyway) or `fresh` (remove what earlier runs wrote, then start over). A non-empty `out`
    without our fingerprint.json holds someone else's files: refused unless `force`, with `fresh` too.
    `callbacks` are extra TrainerCallbacks (tests use one to inject a crash); `show` receives a rich preview
    of the first example's supervised tokens before training starts.
    """
    t0 = time.perf_counter()
    out = Path(out)
    # Zero epochs or steps would train nothing and save a copy of the base as a "student".
    if epochs is not None and not (0 < epochs < math.inf):
        raise SelfInstructError(f"`--epochs` must be a number above 0, got {epochs}")
    if max_steps is not None and max_steps < 1:
        raise SelfInstructError(f"`--max-steps` must be at least 1, got {max_steps}")
    model_path = str(config.model or default_model_dir())
    require_dir(model_path)
    if not Path(model_path, "config.json").is_file():
        raise SelfInstructError(f"`model` {model_path} is not a Hugging Face checkpoint (no config.json)")
    model_path = str(Path(model_path).resolve())  # sft.json records it; eval may run from another directory

    # ---- data first: a bad file is one line in a second, before torch and transformers load
    examples = load_examples(data)
    train_examples, val_examples = split(examples, config.validation, data)

    check_transformers()
    import torch
    from transformers import AutoModelForCausalLM, PrinterCallback, TrainingArguments

    check_trainer_keys(config)
    attn, cuda, packing = _attention(config)
    if cuda:
        refuse_shared_gpus(identity.local_world_size(), torch.cuda.device_count())
    kwargs = config.trainer_kwargs(
        output_dir=str(out), cuda=cuda, bf16=cuda and torch.cuda.is_bf16_supported()
    )
    if epochs is not None:
        kwargs["num_train_epochs"] = epochs
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    if not cuda and identity.world_size() > 1:
        # torchrun on CPU: without `use_cpu` the Trainer joins the process group but trains each process
        # alone (parallel_mode stays NOT_PARALLEL); gloo is the CPU backend.
        kwargs.setdefault("use_cpu", True)
        kwargs.setdefault("ddp_backend", "gloo")
    if packing and kwargs.get("include_num_input_tokens_seen") == "non_padding":
        # A packed row has no padding and no attention mask; the Trainer would then count tokens that are not
        # the pad id, and pad may equal EOS, so every trained stop token would go uncounted.
        kwargs["include_num_input_tokens_seen"] = "all"
    settings = config.model_dump(exclude={"model", "trainer"})
    fp = identity.fingerprint(
        data=str(Path(data).resolve()),
        examples=identity.examples_hash(examples),
        base=identity.base_identity(model_path),
        settings={**settings, "attn_implementation": attn, "packing": packing},
        trainer=_jsonable(kwargs),
        lora=config.lora is not None,
    )
    # every process decides alike, before any of them waits for another
    identity.check_resume(out, fp, force=force, fresh=fresh)

    tokenizer = load_tokenizer(model_path)
    renderer = Renderer(tokenizer, template=config.template)
    rows, stats = encode_all(train_examples, renderer, config.max_length)
    val_rows, val_stats = encode_all(val_examples, renderer, config.max_length)
    if not rows:
        raise SelfInstructError(f"no usable example in {data}: {_skips(stats, config)}")
    # With no held-out example left, the Trainer would fail on its eval schedule, or a run asked for an eval
    # loss would end without one.
    if val_examples and not val_rows:
        raise SelfInstructError(
            f"all {len(val_examples)} examples held out for `validation` in {data} were skipped: "
            f"{_skips(val_stats, config)}; raise `max_length`, change `validation` or add data"
        )
    if show is not None and identity.is_main_process():
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

    # ---- trainer (creating the arguments joins the process group under torchrun)
    try:
        args = TrainingArguments(**kwargs)
    except (TypeError, ValueError) as e:
        raise SelfInstructError(f"`trainer`: {str(e).splitlines()[0]}") from None
    refuse_data_parallel(args.n_gpu)
    last = None
    with args.main_process_first(local=False, desc="preparing the output directory"):
        if args.should_save:
            last = _prepare(out, fp, fresh=fresh)
    if not args.should_save:
        found = identity.last_complete_checkpoint(out)
        last = str(found) if found else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else renderer.stop_id
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=rows,
        eval_dataset=val_rows or None,
        data_collator=PackCollator() if packing else PadCollator(pad_id),
        processing_class=tokenizer,
        compute_loss_func=token_loss,
        callbacks=metric_callbacks(out / METRICS, progress) + list(callbacks),
    )
    # With tqdm off the Trainer prints every log dict to stdout; metrics.jsonl and `progress` have them, and
    # stdout belongs to the CLI (`--json` prints exactly one object).
    trainer.remove_callback(PrinterCallback)
    with write_errors(out):
        if last is not None and 0 < args.max_steps <= identity.checkpoint_step(Path(last)):
            # Resumed from a checkpoint that already reached `max_steps` (a rerun of a finished command, or
            # a kill during its final save), the Trainer would train one step more and overwrite the finished
            # student: that checkpoint is the trained model, taken as it is.
            from transformers import TrainerState

            trainer._load_from_checkpoint(last)
            trainer.state = TrainerState.load_from_json(str(Path(last) / identity.TRAINER_STATE))
        else:
            trainer.train(resume_from_checkpoint=last)
    if val_rows:
        trainer.evaluate()  # the final eval loss, logged to metrics.jsonl like the others

    # ---- save: the weights, then our files, then sft.json last; a stop waits for the whole block
    state = trainer.state
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
    counts = stats.counts
    skipped = (stats + val_stats).counts  # a held-out example that was skipped is counted with the others
    result = TrainResult(
        out=str(out),
        base_model=model_path,
        template=renderer.mode,
        stop_token=renderer.stop_token,
        examples=len(examples),
        used=counts["kept"],
        skipped={k.removeprefix("skipped_"): v for k, v in skipped.items() if k.startswith("skipped_")},
        neutralised_special_tokens=skipped.get("neutralised_special_tokens", 0),
        prompt_tokens=counts["prompt_tokens"],
        response_tokens=counts["response_tokens"],
        tokens_trained=int(state.num_input_tokens_seen),
        steps=state.global_step,
        epochs=state.epoch or 0.0,
        final_loss=losses[-1] if losses else None,
        validation_examples=len(val_rows),
        eval_loss=evals[-1] if evals else None,
        packing=packing,
        attn_implementation=attn,
        adapter_only=config.lora is not None and not config.lora.merge,
        resumed_from=last,
    )
    with signals.critical(), write_errors(out):
        before = identity.snapshot(out)
        eos = save_student(trainer, tokenizer, renderer, out, base=model_path, lora=config.lora)
        if args.should_save:
            result.seconds = round(time.perf_counter() - t0, 2)
            _write_summary(out, before, result, config, kwargs, fp, eos)
    return result


def _skips(stats: Any, config: SFTConfig) -> str:
    return (
        f"{stats.counts.get('skipped_too_long', 0)} longer than `max_length` {config.max_length}, "
        f"{stats.counts.get('skipped_empty_output', 0)} with an empty output"
    )


def _write_summary(out, before, result, config, kwargs, fp, eos) -> None:
    files = identity.written_since(out, before)
    if (out / identity.ADAPTER).is_dir():
        files.append(identity.ADAPTER)
    summary = {
        "result": result.model_dump(),
        "config": config.model_dump(),
        "trainer": _jsonable(kwargs),
        "fingerprint": fp,
        "eos_token_id": eos,
        "versions": identity.versions(),
        "git_revision": identity.git_revision(),
        "files": sorted({*files, CARD}),
    }
    with atomic_file(out / CARD) as f:
        f.write(model_card(summary))
    write_json_atomic(out / SUMMARY, summary)


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


def _jsonable(d: dict) -> dict:
    return {
        k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
        for k, v in d.items()
    }


def read_summary(model_dir: str | Path) -> dict | None:
    """DIR/sft.json of a trained student, or None for a model this package did not train. Its callers read
    `result.base_model` and `result.template`: a damaged or foreign file is one line naming it and the field."""
    path = Path(model_dir) / SUMMARY
    if not path.is_file():
        return None
    summary = read_json(path, "sft.json")
    if not isinstance(summary, dict):
        raise InputError(path, "expected a JSON object (the summary `selfinstruct train` writes)", line=1)
    result = summary.get("result")
    if not isinstance(result, dict):
        raise InputError(path, "expected an object of the run's results", field="result")
    if not isinstance(result.get("base_model"), str) or not result["base_model"]:
        raise InputError(path, "expected the path of the base model", field="result.base_model")
    if result.get("template") not in ("chat", "plain"):
        raise InputError(path, "expected 'chat' or 'plain'", field="result.template")
    return summary
