"""Golden masking tests: the supervised tokens are exactly the response plus the stop token.

Two real tokenizers (the embedded SmolLM2 one, and small BPEs trained here, one with pad == EOS), both
templates, with and without input. Run: .venv/bin/pytest -q tests/sft/test_render.py
"""

from __future__ import annotations

import pytest

from selfinstruct.errors import SelfInstructError
from selfinstruct.schema import Example
from selfinstruct.sft.data import IGNORE, PadCollator, encode
from selfinstruct.sft.render import (
    Renderer,
    inference_prompt,
    neutralise,
    plain_chat_template,
    plain_prompt,
    serving_eos_ids,
)
from selfinstruct.stats import Stats

WITH_INPUT = Example(
    id="a", instruction="Classify the sentiment of the review.", input="The soup was cold.", output="Negative"
)
NO_INPUT = Example(id="b", instruction="Name three primary colours.", output="Red, yellow and blue.")


def _renderer(tok, template):
    return Renderer(tok, template=template)


TOKENIZERS = ["smol_tokenizer", "bpe_bos", "bpe_pad_eos"]


@pytest.mark.parametrize("tok_name", TOKENIZERS)
@pytest.mark.parametrize("template", ["chat", "plain"])
@pytest.mark.parametrize("ex", [WITH_INPUT, NO_INPUT], ids=["input", "no_input"])
def test_supervised_tokens_are_response_plus_stop(request, tok_name, template, ex):
    tok = request.getfixturevalue(tok_name)
    r = _renderer(tok, template)
    row = encode(ex, r, 512, Stats())
    ids, labels = row["input_ids"], row["labels"]
    supervised = [t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE]
    # Labels equal the ids wherever they are not masked (the model shifts them itself).
    assert all(lab in (IGNORE, t) for t, lab in zip(ids, labels, strict=True))
    assert tok.decode(supervised) == ex.output + r.stop_token
    assert supervised[-1] == r.stop_id and ids[-1] == r.stop_id
    # The boundary: the first response token is trained, the token before it is not.
    first = next(i for i, lab in enumerate(labels) if lab != IGNORE)
    assert labels[first] == ids[first] and labels[first - 1] == IGNORE
    assert all(lab == IGNORE for lab in labels[:first]) and all(lab != IGNORE for lab in labels[first:])
    # The prompt is exactly what the student sees at inference.
    prompt_ids = ids[:first]
    inference = inference_prompt(r.mode, ex.instruction, ex.input)
    if template == "chat":
        expected = tok.apply_chat_template(
            list(inference["messages"]), tokenize=False, add_generation_prompt=True
        )
        assert tok.decode(prompt_ids) == expected
    else:
        assert prompt_ids == tok(inference["prompt"], add_special_tokens=True)["input_ids"]
    # No BOS in the middle: only the tokenizer's own prefix may hold one.
    if tok.bos_token_id is not None and tok.bos_token_id != r.stop_id:
        assert tok.bos_token_id not in ids[first:]
    if ex.input:
        assert ex.input in tok.decode(prompt_ids)


def test_stop_tokens_per_tokenizer(smol_tokenizer, bpe_bos, bpe_pad_eos):
    assert _renderer(smol_tokenizer, "chat").stop_token == "<|im_end|>"
    assert _renderer(bpe_bos, "chat").stop_token == "<|end|>"  # end-of-turn, not EOS
    assert _renderer(bpe_bos, "plain").stop_token == "<|endoftext|>"
    assert _renderer(bpe_pad_eos, "chat").stop_token == "<|endoftext|>"
    assert _renderer(bpe_bos, "plain").bos_prefix == [bpe_bos.bos_token_id]
    assert _renderer(bpe_pad_eos, "plain").bos_prefix == []
    assert _renderer(smol_tokenizer, "auto").mode == "chat"


def test_end_of_turn_that_is_not_an_eos_id_is_trained_and_added_to_the_eos_ids(bpe_bos):
    # <|end|> closes turns but is not the EOS: it is still the stop token, and the saved checkpoint must stop
    # at it too (a server that never stops at it would run every answer to max_tokens).
    r = Renderer(bpe_bos, template="chat")
    end = bpe_bos.convert_tokens_to_ids("<|end|>")
    assert r.stop_id == end != bpe_bos.eos_token_id
    assert serving_eos_ids(bpe_bos.eos_token_id, r.stop_id) == [bpe_bos.eos_token_id, end]
    assert serving_eos_ids([end, 7], r.stop_id) == [end, 7]
    assert serving_eos_ids(None, r.stop_id) == [end]


