"""Scoring answers with IFEval's definitions: strict and loose, per instruction and per prompt.

Strict: the answer as given must follow the instruction. Loose (IFEval's upper bound, arXiv 2311.07911 sec. 3):
it is enough that one of eight variants does, the answer with its first line, its last line or both removed,
each with and without every `*` removed, since a model's "Sure, here it is:" opener or markdown stars should
not hide an instruction it did follow. An empty (all-space) answer or variant follows nothing.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel, ConfigDict, Field

from selfinstruct.errors import SelfInstructError
from selfinstruct.ifeval.data import IFEvalPrompt


def loose_variants(response: str) -> list[str]:
    """The eight texts loose scoring tries, the answer itself first."""
    lines = response.split("\n")
    cut = [
        response,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return cut + [text.replace("*", "") for text in cut]


class InstructionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="IFEval instruction id.")
    strict: bool = Field(description="The answer as given follows it.")
    loose: bool = Field(description="At least one of the eight loose variants follows it.")


class ItemResult(BaseModel):
    """One prompt's verdicts."""

    model_config = ConfigDict(extra="forbid")

    key: int = Field(description="IFEval's id of the prompt.")
    prompt: str = Field(description="The IFEval prompt.")
    response: str = Field(description="The answer scored, as given.")
    instructions: list[InstructionResult] = Field(
        description="One verdict per instruction, in the prompt's order."
    )
    strict: bool = Field(description="Every instruction followed, strictly.")
    loose: bool = Field(description="Every instruction followed, loosely.")


class TypeScore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(description="Instructions of this type among the prompts scored.")
    strict: float = Field(description="Fraction followed, strict.")
    loose: float = Field(description="Fraction followed, loose.")


class IFEvalScores(BaseModel):
    """IFEval's four accuracies (fractions in [0, 1]) with the per-type breakdown and every item's verdicts."""

    model_config = ConfigDict(extra="forbid")

    prompt_strict: float = Field(description="Share of prompts whose every instruction is followed, strict.")
    prompt_loose: float = Field(description="Share of prompts whose every instruction is followed, loose.")
    instruction_strict: float = Field(description="Share of all instructions followed, strict.")
    instruction_loose: float = Field(description="Share of all instructions followed, loose.")
    prompts: int = Field(description="Prompts scored.")
    instructions: int = Field(description="Instructions scored.")
    per_type: dict[str, TypeScore] = Field(description="By instruction id, sorted.")
    items: list[ItemResult] = Field(description="One per prompt, in input order.")

    def accuracies(self) -> dict[str, float]:
        """The four headline figures, IFEval's names for them."""
        return {
            "prompt_strict": self.prompt_strict,
            "prompt_loose": self.prompt_loose,
            "instruction_strict": self.instruction_strict,
            "instruction_loose": self.instruction_loose,
        }


def score_item(prompt: IFEvalPrompt, response: str) -> ItemResult:
    """One prompt's answer against each of its instructions, strict and loose."""
    variants = [v for v in loose_variants(response) if v.strip()]
    results = []
    for iid, check in zip(prompt.instruction_id_list, prompt.checks(), strict=True):
        strict = bool(response.strip()) and check.follows(response)
        loose = strict or any(check.follows(v) for v in variants)
        results.append(InstructionResult(id=iid, strict=strict, loose=loose))
    return ItemResult(
        key=prompt.key,
        prompt=prompt.prompt,
        response=response,
        instructions=results,
        strict=all(r.strict for r in results),
        loose=all(r.loose for r in results),
    )


def score_responses(inputs: list[IFEvalPrompt], responses: dict[str, str]) -> IFEvalScores:
    """Score the answer to each prompt in `inputs` (`responses` maps prompt text to answer; answers to other
    prompts are ignored). A prompt with no answer is an error: leaving it out would raise every accuracy."""
    if not inputs:
        raise SelfInstructError("no IFEval prompts to score")
    missing = [p for p in inputs if p.prompt not in responses]
    if missing:
        raise SelfInstructError(
            f"{len(missing)} of {len(inputs)} IFEval prompts have no answer, first: {missing[0].source}"
        )
    items = [score_item(p, responses[p.prompt]) for p in inputs]
    by_type: dict[str, list[InstructionResult]] = defaultdict(list)
    for item in items:
        for r in item.instructions:
            by_type[r.id].append(r)
    every = [r for item in items for r in item.instructions]
    return IFEvalScores(
        prompt_strict=sum(i.strict for i in items) / len(items),
        prompt_loose=sum(i.loose for i in items) / len(items),
        instruction_strict=sum(r.strict for r in every) / len(every),
        instruction_loose=sum(r.loose for r in every) / len(every),
        prompts=len(items),
        instructions=len(every),
        per_type={
            iid: TypeScore(
                count=len(rs),
                strict=sum(r.strict for r in rs) / len(rs),
                loose=sum(r.loose for r in rs) / len(rs),
            )
            for iid, rs in sorted(by_type.items())
        },
        items=items,
    )
