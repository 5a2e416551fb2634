"""Recipes (`pipelines/*.yaml`): one pydantic model per section, unknown keys refused (STYLE rule 9).

The defaults below are the single commented block of truth; a recipe overrides what it names. `data_fields`
lists which settings change the data a run produces: resuming a run with any of those changed needs --force.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selfinstruct.errors import InputError
from selfinstruct.filters import FilterConfig
from selfinstruct.jsonl import first_error
from selfinstruct.llm.base import Sampling
from selfinstruct.llm.config import BackendConfig, VLLMConfig
from selfinstruct.sft.config import SFTConfig, TrainerFieldError
from selfinstruct.yamlfile import line_of, read_yaml


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a NaN compares False with everything


class LoopConfig(_Section):
    """How the bootstrap loop runs and when it stops."""

    mode: Literal["self_instruct", "alpaca"] = Field(
        "self_instruct",
        description="self_instruct: new instructions, then classification, then instances (Wang et al. 2022). "
        "alpaca: complete (instruction, input, output) examples in one request (Taori et al. 2023).",
    )
    target: int = Field(100, ge=1, description="Stop once this many tasks are accepted.")
    round_size: int = Field(
        64, ge=1, le=8192, description="Requests sent to the backend at once; large enough to keep vLLM busy."
    )
    max_rounds: int | None = Field(None, ge=1, description="Stop after this many rounds (None: no limit).")
    max_requests: int | None = Field(
        None, ge=1, description="Stop after this many requests (None: no limit)."
    )
    patience: int | None = Field(
        20, ge=1, description="Stop after this many rounds in a row that accept nothing (None: never)."
    )
    seed: int = Field(0, description="Seeds the in-context sampling and every request's sampling seed.")
    prompt_style: Literal["auto", "chat", "raw"] = Field(
        "auto",
        description="chat: the model's chat template; raw: plain text continuation; auto: chat if the "
        "model has a chat template.",
    )
    in_context_seeds: int = Field(
        6, ge=0, description="Seed tasks shown per instruction request (Self-Instruct: 6)."
    )
    in_context_machine: int = Field(
        2, ge=0, description="Accepted machine tasks shown per instruction request (Self-Instruct: 2)."
    )
    new_per_request: int = Field(8, ge=1, le=50, description="New instructions asked for per request.")
    instance_shots: int = Field(
        2, ge=0, description="Seed tasks shown as layout examples for instance generation."
    )
    max_instances: int = Field(3, ge=1, description="Most instances kept per task.")
    alpaca_in_context: int = Field(3, ge=1, description="Seed examples shown per Alpaca request.")
    schedule: Literal["rounds", "stream"] = Field(
        "rounds",
        description="rounds: send a batch, wait for all of it, decide, repeat. stream: keep round_size requests "
        "in flight and decide on each answer as it arrives (no barrier; the order is journaled).",
    )
    machine_pool: Literal["admitted", "accepted"] = Field(
        "accepted",
        description="Where in-context machine tasks are drawn from. admitted: every instruction that passed the "
        "novelty filter (Self-Instruct's code does this); accepted: only tasks whose instances passed too.",
    )
    classify_unclear: Literal["ask_again", "no", "yes"] = Field(
        "ask_again",
        description="What a yes/no answer that reads as neither means. ask_again: ask once more with greedy "
        "decoding, then 'no'; no / yes: take it as that at once. Unclear answers are counted and kept in meta.",
    )

    @model_validator(mode="after")
    def _some_context(self) -> LoopConfig:
        if self.mode == "self_instruct" and self.in_context_seeds + self.in_context_machine == 0:
            raise ValueError("`loop.in_context_seeds` must be >= 1 when in_context_machine is 0, got 0")
        return self


class SamplingConfig(_Section):
    """Sampling for each kind of request."""

    instructions: Sampling = Field(
        Sampling(temperature=0.7, top_p=0.95, max_tokens=384, frequency_penalty=0.3),
        description="New instructions (and Alpaca examples).",
    )
    classify: Sampling = Field(Sampling(temperature=0.0, max_tokens=4), description="Yes/No classification.")
    instances: Sampling = Field(
        Sampling(temperature=0.7, top_p=0.95, max_tokens=384), description="Instances of accepted tasks."
    )


class EvalConfig(_Section):
    """Student vs base on the same items (see `selfinstruct eval`): IFEval's four accuracies, optionally a
    judge's win rate, every difference with a paired bootstrap interval. Both models get greedy decoding, the
    same `max_tokens` and the same stop rule; answers are kept in RUN/eval/ and reused on rerun."""

    ifeval_data: str | None = Field(
        None, description="IFEval prompts; None: the 541 in ../shared/data/external."
    )
    ifeval_limit: int | None = Field(None, ge=1, description="First N IFEval prompts; None: all of them.")
    data: str | None = Field(
        None, description="Open-ended instructions for the judge; None: the Self-Instruct user-oriented set."
    )
    limit: int | None = Field(64, ge=1, description="First N open-ended instructions (judge).")
    max_tokens: int = Field(256, ge=1, description="Most tokens per answer.")
    judge: bool = Field(False, description="Also ask a judge which answer is better (both orders).")
    judge_backend: BackendConfig | None = Field(
        None, description="The judge; None: the embedded model in process (a weak judge: a printed warning)."
    )
    resamples: int = Field(10_000, ge=100, description="Bootstrap resamples per interval.")
    seed: int = Field(0, description="Seeds decoding and the bootstrap.")


class Recipe(_Section):
    """A whole pipeline: where seeds come from, which model, how the loop runs, filters, training, eval."""

    name: str = Field(description="Run name; outputs go to data/runs/NAME unless --out says otherwise.")
    seeds: str = Field("seeds", description="Seed tasks: a file or a directory of *.jsonl / *.json.")
    backend: BackendConfig = Field(default_factory=VLLMConfig, description="Where generations come from.")
    loop: LoopConfig = Field(default_factory=LoopConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # Control characters too: the name becomes a directory and is printed in every summary.
        if not v or "/" in v or v.startswith(".") or any(c < " " or "\x7f" <= c <= "\x9f" for c in v):
            raise ValueError(f"`name` must be a plain directory name, got {v!r}")
        return v


# Settings whose change alters the data a run produces (checked on resume). Paths are dotted prefixes.
DATA_FIELDS = (
    "backend.model",
    "backend.dtype",
    "loop.mode",
    "loop.seed",
    "loop.prompt_style",
    "loop.in_context_seeds",
    "loop.in_context_machine",
    "loop.new_per_request",
    "loop.instance_shots",
    "loop.max_instances",
    "loop.alpaca_in_context",
    "loop.machine_pool",
    "loop.schedule",
    "loop.classify_unclear",
    "sampling",
    "filters",
)


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe; `overrides` maps dotted keys ("loop.target") to values set after reading."""
    path = Path(path)
    data, lines = read_yaml(path, "recipe")
    if not isinstance(data, dict):
        raise InputError(path, "a recipe must be a mapping of sections", line=1)
    data.setdefault("name", path.stem)
    for key, value in (overrides or {}).items():
        node = data
        *parents, leaf = key.split(".")
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):  # `loop: 5` with `-n 3`: say so rather than fail inside Python
                where = ".".join(parents[: i + 1])
                raise InputError(
                    path, "must be a mapping of settings", line=line_of(lines, where), field=where
                )
        node[leaf] = value
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        field, msg = first_error(e)
        if isinstance(bad := e.errors()[0].get("ctx", {}).get("error"), TrainerFieldError):
            field, msg = f"sft.{bad.field}", bad.detail  # the key's own line, not the `trainer:` block's
        raise InputError(path, msg, line=line_of(lines, field), field=field) from None


