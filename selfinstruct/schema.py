"""Records every stage shares. Pure data: no I/O here (see jsonl.py and store.py).

Each record has a stable `id` and a free `meta` dict (STYLE rule 2). Unknown keys are refused so a
misspelled field in a file becomes an error instead of silently vanishing data.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


def utc_now() -> str:
    """UTC time to the second, as every record and manifest writes it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def content_id(prefix: str, *parts: str) -> str:
    """A stable id from content, so the same text gets the same id in every run and on every resume."""
    h = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]
    return f"{prefix}-{h}"


def _nonblank(value: str, field: str) -> str:
    if not value.strip():
        raise ValueError(f"`{field}` must be a non-empty string")
    return value


class Instance(_Record):
    """One input/output pair of a task; `input` is "" when the task needs none."""

    input: str = ""
    output: str
    meta: dict[str, Any] = Field(default_factory=dict)


class Task(_Record):
    """A task in the pool: a human seed or a machine-generated one, with its instances."""

    id: str
    instruction: str
    instances: list[Instance] = Field(default_factory=list)
    is_classification: bool | None = None
    provenance: Literal["seed", "generated", "readmitted"] = "seed"
    round: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    _check_instruction = field_validator("instruction")(lambda cls, v: _nonblank(v, "instruction"))

    def examples(self) -> list[Example]:
        """Flatten into one Example per instance (the shape SFT and export read)."""
        return [
            Example(
                id=f"{self.id}#{i}",
                instruction=self.instruction,
                input=inst.input,
                output=inst.output,
                meta={"task_id": self.id},
            )
            for i, inst in enumerate(self.instances)
        ]


class Example(_Record):
    """One (instruction, input, output) training example, Alpaca's shape."""

    id: str
    instruction: str
    input: str = ""
    output: str
    meta: dict[str, Any] = Field(default_factory=dict)

    _check_instruction = field_validator("instruction")(lambda cls, v: _nonblank(v, "instruction"))


class Reject(_Record):
    """A candidate a stage refused, kept so people can audit it.

    `reason` is a stable snake_case code prefixed by its stage's family (`rouge_too_similar`);
    `evidence` holds what the decision rests on (score, neighbour id and text, threshold).
    """

    id: str
    stage: str
    reason: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    raw: str = ""
    record: dict[str, Any] | None = None
    round: int | None = None
    time: str = Field(default_factory=utc_now)


class Readmission(_Record):
    """A person overruling a filter: which reject, which stage and reason, who, when."""

    reject_id: str
    task_id: str
    stage: str
    reason: str
    by: str
    time: str


class RunManifest(_Record):
    """What a run is and how far it got. Written last and replaced atomically: a stop_reason means it finished."""

    name: str
    created: str
    updated: str
    config: dict[str, Any]
    config_hash: str
    model: str
    backend: str
    # the engine's settings as the backend resolved them (dtype "auto" -> "float32" on some CPUs)
    engine: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    prompt_hashes: dict[str, str] = Field(default_factory=dict)
    seeds: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    tokens: dict[str, int] = Field(default_factory=dict)
    rounds: int = 0
    stop_reason: str | None = None
    readmitted: list[Readmission] = Field(default_factory=list)


def stable_json(obj: Any) -> str:
    """Canonical JSON for hashing configs and templates."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
