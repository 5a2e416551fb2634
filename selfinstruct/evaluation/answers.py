"""Every model's answers, generated once and kept: a rerun resumes instead of regenerating.

An answer is keyed by the model's fingerprint (its files, not its path), the item, the prompt it was given
and the decoding settings, so moving a checkpoint keeps its answers and retraining one does not reuse stale
ones. How a model is prompted comes from the checkpoint itself: the template it was trained with (sft.json),
else its chat template, else our plain instruction template as raw text (a base model). Base and student
get the same decoding and the same stop rule.

This module knows nothing of scoring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfinstruct.errors import InputError
from selfinstruct.jsonl import MAX_LINE_BYTES, iter_json_records, parse_record
from selfinstruct.llm.base import Backend, Request, Sampling
from selfinstruct.store import JsonlAppender, refuse_unless_plain, repair_torn_tail, whole_record

# Raw prompts use our plain instruction template; a base model that keeps writing after its reply tends to
# start the next "## Task" block. Stopping there is part of the shared stop rule (both models get it).
PLAIN_STOP = ("\n## Task",)
_HEAD_BYTES = 1 << 20


class Item(BaseModel):
    """One thing to answer: an instruction (with optional input) under a stable id."""

    model_config = ConfigDict(extra="forbid")

    id: str
    instruction: str
    input: str = ""


class ModelRef(BaseModel):
    """A model to evaluate: where it is, what it is (fingerprint) and how it wants prompts."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Checkpoint directory, or the name a server knows the model by.")
    fingerprint: str = Field(description="Hash of the checkpoint's files; `served:NAME` for a remote model.")
    mode: Literal["chat", "plain"] = Field(description="chat: the model's chat template; plain: raw text.")


class Answer(BaseModel):
    """One model's answer to one item, as kept in answers.jsonl."""

    model_config = ConfigDict(extra="forbid")

    key: str
    model: str
    fingerprint: str
    item: str
    decoding: str
    text: str
    finish_reason: str | None
    tokens: int


def fingerprint(model: str | Path) -> str:
    """What a checkpoint is, from its files: configs and tokenizer whole, each weight file by size and its first
    MiB (hashing 500 MB of weights per eval would cost more than the answers it saves)."""
    path = Path(model)
    if not path.is_dir():
        return f"served:{model}"
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if not f.is_file() or f.name.startswith("selfinstruct-") or f.suffix in (".jsonl", ".log"):
            continue
        h.update(f.name.encode() + b"\0" + str(f.stat().st_size).encode() + b"\0")
        if f.suffix in (".json", ".jinja", ".txt", ".model") and f.stat().st_size < (32 << 20):
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".gguf"):
            with open(f, "rb") as fh:
                h.update(fh.read(_HEAD_BYTES))
    return h.hexdigest()[:16]


def model_ref(model: str | Path) -> ModelRef:
    """How `model` must be prompted, read from the checkpoint (a served model is sent chat messages)."""
    path = Path(model)
    if not path.is_dir():
        return ModelRef(path=str(model), fingerprint=fingerprint(model), mode="chat")
    from selfinstruct.sft.train import read_summary

    summary = read_summary(path)  # a damaged one is one line naming it
    if summary is not None:
        mode = summary["result"]["template"]
    else:
        cfg = path / "tokenizer_config.json"
        has_chat = (path / "chat_template.jinja").is_file() or (
            cfg.is_file() and bool(json.loads(cfg.read_text(encoding="utf-8")).get("chat_template"))
        )
        mode = "chat" if has_chat else "plain"
    return ModelRef(path=str(model), fingerprint=fingerprint(model), mode=mode)


def request_for(ref: ModelRef, item: Item, sampling: Sampling) -> Request:
    """The request `ref` gets for `item`: chat messages, or the plain template as raw text with its stop."""
    from selfinstruct.sft.render import inference_prompt

    fields = inference_prompt(ref.mode, item.instruction, item.input)
    if ref.mode == "plain":
        sampling = sampling.model_copy(update={"stop": tuple(sampling.stop) + PLAIN_STOP})
    return Request(id=item.id, sampling=sampling, **fields)


