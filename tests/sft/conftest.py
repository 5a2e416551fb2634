"""Fixtures for the SFT tests: small real tokenizers trained here, and a tiny random Llama built from them.

Run: .venv/bin/pytest -q tests/sft
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ALPACA = "stanford_alpaca_pr152_alpaca_5000.json"

# Our own minimal chat templates. "eot" closes turns with a dedicated end-of-turn token (not EOS, as
# Llama-3 style templates do); "eos" closes them with the EOS itself.
CHAT_EOT = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHAT_EOS = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<pad>", "<s>", "<|user|>", "<|assistant|>", "<|end|>"]


@pytest.fixture(scope="session")
def alpaca_records(external) -> list[dict]:
    return json.loads((external / ALPACA).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def bpe_core(alpaca_records):
    """A byte-level BPE (vocabulary 1,000) trained on real Alpaca text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    texts = (r[k] for r in alpaca_records[:2000] for k in ("instruction", "input", "output"))
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _wrap(core, *, bos: bool, pad_is_eos: bool, chat: str):
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    core = core.__class__.from_str(core.to_str())  # a private copy: post-processors differ per variant
    if bos:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", core.token_to_id("<s>"))]
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",
        bos_token="<s>",
        pad_token="<|endoftext|>" if pad_is_eos else "<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
    )
    tok.chat_template = chat
    return tok


@pytest.fixture(scope="session")
def make_tokenizer(bpe_core):
    """Wrap the trained BPE with a chosen chat template (None for none); pad == EOS, no BOS."""
    return lambda chat: _wrap(bpe_core, bos=False, pad_is_eos=True, chat=chat)


@pytest.fixture(scope="session")
def bpe_bos(bpe_core):
    """Adds BOS, pads with <pad>, ends chat turns with <|end|> (not EOS)."""
    return _wrap(bpe_core, bos=True, pad_is_eos=False, chat=CHAT_EOT)


@pytest.fixture(scope="session")
def bpe_pad_eos(bpe_core):
    """No BOS, pad == EOS, chat turns end with EOS."""
    return _wrap(bpe_core, bos=False, pad_is_eos=True, chat=CHAT_EOS)


@pytest.fixture(scope="session")
def smol_tokenizer(embedded_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, bpe_pad_eos) -> Path:
    """A randomly initialised 2-layer Llama saved with the pad == EOS tokenizer (head_dim 64, which vLLM's
    CPU attention supports)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = bpe_pad_eos
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def alpaca_small(tmp_path_factory, alpaca_records) -> Path:
    """48 real Alpaca records with short outputs, as a JSON array file."""
    short = [r for r in alpaca_records if len(r["output"]) < 120 and len(r["instruction"]) < 120][:48]
    path = tmp_path_factory.mktemp("data") / "alpaca_small.json"
    path.write_text(json.dumps(short), encoding="utf-8")
    return path
