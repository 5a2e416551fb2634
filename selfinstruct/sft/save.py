"""Saving a trained student so that it serves itself: weights through the Trainer (so FSDP and DeepSpeed
states are gathered), the chat template it was trained with, the stop token in `generation_config.json`, and a
model card. `vllm serve DIR` and `transformers` then prompt it the way training did and stop where it learned to.

Every process calls `save_student` (a sharded save needs them all); only the main process writes files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfinstruct.sft.config import LoraSettings
from selfinstruct.sft.identity import ADAPTER, CARD_MARK
from selfinstruct.sft.render import PLAIN_HEADER, Renderer, plain_chat_template, plain_prompt, serving_eos_ids


def save_student(
    trainer: Any, tokenizer: Any, renderer: Renderer, out: Path, *, base: str, lora: LoraSettings | None
) -> list[int]:
    """Save into `out`; returns the eos ids the saved student stops at."""
    if renderer.mode == "plain":
        # The base's own chat template would prompt the student in a format it never saw.
        tokenizer.chat_template = plain_chat_template(tokenizer.decode(renderer.bos_prefix))
    eos = _stop_at(trainer.model, renderer)
    if lora is None or not lora.merge:
        trainer.save_model(str(out))  # full weights, or the adapter alone when `lora.merge` is off
        return eos
    # Merging needs whole weights; under FSDP/ZeRO-3 a rank holds a shard. So the Trainer saves the gathered
    # adapter, and the main process merges it into a fresh copy of the base from disk.
    trainer.save_model(str(out / ADAPTER))
    if trainer.args.should_save:
        merged = _merge(base, out / ADAPTER)
        merged.generation_config.eos_token_id = eos
        merged.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    return eos


def _stop_at(model: Any, renderer: Renderer) -> list[int]:
    gen = model.generation_config  # a peft model forwards this to its base
    eos = serving_eos_ids(gen.eos_token_id, renderer.stop_id)
    gen.eos_token_id = eos if len(eos) > 1 else eos[0]
    return eos


def _merge(base: str, adapter: Path) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def model_card(summary: dict) -> str:
    """README.md for the checkpoint: what trained it and how to prompt it. Our own words, no template."""
    r, fp = summary["result"], summary["fingerprint"]
    eos = ", ".join(str(i) for i in summary["eos_token_id"])
    if r["template"] == "plain":
        how = (
            "Trained on selfinstruct's plain instruction template; the saved chat template renders a user "
            "message into it, so chat requests work as they are. With an input, use the completions endpoint "
            "and this exact prompt (the input section is left out when there is none):\n\n"
            "```\n" + plain_prompt("{instruction}", "{input}") + "```\n\n"
            f"The header line is: `{PLAIN_HEADER.strip()}`."
        )
    else:
        how = (
            "Trained on its tokenizer's chat template: send one user message (the instruction, then the "
            "input after a blank line, when there is one)."
        )
    lines = [
        CARD_MARK,
        f"# Student of {Path(r['base_model']).name}",
        "",
        f"Fine-tuned with masked SFT (loss on response tokens only) by `selfinstruct train` from "
        f"`{r['base_model']}`.",
        "",
        "## Data",
        "",
        f"- file: `{fp['data']['path']}`",
        f"- examples: {r['used']} used of {r['examples']} (skipped: {r['skipped'] or 'none'}), "
        f"{r['validation_examples']} held out for validation",
        f"- sha256 of the examples: `{fp['data']['examples_sha256']}`",
        f"- {r['steps']} optimizer steps, {r['epochs']:.2f} epochs, final training loss {r['final_loss']}, "
        f"eval loss {r['eval_loss']}",
        "",
        "## How to prompt it",
        "",
        how,
        "",
        f"It ends an answer with `{r['stop_token']}`; `generation_config.json` stops at ids {eos}.",
        "",
        "```bash",
        "selfinstruct serve --model THIS_DIR     # or: vllm serve THIS_DIR",
        "```",
        "",
        "## Provenance",
        "",
        f"Library versions {summary['versions']}, selfinstruct revision {summary['git_revision']}. The full "
        "settings and fingerprint are in `sft.json`.",
        "",
    ]
    return "\n".join(lines)
