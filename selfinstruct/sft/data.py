"""Training data: read examples, tokenize them with labels, batch them (padded, or packed without padding).

Labels are built here, once (-100 on prompt and padding); the collators only pad or concatenate
(STYLE rule 15). An example that does not fit is skipped and counted, never trained with every label masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from selfinstruct.errors import InputError
from selfinstruct.jsonl import iter_json_objects, parse_record
from selfinstruct.schema import Example, Task, content_id
from selfinstruct.seeds import to_task
from selfinstruct.sft.render import Renderer
from selfinstruct.stats import Stats
from selfinstruct.store import read_jsonl

IGNORE = -100  # the label PyTorch's cross-entropy skips


# ---- reading -----------------------------------------------------------------------------------------------


class _Alpaca(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instruction: str
    input: str = ""
    output: str
    id: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("instruction")
    @classmethod
    def _nonblank(cls, v: str) -> str:
        # As `seeds validate` words it; a blank instruction would otherwise fail later, inside Example.
        if not v.strip():
            raise ValueError("is empty")
        return v


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    content: str


class _Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[_Message]
    id: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


def load_examples(path: str | Path) -> list[Example]:
    """Examples from a run directory (its tasks.jsonl, one example per instance) or a JSON/JSONL file of
    alpaca records ({instruction, input, output}), messages records ({"messages": [user, assistant]}),
    or self-instruct tasks ({instruction, instances}). Errors name file, line and field."""
    path = Path(path)
    if path.is_dir():
        tasks = path / "tasks.jsonl"
        if not tasks.is_file():
            raise InputError(path, "a run directory needs a tasks.jsonl")
        return [ex for task in read_jsonl(tasks, Task) for ex in task.examples()]
    out: list[Example] = []
    for line, obj in iter_json_objects(path):
        if "messages" in obj:
            out.append(_from_messages(parse_record(_Conversation, obj, path, line), path, line))
        elif "instances" in obj:  # seed-file rules: an id is derived from content when missing
            out.extend(to_task(obj, file=path, line=line).examples())
        elif "instruction" in obj:
            rec = parse_record(_Alpaca, obj, path, line)
            rid = rec.id or content_id("ex", rec.instruction, rec.input, rec.output)
            out.append(
                Example(
                    id=rid, instruction=rec.instruction, input=rec.input, output=rec.output, meta=rec.meta
                )
            )
        else:
            raise InputError(
                path,
                "expected alpaca fields (instruction, input, output) or `messages`",
                line=line,
                field="record",
            )
    return out


def _from_messages(conv: _Conversation, path: Path, line: int) -> Example:
    roles = [m.role for m in conv.messages]
    # One user turn and one answer is what the loop produces; other shapes would need a multi-turn mask.
    if roles != ["user", "assistant"]:
        raise InputError(
            path,
            f"expected one user then one assistant message, got roles {roles}",
            line=line,
            field="messages",
        )
    user, answer = conv.messages[0].content, conv.messages[1].content
    if not user.strip():
        raise InputError(path, "the user message is empty", line=line, field="messages.0.content")
    rid = conv.id or content_id("ex", user, "", answer)
    return Example(id=rid, instruction=user, input="", output=answer, meta=conv.meta)


# ---- tokenizing --------------------------------------------------------------------------------------------


def encode(ex: Example, renderer: Renderer, max_length: int, stats: Stats) -> dict[str, Any] | None:
    """One example as {input_ids, labels, length}, or None (skipped and counted)."""
    stats.count("total")
    if not ex.output.strip():
        stats.count("skipped")
        stats.count("skipped_empty_output")
        return None
    rendered = renderer.render(ex)
    if rendered.neutralised:
        stats.count("neutralised_special_tokens", rendered.neutralised)
    prompt_ids, response_ids = renderer.tokenize(rendered)
    n = len(prompt_ids) + len(response_ids)
    # Cutting the response would drop its stop token and teach the student to ramble; cutting the prompt
    # would train answers to questions it never saw. So the whole example goes, and is counted.
    if n > max_length:
        stats.count("skipped")
        stats.count("skipped_too_long")
        return None
    stats.count("kept")
    stats.count("prompt_tokens", len(prompt_ids))
    stats.count("response_tokens", len(response_ids))
    return {
        "input_ids": prompt_ids + response_ids,
        "labels": [IGNORE] * len(prompt_ids) + response_ids,
        "length": n,
    }


def encode_all(examples: list[Example], renderer: Renderer, max_length: int) -> tuple[list[dict], Stats]:
    stats = Stats()
    rows = [r for ex in examples if (r := encode(ex, renderer, max_length, stats)) is not None]
    return rows, stats


# ---- batching ----------------------------------------------------------------------------------------------


@dataclass
class PadCollator:
    """Right-pads a batch. The attention mask comes from each row's length, never from token values:
    the pad id may equal EOS, and the EOS that ends a response must stay visible and trained."""

    pad_id: int

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class PackCollator:
    """Concatenates a batch into one row with no padding; position ids restart at 0 for each example.

    Only safe with a kernel that reads example boundaries from the position ids (flash-attention varlen),
    so attention never crosses examples; train.py enables it only then. The first label of every example is
    a prompt token (-100), so the last token of one example is never trained to predict the next example.
    """

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        import torch

        ids, labels, pos = [], [], []
        for r in rows:
            assert r["labels"][0] == IGNORE, "every example starts with an unsupervised prompt token"
            ids += r["input_ids"]
            labels += r["labels"]
            pos += range(len(r["input_ids"]))
        return {
            "input_ids": torch.tensor([ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([pos]),
        }


# ---- preview -----------------------------------------------------------------------------------------------


def preview(row: dict, tokenizer: Any):
    """A rich Text of one example: prompt tokens dim, supervised tokens green (nanochat's idea)."""
    from rich.text import Text

    text = Text()
    for tid, label in zip(row["input_ids"], row["labels"], strict=True):
        piece = tokenizer.decode([tid])
        text.append(piece, style="bold green" if label != IGNORE else "dim")
    return text
