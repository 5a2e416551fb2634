"""A judge's score: an LLM rates each example 0-5 for accuracy and helpfulness, with a one-line reason.

AlpaGasus (Chen et al. 2023) kept the 9K of Alpaca's 52K examples that ChatGPT rated highest and trained a
better model. The prompt below is in our own words; the reply must start with `Score: N` (N in 0-5, halves
allowed) followed by `Reason: ...`. Any backend works (`selfinstruct.llm`: in-process vLLM or servers), one
`generate` call per batch. Scores and reasons go to task.meta["rating"]; with a threshold, a task scored below
it is rejected as `rating_too_low`, and a reply we cannot read as `rating_unparseable` (with the reply as
evidence), since a missing score is no evidence the example is good. Model text is data: it is only parsed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from selfinstruct.filters.base import reject
from selfinstruct.filters.config import RatingConfig
from selfinstruct.schema import Reject, Task

STAGE = "rating"

JUDGE_SYSTEM = (
    "You review training data for an assistant. Judge whether the response does what the instruction asks, "
    "for the given input, and whether it is correct and useful to the person who asked."
)
JUDGE_TEMPLATE = (
    "Instruction:\n{instruction}\n\n{input_block}Response:\n{output}\n\n"
    "Give the response a score from 0 (useless or wrong) to 5 (correct, complete and helpful). "
    "Answer in exactly two lines:\nScore: <a number from 0 to 5>\nReason: <one sentence>"
)
WEAK_JUDGE_NOTE = (
    "rating: the judge is the embedded 135M model, which is too weak to rate examples well; the stage runs so "
    "that it can be tried end to end. Point the backend at a strong model for scores worth filtering on."
)

# "Score: 4", "score - 4.5/5", "**Score:** 3"; the first number after the word counts.
_SCORE = re.compile(r"score\W{0,6}(\d+(?:\.\d+)?)\s*(?:/\s*5(?:\.0)?)?", re.IGNORECASE)
_BARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*5)?\s*(?:$|[\n.:,-])")
_REASON = re.compile(r"reason\W{0,6}(.+)", re.IGNORECASE)


def judge_messages(instruction: str, input: str, output: str) -> tuple[dict[str, str], ...]:
    input_block = f"Input:\n{input.strip()}\n\n" if input.strip() else ""
    user = JUDGE_TEMPLATE.format(
        instruction=instruction.strip(), input_block=input_block, output=output.strip()
    )
    return ({"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user})


def parse_rating(text: str) -> tuple[float, str] | None:
    """(score in [0, 5], reason or "") from a judge's reply, or None when there is no score in range."""
    m = _SCORE.search(text) or _BARE.match(text)
    if m is None:
        return None
    score = float(m.group(1))
    if not 0 <= score <= 5:
        return None
    r = _REASON.search(text)
    reason = r.group(1).strip().splitlines()[0].strip() if r else ""
    return score, reason[:300]


def rate(tasks: Sequence[Task], backend: Any, config: RatingConfig | None = None) -> list[Task]:
    """The tasks with meta["rating"] = {score, reason} per first instance, or {score: None, reply} if unread.

    A task is rated on its first instance (Self-Instruct tasks rarely differ in quality between instances,
    and one request per task keeps the judge's cost at one call per task).
    """
    from selfinstruct.llm import Request, Sampling

    config = config or RatingConfig()
    sampling = Sampling(temperature=config.temperature, max_tokens=config.max_tokens)
    todo = [t for t in tasks if t.instances]
    requests = [
        Request(id=t.id, messages=judge_messages(t.instruction, t.instances[0].input, t.instances[0].output),
                sampling=sampling)
        for t in todo
    ]  # fmt: skip
    replies = {t.id: c for t, c in zip(todo, backend.generate(requests), strict=True)}
    out = []
    for t in tasks:
        c = replies.get(t.id)
        if c is None:
            out.append(t)
            continue
        parsed = None if c.error else parse_rating(c.text)
        if parsed is None:
            rating = {"score": None, "reply": (c.error or c.text)[:500]}
        else:
            rating = {"score": parsed[0], "reason": parsed[1]}
        out.append(t.model_copy(update={"meta": {**t.meta, "rating": rating}}))
    return out


def select(tasks: Sequence[Task], config: RatingConfig) -> tuple[list[Task], list[Reject]]:
    """Apply the threshold to rated tasks, in input order; without one, every task is kept."""
    if config.threshold is None:
        return list(tasks), []
    kept, rejects = [], []
    for t in tasks:
        rating = t.meta.get("rating")
        if rating is None:
            kept.append(t)  # not rated (no instances): nothing to judge
        elif rating["score"] is None:
            evidence = {"reply": rating.get("reply", ""), "threshold": config.threshold}
            rejects.append(reject(t, STAGE, "rating_unparseable", evidence))
        elif rating["score"] < config.threshold:
            evidence = {"score": rating["score"], "reason": rating["reason"], "threshold": config.threshold}
            rejects.append(reject(t, STAGE, "rating_too_low", evidence))
        else:
            kept.append(t)
    return kept, rejects


def weak_judge(model: str) -> bool:
    """True when the judge is the embedded 135M model (by its directory or its name)."""
    from pathlib import Path

    from selfinstruct.models import default_model_dir

    name = str(model).lower()
    try:
        same = Path(model).resolve() == default_model_dir().resolve()
    except OSError:
        same = False
    return same or "smollm2-135m" in name
