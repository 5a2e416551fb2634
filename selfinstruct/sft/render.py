"""Rendering an example into prompt text and response text, split where the model starts answering.

Two templates: our own instruction template for base students ("plain", ends with EOS), or the student's
chat template ("chat", ends with the template's end-of-turn). The split point comes from the structure of
the rendering (the prompt is rendered on its own), never from searching ids (STYLE rule 14). This module
knows nothing of batches or training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from selfinstruct.errors import SelfInstructError
from selfinstruct.schema import Example

# Our own words. The response follows the last line directly, with no separator the model must learn.
PLAIN_HEADER = "Below is a task for you to carry out. Write a reply that completes it.\n\n"
PLAIN_TASK = "## Task\n{instruction}\n\n"
PLAIN_INPUT = "## Input\n{input}\n\n"
PLAIN_REPLY = "## Reply\n"

# A zero-width space after the first character stops a tokenizer from matching a special token's string,
# while leaving the text readable. Used on data text only, never on what the template itself adds.
_BREAK = "\u200b"


def plain_prompt(instruction: str, input: str = "") -> str:
    text = PLAIN_HEADER + PLAIN_TASK.format(instruction=instruction.strip())
    if input.strip():
        text += PLAIN_INPUT.format(input=input.strip())
    return text + PLAIN_REPLY


def user_message(instruction: str, input: str = "") -> str:
    """The user turn of a chat student: the instruction, then the input (if any) after a blank line."""
    return instruction.strip() + (f"\n\n{input.strip()}" if input.strip() else "")


def inference_prompt(mode: str, instruction: str, input: str = "") -> dict[str, Any]:
    """A student's request fields for its template `mode`: chat messages, or the plain prompt text."""
    if mode == "chat":
        return {"messages": ({"role": "user", "content": user_message(instruction, input)},)}
    return {"prompt": plain_prompt(instruction, input)}


def special_strings(tokenizer: Any) -> list[str]:
    """Every string the tokenizer would turn into a special token, longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            found.add(tok.content)
    return sorted((s for s in found if s), key=len, reverse=True)


def neutralise(text: str, specials: list[str]) -> tuple[str, int]:
    """Break every special-token string in data text so it tokenizes as ordinary text.

    A generated answer that contains "<|im_end|>" would otherwise train the model to stop mid-answer,
    or put a second end-of-turn in the middle of the response. Returns the text and how many were broken.
    """
    n = 0
    for s in specials:
        if s in text:
            n += text.count(s)
            text = text.replace(s, s[0] + _BREAK + s[1:]) if len(s) > 1 else text.replace(s, s + _BREAK)
    return text, n


@dataclass(frozen=True)
class Rendered:
    prompt: str
    response: str  # for "chat": content + the template's text up to and including the stop token
    neutralised: int


class Renderer:
    """Turns examples into (prompt, response) text for one tokenizer and template.

    `stop_token`/`stop_id` is what the student emits to end an answer (`stop_rule` says which). The saved
    checkpoint must stop there too: `serving_eos_ids` is the one place that decides the ids it stops at.
    """

    def __init__(self, tokenizer: Any, *, template: Literal["auto", "chat", "plain"] = "auto"):
        self.tokenizer = tokenizer
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if template == "chat" and not has_chat:
            raise SelfInstructError(
                "`template` is 'chat' but the student's tokenizer has no chat template; use `template: plain`"
            )
        self.mode: Literal["chat", "plain"] = (
            ("chat" if has_chat else "plain") if template == "auto" else template
        )
        self.specials = special_strings(tokenizer)
        if self.mode == "plain":
            if tokenizer.eos_token_id is None:
                # Without a stop token the student would never learn to end an answer.
                raise SelfInstructError(
                    "the student's tokenizer has no eos_token: set one, or pick another `model`"
                )
            self.stop_token, self.stop_id = tokenizer.eos_token, tokenizer.eos_token_id
            self.bos_prefix = _leading_special_ids(tokenizer)
        else:
            self.bos_prefix = []
            self.stop_token, self.stop_id = self._chat_stop()

    # ---- rendering ---------------------------------------------------------------------------------------

    def render(self, ex: Example) -> Rendered:
        instruction, n1 = neutralise(ex.instruction, self.specials)
        input, n2 = neutralise(ex.input, self.specials)
        output, n3 = neutralise(ex.output.strip(), self.specials)
        if self.mode == "plain":
            return Rendered(plain_prompt(instruction, input), output, n1 + n2 + n3)
        prompt, response = self._chat_split(user_message(instruction, input), output)
        return Rendered(prompt, response, n1 + n2 + n3)

    def _chat_split(self, user: str, output: str) -> tuple[str, str]:
        tok = self.tokenizer
        turn = [{"role": "user", "content": user}]
        prompt = tok.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(turn + [{"role": "assistant", "content": output}], tokenize=False)
        # The student sees exactly `prompt` at inference, so training must split there. A template that
        # renders the generation prompt differently from the start of the full conversation (some insert
        # thinking blocks or dates) would put the boundary in the wrong place: refuse rather than guess.
        if not full.startswith(prompt):
            raise SelfInstructError(
                "the student's chat template renders the prompt (add_generation_prompt=True) differently "
                "from the start of the full conversation, so the response boundary is unknown; "
                "use `template: plain`"
            )
        rest = full[len(prompt) :]
        if not rest.startswith(output):
            raise SelfInstructError(
                "the student's chat template rewrites the assistant's text (it does not appear verbatim "
                "after the generation prompt); use `template: plain`"
            )
        suffix = rest[len(output) :]
        stop = first_special(suffix, self.specials)
        if stop is None:
            raise SelfInstructError(
                "the student's chat template ends the assistant turn without a special token to stop at; "
                "use `template: plain`"
            )
        return prompt, output + suffix[: suffix.find(stop) + len(stop)]

    def _chat_stop(self) -> tuple[str, int]:
        probe = "\u2026"  # any text the template passes through; its neighbourhood is the template's own
        _, response = self._chat_split("?", probe)
        stop = first_special(response[len(probe) :], self.specials)
        return stop, self.tokenizer.convert_tokens_to_ids(stop)

    # ---- tokenizing --------------------------------------------------------------------------------------

    def tokenize(self, rendered: Rendered) -> tuple[list[int], list[int]]:
        """Prompt ids and response ids, tokenized apart. Concatenated, they are what the student sees at
        inference (vLLM tokenizes the prompt alone) followed by what it should generate."""
        tok = self.tokenizer
        prompt_ids = self.bos_prefix + tok(rendered.prompt, add_special_tokens=False)["input_ids"]
        response_ids = tok(rendered.response, add_special_tokens=False)["input_ids"]
        if self.mode == "plain":
            response_ids = response_ids + [self.stop_id]
        elif not response_ids or response_ids[-1] != self.stop_id:
            raise SelfInstructError(
                f"the chat template's stop token {self.stop_token!r} does not tokenize to one id"
            )
        return prompt_ids, response_ids


def first_special(text: str, specials: list[str]) -> str | None:
    """The stop rule for chat templates: the first special token the template writes after the assistant's
    text ends the turn (`<|im_end|>`, `<|eot_id|>`, `</s>`, ...). Whether it is already an eos id does not
    matter: `serving_eos_ids` adds it to the checkpoint's generation config."""
    hits = [(text.find(s), -len(s), s) for s in specials if s in text]
    return min(hits)[2] if hits else None