def data_view(resolved: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that decides the data (see DATA_FIELDS)."""
    out: dict[str, Any] = {}
    for dotted in DATA_FIELDS:
        node: Any = resolved
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[dotted] = node
    return out


def diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two nested dicts: ["filters.rouge.threshold: 0.7 -> 0.6"]."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            changes += diff(a, b, name + ".")
        elif a != b:
            changes.append(f"{name}: {a!r} -> {b!r}")
    return changes


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_settings(recipe: Recipe, overrides: dict[str, Any] | None = None) -> list[tuple[str, Any, str]]:
    """(dotted key, value, source) for every setting that differs from the built-in default (STYLE rule 11)."""
    default = flatten(
        Recipe(
            name=recipe.name,
            backend={
                "kind": recipe.backend.kind,
                **(
                    {"base_urls": recipe.backend.base_urls, "model": recipe.backend.model}
                    if recipe.backend.kind == "openai"
                    else {}
                ),
            },
        ).model_dump(mode="json")
    )
    current = flatten(recipe.model_dump(mode="json"))
    flags = set(overrides or {})
    return [
        (k, v, "flag" if any(k == f or k.startswith(f + ".") for f in flags) else "recipe")
        for k, v in current.items()
        if default.get(k, object()) != v and k != "name"
    ]
