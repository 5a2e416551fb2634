"""Quality heuristics: cheap, stateless rules on an instruction and on each instance.

Each rule has its own reason code (`heuristics_<rule>`) and evidence (the measured value and the limit, the
matched word). The rules and their sources are documented on `HeuristicsConfig`. No I/O, no state.
"""

from __future__ import annotations

import re
import string

from selfinstruct.filters.base import finish_reason, reject
from selfinstruct.filters.config import HeuristicsConfig
from selfinstruct.schema import Reject, Task

STAGE = "heuristics"


class HeuristicsFilter:
    def __init__(self, config: HeuristicsConfig | None = None):
        self.config = config = config or HeuristicsConfig()
        words = sorted(config.blacklist or [], key=len, reverse=True)
        # Whole words or phrases, case-insensitively, as Alpaca's find_word_in_string; "go to" matches
        # across any run of spaces.
        self._blacklist = (
            re.compile(
                r"\b(" + "|".join(r"\s+".join(map(re.escape, w.split())) for w in words) + r")\b",
                re.IGNORECASE,
            )
            if words
            else None
        )
        self._placeholders = {_norm_placeholder(p) for p in config.placeholder_inputs or []}

    def check_instruction(self, task: Task, *, round: int | None = None) -> Reject | None:
        """The first instruction-level rule the task breaks, or None."""
        c, inst = self.config, task.instruction.strip()

        def no(reason: str, **evidence) -> Reject:
            return reject(task, STAGE, f"heuristics_{reason}", evidence, round=round)

        if c.truncated and finish_reason(task) == "length":
            return no("truncated", finish_reason="length")
        n = len(inst.split())
        if c.min_instruction_words is not None and n < c.min_instruction_words:
            return no("too_short", words=n, min=c.min_instruction_words)
        if c.max_instruction_words is not None and n > c.max_instruction_words:
            return no("too_long", words=n, max=c.max_instruction_words)
        if self._blacklist is not None and (m := self._blacklist.search(inst)):
            return no("blacklisted_word", word=m.group(0))
        if c.write_a_program and inst.lower().startswith("write a program"):
            return no("write_a_program", prefix=inst[:15])
        if c.leading_punctuation and inst[0] in string.punctuation:
            return no("starts_with_punctuation", char=inst[0])
        if c.leading_non_ascii and not inst[0].isascii():
            return no("starts_non_ascii", char=inst[0])
        return None

    def check_instance(self, task: Task, i: int, *, round: int | None = None) -> Reject | None:
        """The first rule instance i of the task breaks, or None."""
        c, inst = self.config, task.instances[i]

        def no(reason: str, **evidence) -> Reject:
            return reject(task, STAGE, f"heuristics_{reason}", evidence, round=round, instance=i)

        if c.truncated and finish_reason(inst) == "length":
            return no("truncated", finish_reason="length")
        if c.empty_output and not inst.output.strip():
            return no("empty_output")
        if self._placeholders and inst.input.strip() and _norm_placeholder(inst.input) in self._placeholders:
            return no("placeholder_input", input=inst.input)
        if c.output_equals_input and inst.input.strip() and _norm(inst.output) == _norm(inst.input):
            return no("output_equals_input", text=inst.output[:200])
        # Self-Instruct prepare_for_finetuning.py: a value ending with a colon is a cut-off generation.
        if c.output_ends_with_colon and inst.output.strip().endswith(":"):
            return no("output_ends_with_colon", text=inst.output.strip()[-200:])
        if c.input_ends_with_colon and inst.input.strip().endswith(":"):
            return no("input_ends_with_colon", text=inst.input.strip()[-200:])
        if c.max_input_chars is not None and len(inst.input) > c.max_input_chars:
            return no("input_too_long", chars=len(inst.input), max=c.max_input_chars)
        if c.max_output_chars is not None and len(inst.output) > c.max_output_chars:
            return no("output_too_long", chars=len(inst.output), max=c.max_output_chars)
        # Self-Instruct prepare_for_finetuning.py keeps one of identical instances; the first one stays.
        if c.duplicate_instances:
            key = (_norm(inst.input), _norm(inst.output))
            for j in range(i):
                if (_norm(task.instances[j].input), _norm(task.instances[j].output)) == key:
                    return no("duplicate_instance", duplicate_of=j)
        return None

    def check_task_instances(
        self, task: Task, kept: list[int] | None = None, *, round: int | None = None
    ) -> Reject | None:
        """A rule on the task's instances together (those at indices `kept`, default all), or None.

        Self-Instruct prepare_for_finetuning.py: when two instances give different outputs for the same
        non-empty input, the task's instances contradict each other and none is used.
        """
        if not self.config.conflicting_outputs:
            return None
        seen: dict[str, int] = {}
        for i in range(len(task.instances)) if kept is None else kept:
            inst = task.instances[i]
            if not inst.input.strip():
                continue
            key = _norm(inst.input)
            if key in seen and _norm(task.instances[seen[key]].output) != _norm(inst.output):
                j = seen[key]
                evidence = {
                    "instances": [j, i],
                    "input": inst.input[:200],
                    "outputs": [task.instances[j].output[:200], inst.output[:200]],
                }
                return reject(task, STAGE, "heuristics_conflicting_outputs", evidence, round=round)
            seen.setdefault(key, i)
        return None


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _norm_placeholder(text: str) -> str:
    t = _norm(text)
    return t[:-1].rstrip() if t.endswith(".") and len(t) > 1 and t != "..." else t
