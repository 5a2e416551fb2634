"""Evaluation item sets from the external data: IFEval's prompts and Self-Instruct's user-oriented
instructions. Both are for evaluation only: never train on them (see ../shared/data/external/PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from selfinstruct.errors import InputError, SelfInstructError
from selfinstruct.evaluation.answers import Item
from selfinstruct.jsonl import iter_json_objects

if TYPE_CHECKING:
    from selfinstruct.ifeval import IFEvalPrompt

EXTERNAL = Path("../shared/data/external")
IFEVAL_DATA = EXTERNAL / "ifeval_input_data.jsonl"
USER_ORIENTED = EXTERNAL / "self_instruct_user_oriented_instructions.jsonl"


def external_file(relative: Path) -> Path:
    """A file beside the checkout: from the working directory, else from the package's checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / relative).is_file():
            return (root / relative).resolve()
    raise SelfInstructError(f"no evaluation data at {relative} (relative to the repository); pass `--data`")


def load_ifeval(path: str | Path | None = None, limit: int | None = None) -> list[IFEvalPrompt]:
    """IFEval's prompts (checked by `selfinstruct.ifeval`), the first `limit` of them."""
    from selfinstruct.ifeval import read_inputs

    prompts = read_inputs(Path(path) if path is not None else external_file(IFEVAL_DATA))
    return prompts[:limit] if limit is not None else prompts


def ifeval_items(prompts: list[IFEvalPrompt]) -> list[Item]:
    """The prompt is the whole instruction: IFEval asks it as one user turn."""
    return [Item(id=f"ifeval-{p.key}", instruction=p.prompt) for p in prompts]


def load_instructions(path: str | Path | None = None, limit: int | None = None) -> list[Item]:
    """Self-Instruct records ({id, instruction, instances: [{input, ...}]}, first instance's input) or Alpaca
    records ({instruction, input}); other keys are ignored."""
    path = Path(path) if path is not None else external_file(USER_ORIENTED)
    items: list[Item] = []
    for line, obj in iter_json_objects(path):
        instruction = obj.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise InputError(path, "must be a non-empty string", line=line, field="instruction")
        inst = obj.get("instances")
        if inst is not None and (not isinstance(inst, list) or not inst or not isinstance(inst[0], dict)):
            raise InputError(
                path, "must be a non-empty list of {input, output}", line=line, field="instances"
            )
        inp = inst[0].get("input", "") if inst else obj.get("input", "")
        if not isinstance(inp, str):
            raise InputError(
                path, "must be a string", line=line, field="instances.0.input" if inst else "input"
            )
        items.append(Item(id=str(obj.get("id", f"line{line}")), instruction=instruction, input=inp))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise InputError(path, "no instructions")
    return items
