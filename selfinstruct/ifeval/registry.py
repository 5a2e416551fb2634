"""IFEval's 25 instruction ids and how to build a check from one instruction's `kwargs`.

The ids are IFEval's own (`group:name`, as in its input file); the classes live in the three `checks_*`
modules, grouped by what they look at.
"""

from __future__ import annotations

from typing import Any

from selfinstruct.ifeval import checks_content, checks_format, checks_length
from selfinstruct.ifeval.base import Instruction

INSTRUCTIONS: dict[str, type[Instruction]] = {
    cls.id: cls for cls in checks_content.CHECKS + checks_format.CHECKS + checks_length.CHECKS
}
assert len(INSTRUCTIONS) == 25, "IFEval defines 25 instruction types"


def build(instruction_id: str, kwargs: dict[str, Any]) -> Instruction:
    """The check for one instruction. Arguments set to null are left out: some copies of IFEval's input file
    (the Hugging Face one) list every argument of every type on each instruction, with nulls for the unused.

    Raises KeyError for an unknown id and pydantic's ValidationError for arguments that don't fit.
    """
    cls = INSTRUCTIONS[instruction_id]
    return cls.model_validate({k: v for k, v in kwargs.items() if v is not None})
