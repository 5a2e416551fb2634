"""Prompt templates, written for this project, and their rendering for each stage of the loop.

Every stage renders either chat messages (for models with a chat template) or raw text that the model continues
(for base models). The templates are plain strings kept together here so the manifest can hash them: a changed
template changes the data, and resuming a run with different templates needs --force.
This module knows nothing of the model or of files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from selfinstruct.schema import Task, sha256

Style = Literal["chat", "raw"]

# (a) Instruction generation: the model sees numbered tasks and continues the list.
INSTRUCTIONS_HEAD = (
    "Here is a numbered list of tasks that people hand to a capable assistant. They differ in subject and in "
    "kind: writing, rewriting, explaining, reasoning, maths, code, pulling facts out of text, sorting things "
    "into classes, brainstorming, planning and everyday advice. Each task is one instruction a person could "
    "act on without seeing anything else."
)
INSTRUCTIONS_ASK = (
    "Add {n} more tasks to the list. Make them new: unlike the ones above and unlike each other, in topic and "
    "in wording. Number them from {start} to {end}, one task per line, and write nothing but the tasks."
)

# (b) Classification identification: few-shot yes/no.
CLASSIFY_HEAD = (
    "Say whether each task is a classification task, meaning its answer is one label taken from a small, fixed "
    "set of choices (for example positive/negative, or one of a few topics). Answer Yes or No."
)
CLASSIFY_SHOTS: tuple[tuple[str, bool], ...] = (
    ("Tell whether the review below praises or criticises the product.", True),
    ("Suggest three names for a bakery that sells only bread.", False),
    ("Is the following number prime? Answer yes or no.", True),
    ("Explain why the sky looks blue during the day.", False),
    ("Label the email as spam or not spam.", True),
    ("Turn this paragraph into a short bulleted summary.", False),
)

# (c) Instance generation. Input-first for open tasks; output-first (label, then an input that earns it) for
# classification tasks, so the labels come out balanced instead of echoing whatever input came first.
INSTANCES_INPUT_FIRST = (
    "Give examples for the task below. Each example has an Input and the Output that answers the task for "
    "that input. When the task needs no input, write Input: <none>."
)
INSTANCES_OUTPUT_FIRST = (
    "Give examples for the classification task below. For each example, first write one possible Label, then an "
    "Input that truly belongs to that label. Use different labels across the examples."
)

# (d) Alpaca-style single pass: complete examples in one request.
ALPACA_HEAD = (
    "Write new, varied examples of instructions with their answers. Each example has an Instruction, an Input "
    "(write <none> when the instruction needs none) and an Output that does what the instruction asks. Keep the "
    "layout of the examples shown."
)
ALPACA_ASK = "Now write examples {start} to {end}, in the same layout, each one new."

TEMPLATES: dict[str, str] = {
    "instructions_head": INSTRUCTIONS_HEAD,
    "instructions_ask": INSTRUCTIONS_ASK,
    "classify_head": CLASSIFY_HEAD,
    "classify_shots": repr(CLASSIFY_SHOTS),
    "instances_input_first": INSTANCES_INPUT_FIRST,
    "instances_output_first": INSTANCES_OUTPUT_FIRST,
    "alpaca_head": ALPACA_HEAD,
    "alpaca_ask": ALPACA_ASK,
}


def template_hashes() -> dict[str, str]:
    """sha256 of every template, for the manifest and for resume checks."""
    return {name: sha256(text)[:16] for name, text in TEMPLATES.items()}


NONE_INPUT = "<none>"


@dataclass(frozen=True)
class Prompt:
    """What to send: raw text or chat messages, plus the stop strings that end this kind of answer."""

    content: str | tuple[dict[str, str], ...]
    stop: tuple[str, ...] = ()


def _messages(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


def instruction_prompt(examples: Sequence[Task], n_new: int, style: Style) -> Prompt:
    """Numbered in-context tasks; the model continues from number len(examples)+1.
    Stops after the n_new-th new item, or at a blank line (the list is over)."""
    listing = "\n".join(f"{i}. {_one_line(t.instruction)}" for i, t in enumerate(examples, start=1))
    start = len(examples) + 1
    end = start + n_new - 1
    stop = (f"\n{end + 1}.", "\n\n")
    if style == "raw":
        return Prompt(f"{INSTRUCTIONS_HEAD}\n\n{listing}\n{start}.", stop)
    ask = INSTRUCTIONS_ASK.format(n=n_new, start=start, end=end)
    return Prompt(_messages(f"{INSTRUCTIONS_HEAD}\n\n{listing}\n\n{ask}"), stop[:1])


def _one_line(text: str) -> str:
    """A multi-line instruction shown in a numbered list would read as several items."""
    return " ".join(text.split())


def classify_prompt(instruction: str, style: Style) -> Prompt:
    shots = "\n\n".join(f"Task: {t}\nClassification: {'Yes' if y else 'No'}" for t, y in CLASSIFY_SHOTS)
    body = f"{CLASSIFY_HEAD}\n\n{shots}\n\nTask: {_one_line(instruction)}\nClassification:"
    return Prompt(body, ("\n",)) if style == "raw" else Prompt(_messages(body))


def _render_instance(inst_input: str, output: str, output_first: bool) -> str:
    shown_input = inst_input.strip() or NONE_INPUT
    if output_first:
        return f"Label: {output.strip()}\nInput: {shown_input}"
    return f"Input: {shown_input}\nOutput: {output.strip()}"


def instance_prompt(
    task: Task, shots: Sequence[Task], output_first: bool, style: Style, *, n_examples: int = 3
) -> Prompt:
    """Show how shot tasks' instances look, then ask for examples of `task` in the same layout."""
    head = INSTANCES_OUTPUT_FIRST if output_first else INSTANCES_INPUT_FIRST
    blocks = []
    for shot in shots:
        inst = shot.instances[0]
        blocks.append(
            f"Task: {shot.instruction.strip()}\nExample 1\n{_render_instance(inst.input, inst.output, output_first)}"
        )
    body = f"{head}\n\n" + "\n\n".join(blocks) + f"\n\nTask: {task.instruction.strip()}\nExample 1\n"
    # The next "Task:" line means the model has moved on to inventing another task; past n examples, enough.
    stop = ("\nTask:", f"Example {n_examples + 1}")
    return Prompt(body, stop) if style == "raw" else Prompt(_messages(body.rstrip()), stop)


def alpaca_prompt(examples: Sequence[Task], n_new: int, style: Style) -> Prompt:
    shown = []
    for i, t in enumerate(examples, start=1):
        inst = t.instances[0]
        shown.append(
            f"### Example {i}\nInstruction: {t.instruction.strip()}\n"
            f"Input: {inst.input.strip() or NONE_INPUT}\nOutput: {inst.output.strip()}"
        )
    start = len(examples) + 1
    stop = (f"### Example {start + n_new}",)
    body = f"{ALPACA_HEAD}\n\n" + "\n\n".join(shown)
    if style == "raw":
        return Prompt(f"{body}\n\n### Example {start}\nInstruction:", stop)
    return Prompt(_messages(f"{body}\n\n{ALPACA_ASK.format(start=start, end=start + n_new - 1)}"), stop)