def test_template_without_a_special_token_after_the_answer_is_refused(make_tokenizer):
    tok = make_tokenizer("{% for m in messages %}{{ m['content'] }}\n\n{% endfor %}")
    with pytest.raises(SelfInstructError, match="without a special token to stop at"):
        Renderer(tok, template="chat")


@pytest.mark.parametrize("tok_name", TOKENIZERS)
def test_plain_chat_template_renders_the_trained_prompt(request, tok_name):
    """The chat template saved with a plain-template student gives a server exactly the trained prompt ids."""
    import copy

    tok = copy.deepcopy(request.getfixturevalue(tok_name))
    r = _renderer(tok, "plain")
    tok.chat_template = plain_chat_template(tok.decode(r.bos_prefix))
    row = encode(NO_INPUT, r, 512, Stats())
    first = next(i for i, lab in enumerate(row["labels"]) if lab != IGNORE)
    turn = [{"role": "user", "content": NO_INPUT.instruction}]
    served = tok.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    assert served == tok.decode(r.bos_prefix) + plain_prompt(NO_INPUT.instruction)
    assert tok(served, add_special_tokens=False)["input_ids"] == row["input_ids"][:first]
    # Retraining such a student with template auto renders the same examples the same way.
    again = Renderer(tok, template="auto")
    assert again.mode == "chat" and again.stop_id == r.stop_id
    assert encode(NO_INPUT, again, 512, Stats())["input_ids"] == row["input_ids"]


def test_template_whose_prompt_is_not_a_prefix_is_refused(make_tokenizer):
    broken = (
        "{% if add_generation_prompt %}GEN {% endif %}"
        "{% for m in messages %}{{ m['content'] }}<|endoftext|>{% endfor %}"
    )
    tok = make_tokenizer(broken)
    with pytest.raises(SelfInstructError, match="not a prefix|differently from the start"):
        Renderer(tok, template="chat")


def test_chat_without_a_chat_template_is_refused(make_tokenizer):
    tok = make_tokenizer(None)
    with pytest.raises(SelfInstructError, match="no chat template"):
        Renderer(tok, template="chat")
    assert Renderer(tok, template="auto").mode == "plain"


@pytest.mark.parametrize("tok_name", ["smol_tokenizer", "bpe_pad_eos"])
def test_special_token_strings_in_data_are_neutralised(request, tok_name):
    tok = request.getfixturevalue(tok_name)
    r = _renderer(tok, "chat")
    ex = Example(id="c", instruction="Repeat the marker.", output=f"It is {r.stop_token} here.")
    stats = Stats()
    row = encode(ex, r, 512, stats)
    supervised = [t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE]
    # Exactly one stop id, at the very end; the one in the text became ordinary tokens.
    assert supervised.count(r.stop_id) == 1 and supervised[-1] == r.stop_id
    assert stats.counts["neutralised_special_tokens"] == 1
    assert tok.decode(supervised).replace("\u200b", "") == ex.output + r.stop_token


def test_neutralise_counts_and_breaks():
    text, n = neutralise("a <s> b <s> </s>", ["</s>", "<s>"])
    assert n == 3 and "<s>" not in text and "</s>" not in text


@pytest.mark.parametrize("tok_name", TOKENIZERS)
def test_too_long_is_skipped_and_counted(request, tok_name):
    tok = request.getfixturevalue(tok_name)
    r = _renderer(tok, "plain")
    stats = Stats()
    short = encode(NO_INPUT, r, 512, stats)
    limit = short["length"] - 1  # one token short of fitting
    assert encode(NO_INPUT, r, limit, stats) is None
    assert encode(Example(id="e", instruction="Say nothing.", output="  "), r, 512, stats) is None
    assert stats.counts["skipped_too_long"] == 1 and stats.counts["skipped_empty_output"] == 1
    assert stats.counts["kept"] == 1 and stats.counts["total"] == 3


def test_collator_pads_only_and_masks_by_length(bpe_pad_eos):
    r = _renderer(bpe_pad_eos, "chat")
    rows = [encode(ex, r, 512, Stats()) for ex in (WITH_INPUT, NO_INPUT)]
    batch = PadCollator(bpe_pad_eos.pad_token_id)(rows)
    assert bpe_pad_eos.pad_token_id == r.stop_id  # the hard case: pad is EOS
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch["input_ids"][i, :n].tolist() == row["input_ids"]
        assert batch["labels"][i, :n].tolist() == row["labels"]  # untouched: labels were built before
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        assert batch["labels"][i, n:].eq(IGNORE).all()
        # The final EOS is attended to and trained even though it equals the pad id.
        assert batch["attention_mask"][i, n - 1] == 1 and batch["labels"][i, n - 1] == r.stop_id