def decoding_key(sampling: Sampling) -> str:
    """The decoding settings as one short hash (part of every answer's key)."""
    return hashlib.sha256(sampling.model_dump_json().encode()).hexdigest()[:12]


def answer_key(ref: ModelRef, item: Item, request: Request) -> str:
    prompt = request.prompt if request.prompt is not None else json.dumps(request.messages)
    raw = "\0".join([ref.fingerprint, item.id, prompt, decoding_key(request.sampling)])
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


# Every line AnswerBook writes starts so (`dumps` of an Answer: `key` is its first field).
_ANSWER_START = b'{"key": "'
_NOT_OURS = (
    "neither an answer nor the start of one: this is not an answers file; choose another output directory"
)


def _read_own(path: Path) -> dict[str, Answer]:
    """The answers kept at `path`, refusing a file that is not an answers file before its torn tail is cut: a
    link or a device (a write would land elsewhere), a line that is no Answer, or a last line without its
    newline that is neither a whole Answer nor the start of one (a crash's torn write is one of the two)."""
    refuse_unless_plain(path, "answers are kept only in a file of their own")
    answers: dict[str, Answer] = {}
    if not path.exists() or path.stat().st_size == 0:
        return answers
    tail, line = _tail(path)
    if tail and not (tail.startswith(_ANSWER_START) or _ANSWER_START.startswith(tail)):
        raise InputError(path, _NOT_OURS, line=line)
    for n, index, obj in iter_json_records(path, unfinished_tail=True):
        if index is not None:
            raise InputError(path, "a JSON array, not an answers file (JSON Lines)", line=n)
        a = parse_record(Answer, obj, path, n)
        answers[a.key] = a
    if tail and (whole := whole_record(tail)) is not None:  # a crash between the line and its newline
        a = parse_record(Answer, whole, path, line)
        answers[a.key] = a
    return answers


def _tail(path: Path) -> tuple[bytes, int]:
    """The last line of `path` when it has no newline (else b""; its first MAX_LINE_BYTES + 1 bytes at most:
    a longer line is refused by the reader), and its line number."""
    lines, last = 0, b""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            lines += chunk.count(b"\n")
            last = chunk.rpartition(b"\n")[2] if b"\n" in chunk else last + chunk
            last = last[: MAX_LINE_BYTES + 1]
    return last, lines + 1


class AnswerBook:
    """answers.jsonl of one eval directory: read once, appended to, fsynced after every batch."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Read and checked before anything is written: a file that is not ours is refused as it was found.
        self.answers: dict[str, Answer] = _read_own(self.path)
        repair_torn_tail(self.path)  # a crash mid-write leaves at most one unfinished line
        self.generated = 0  # answers produced by a backend in this process

    def answer(
        self,
        ref: ModelRef,
        items: Sequence[Item],
        sampling: Sampling,
        start: Callable[[str], Backend],
    ) -> dict[str, Answer | str]:
        """item id -> its Answer, or the error text where the backend failed on that item. Only items with
        no answer on disk reach the backend, and the backend is started only if one is missing."""
        requests = {it.id: request_for(ref, it, sampling) for it in items}
        keys = {it.id: answer_key(ref, it, requests[it.id]) for it in items}
        todo = [it for it in items if keys[it.id] not in self.answers]
        out: dict[str, Answer | str] = {}
        if todo:
            # `start` owns the backend's life (EngineSlot keeps it for the next call on the same model).
            completions = start(ref.path).generate([requests[it.id] for it in todo])
            with JsonlAppender(self.path) as w:
                for it, c in zip(todo, completions, strict=True):
                    if not c.ok:
                        out[it.id] = c.error or "failed"  # not kept: a rerun tries it again
                        continue
                    a = Answer(
                        key=keys[it.id],
                        model=ref.path,
                        fingerprint=ref.fingerprint,
                        item=it.id,
                        decoding=decoding_key(requests[it.id].sampling),
                        text=c.text,
                        finish_reason=c.finish_reason,
                        tokens=c.completion_tokens,
                    )
                    w.write(a)
                    self.answers[a.key] = a
                    self.generated += 1
        for it in items:
            out.setdefault(it.id, self.answers.get(keys[it.id], "failed"))
        return out
