"""Reading IFEval's files: the prompts (`key, prompt, instruction_id_list, kwargs`) and a file of answers
(`{"prompt", "response"}` per line, IFEval's own response format). Errors name the file, line and field.

IFEval's prompts are Apache-2.0 data from google-research's `instruction_following_eval`; this package does not
ship them, so their path comes from `--inputs` or `$SELFINSTRUCT_IFEVAL_INPUTS` (see `resolve_inputs`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from selfinstruct.errors import InputError, SelfInstructError
from selfinstruct.ifeval.base import Instruction
from selfinstruct.ifeval.registry import INSTRUCTIONS, build
from selfinstruct.jsonl import first_error, iter_json_objects, parse_record

INPUTS_ENV = "SELFINSTRUCT_IFEVAL_INPUTS"
# Where a user can put IFEval's input_data.jsonl once and forget about --inputs (relative to the working dir).
DEFAULT_INPUTS = Path("data/ifeval/input_data.jsonl")


class IFEvalPrompt(BaseModel):
    """One IFEval prompt and its instructions, with one `kwargs` object per instruction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: int = Field(description="IFEval's id of the prompt.")
    prompt: str = Field(min_length=1, description="The request, which holds the instructions in words.")
    instruction_id_list: list[str] = Field(min_length=1, description="IFEval instruction ids, `group:name`.")
    kwargs: list[dict[str, Any]] = Field(description="The arguments of each instruction, in the same order.")
    # Where it was read from, for error messages; unset when built in code.
    _path: str | None = PrivateAttr(default=None)
    _line: int | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> IFEvalPrompt:
        if len(self.kwargs) != len(self.instruction_id_list):
            raise ValueError(
                f"`kwargs` must hold one object per instruction ({len(self.instruction_id_list)}), "
                f"got {len(self.kwargs)}"
            )
        for i, iid in enumerate(self.instruction_id_list):
            if iid not in INSTRUCTIONS:
                raise ValueError(f"`instruction_id_list[{i}]` must be one of IFEval's 25 ids, got {iid!r}")
        return self

    @property
    def source(self) -> str:
        """`file:line` it was read from, or its key."""
        return f"{self._path}:{self._line}" if self._path else f"key {self.key}"

    def checks(self) -> list[Instruction]:
        """One check per instruction; a bad argument raises `InputError` naming `kwargs.I.FIELD`."""
        out = []
        for i, (iid, kwargs) in enumerate(zip(self.instruction_id_list, self.kwargs, strict=True)):
            try:
                out.append(build(iid, kwargs))
            except ValidationError as e:
                field, msg = first_error(e)
                where = self._path or f"IFEval prompt {self.key}"
                raise InputError(
                    where, f"{msg} (for {iid})", line=self._line, field=f"kwargs.{i}.{field}"
                ) from None
        return out


class IFEvalAnswer(BaseModel):
    """One line of a responses file: the prompt, word for word, and the model's answer."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The IFEval prompt answered, exactly as in the input file.")
    response: str = Field(description="The model's answer (may be empty: an empty answer follows nothing).")


def resolve_inputs(inputs: Path | None) -> Path:
    """The prompts file: `inputs`, else `$SELFINSTRUCT_IFEVAL_INPUTS`, else data/ifeval/input_data.jsonl."""
    if inputs is not None:
        return inputs
    if os.environ.get(INPUTS_ENV):
        return Path(os.environ[INPUTS_ENV])
    if DEFAULT_INPUTS.is_file():
        return DEFAULT_INPUTS
    raise SelfInstructError(
        "IFEval's prompts are needed and not shipped: pass --inputs FILE, set $"
        f"{INPUTS_ENV}, or put the file at {DEFAULT_INPUTS} (it is input_data.jsonl from google-research's "
        "instruction_following_eval/data, Apache-2.0)"
    )


def read_inputs(path: str | Path) -> list[IFEvalPrompt]:
    """Every prompt in file order, each instruction's arguments checked; a duplicate prompt is an error."""
    prompts: list[IFEvalPrompt] = []
    seen: dict[str, int] = {}
    for line, obj in iter_json_objects(path):
        item = parse_record(IFEvalPrompt, obj, path, line)
        item._path, item._line = str(path), line
        if item.prompt in seen:
            raise InputError(path, f"same prompt as line {seen[item.prompt]}", line=line, field="prompt")
        seen[item.prompt] = line
        item.checks()
        prompts.append(item)
    return prompts


def read_answers(path: str | Path, prompts: list[IFEvalPrompt]) -> dict[str, str]:
    """prompt -> response for every prompt in `prompts`. An answer to a prompt not among them, a second answer
    to one prompt, or a prompt left unanswered is one error naming the file and line."""
    known = {p.prompt for p in prompts}
    answers: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, obj in iter_json_objects(path):
        answer = parse_record(IFEvalAnswer, obj, path, line)
        if answer.prompt not in known:
            raise InputError(
                path,
                f"not one of the {len(known)} IFEval prompts: {_head(answer.prompt)}",
                line=line,
                field="prompt",
            )
        if answer.prompt in answers:
            raise InputError(
                path, f"answered already on line {lines[answer.prompt]}", line=line, field="prompt"
            )
        answers[answer.prompt], lines[answer.prompt] = answer.response, line
    missing = [p for p in prompts if p.prompt not in answers]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(
            path, f"no answer to the prompt at {missing[0].source}: {_head(missing[0].prompt)}{more}"
        )
    return answers


def _head(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
