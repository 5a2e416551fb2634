"""The shape every IFEval instruction check takes: its arguments as a pydantic model, one `follows` method.

The arguments are the instruction's `kwargs` from IFEval's input file, so a misspelled or missing argument is an
error naming the field instead of the random default IFEval's reference code would draw for it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

# IFEval's two comparisons: "less than" is count < N, "at least" is count >= N.
Relation = Literal["less than", "at least"]


def compare(count: int, relation: Relation, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


class Instruction(BaseModel):
    """One verifiable instruction. Subclasses set `id` (IFEval's `group:name`) and implement `follows`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ClassVar[str]

    def follows(self, response: str) -> bool:
        """Whether `response` obeys the instruction, with IFEval's definition; no I/O, no state."""
        raise NotImplementedError
