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

    `stop_token`/`stop_id` is what the student emits to end an answer: the EOS for "plain", the
    chat template's end-of-turn for "chat". `extra_stop_ids` adds ids the model's generation config
    treats as end of sequence (Llama-3 style templates end turns with a token other than EOS).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        template: Literal["auto", "chat", "plain"] = "auto",
        extra_stop_ids: tuple[int, ...] = (),
    ):
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
        stop_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        stop_ids += [i for i in extra_stop_ids if i not in stop_ids]
        if not stop_ids:
            # Without a stop token the student would never learn to end an answer.
            raise SelfInstructError(
                "the student's tokenizer has no eos_token: set one, or pick another `model`"
            )
        self._stop_candidates = {tokenizer.convert_ids_to_tokens(i): i for i in stop_ids}
        if self.mode == "plain":
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
        end = self._first_stop(suffix)
        if end is None:
            raise SelfInstructError(
                f"the student's chat template does not end the assistant turn with a stop token "
                f"({', '.join(self._stop_candidates)}); use `template: plain`"
            )
        return prompt, output + suffix[:end]

    def _first_stop(self, suffix: str) -> int | None:
        hits = [(suffix.find(s), s) for s in self._stop_candidates if s and s in suffix]
        if not hits:
            return None
        pos, s = min(hits)
        return pos + len(s)

    def _chat_stop(self) -> tuple[str, int]:
        probe = "\u2026"  # any text the template passes through; its neighbourhood is the template's own
        _, response = self._chat_split("?", probe)
        suffix = response[len(probe) :]
        for s, i in self._stop_candidates.items():
            if suffix.endswith(s):
                return s, i
        raise AssertionError("unreachable: _chat_split ends the response at a stop token")

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