def serving_eos_ids(model_eos: int | list[int] | None, stop_id: int) -> list[int]:
    """The ids a served student stops at: its base's eos ids plus the stop token it was trained to end with.

    vLLM and `transformers.generate` both stop at `generation_config.eos_token_id`; an end-of-turn the student
    learned but the server does not stop at would make every answer run to max_tokens.
    """
    ids = [model_eos] if isinstance(model_eos, int) else list(model_eos or [])
    return ids + [stop_id] if stop_id not in ids else ids


def plain_chat_template(bos: str = "") -> str:
    """A Jinja chat template that renders a user turn as our plain prompt, so `vllm serve` and
    `transformers` prompt a plain-template student in the format it was trained on.

    A user message fills the Task section (an instruction with an input reaches the exact trained format
    only through the completions endpoint, with `plain_prompt`); an assistant message is its text and EOS.
    A system message is refused: the plain template has no place for one.
    """
    header = _jinja_literal(PLAIN_HEADER + "## Task\n")
    reply = _jinja_literal("\n\n" + PLAIN_REPLY)
    return (
        f"{{{{- {_jinja_literal(bos)} -}}}}"
        "{%- for m in messages -%}"
        "{%- if m['role'] == 'user' -%}"
        f"{{{{ {header} }}}}{{{{ m['content'] | trim }}}}{{{{ {reply} }}}}"
        "{%- elif m['role'] == 'assistant' -%}{{ m['content'] | trim }}{{ eos_token }}"
        "{%- else -%}{{ raise_exception('this student was trained on the plain template, which has only "
        "user and assistant turns, got ' + m['role']) }}"
        "{%- endif -%}{%- endfor -%}"
    )


def _jinja_literal(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid Jinja string literal


def _leading_special_ids(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before text when asked to add special tokens (BOS, for most).

    Probed rather than read from `bos_token`, because many tokenizers define a BOS they never add (SmolLM2
    does), and vLLM adds exactly what the tokenizer adds when it tokenizes a plain prompt.
    """
    with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(bare) + 1):
        if with_special[start : start + len(bare)] == bare:
            return list(with_special[:start])
    return []


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise SelfInstructError(
            f"cannot load a tokenizer from `model` {model}: {str(e).splitlines()[0]}"
        ) from None
