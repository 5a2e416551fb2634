"""Pairwise preference: a judge model reads one instruction and two answers (student's, base's) and says which
is better, or that they tie.

Judges favour whichever answer comes first (or second) whatever it says, so every pair is asked in both orders
and the two verdicts are averaged: a judge that always picks position A gives every item a tie (0.5). An item
scores 1 when the student wins both orders, 0 when it loses both, 0.5 for anything in between; the win rate is
the mean over items, with a bootstrap interval. A verdict that names no answer is kept as `unparseable`, and
its item is left out of the win rate (and counted).

A judge running in our own vLLM engine (the embedded model by default) is constrained to answer exactly
"A", "B" or "tie" (`Sampling.choice`): a 135M model asked for one word echoes the instructions instead
("A if answer A is better, B ...") and no verdict could be read. A judge behind a URL may be any server, so it
answers freely and its first word is parsed.

The prompt is our own wording. Verdicts are kept and resumed like answers (`AnswerBook`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfinstruct.evaluation.answers import Answer, AnswerBook, Item, ModelRef
from selfinstruct.evaluation.stats import Interval, bootstrap_mean
from selfinstruct.llm.base import Backend, Sampling

JUDGE_PROMPT = (
    "Two assistants answered the same request. Read both and decide which answer serves the person who asked "
    "better: it does what was asked, it is correct, and it is clear. A longer answer is not better for being "
    "longer.\n\n"
    "=== Request ===\n{request}\n\n"
    "=== Answer A ===\n{a}\n\n"
    "=== Answer B ===\n{b}\n\n"
    "Reply with a single word: A if answer A is better, B if answer B is better, tie if neither is."
)
WEAK_JUDGE = (
    "the judge is the embedded 135M model: it is too weak to tell good answers from bad ones, so read its win "
    "rate as a check that the machinery runs; pass --judge-url/--judge-model for a strong judge"
)
JUDGE_SAMPLING = Sampling(temperature=0.0, max_tokens=8, seed=0)
CHOICES = ("A", "B", "tie")

Choice = Literal["A", "B", "tie", "unparseable"]
_VERDICT = re.compile(r"^[\s\W]*(?:(?:answer|verdict)\W*)?(A|B|tie)\b", re.IGNORECASE)


def parse_verdict(text: str) -> Choice:
    """The first word of the judge's reply, after an optional "Answer"/"Verdict:" lead-in: A, B or tie.
    Lower-case a/b count too (a small model's reply is often "a"), but only as the whole first word. A first
    line that also names the other answer ("A is better, B is better", or the instruction echoed back: "A if
    answer A is better, B ...") is no verdict: `unparseable`."""
    m = _VERDICT.match(text)
    if not m:
        return "unparseable"
    word = m.group(1)
    if word.lower() == "tie":
        return "tie"
    other = "B" if word.upper() == "A" else "A"
    first_line = text.strip().split("\n", 1)[0]
    if re.search(rf"\b{other}\b", first_line):
        return "unparseable"
    return word.upper()  # type: ignore[return-value]


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item: str
    order: Literal["student_first", "base_first"]
    choice: Choice
    raw: str = Field(description="The judge's reply as it came (data: escape before showing it).")


class JudgeReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    judge: str
    items: int = Field(description="Instructions asked.")
    compared: int = Field(description="Items with both answers and both verdicts parsed.")
    failed: int = Field(description="Items where the student, the base or the judge failed: left out.")
    unparseable: int = Field(description="Items with at least one verdict that named no answer: left out.")
    wins: int
    ties: int
    losses: int
    position_a_share: float = Field(description="Share of parsed verdicts picking position A (bias check).")
    win_rate: Interval | None = Field(description="Student's mean item score (win 1, tie 0.5, loss 0).")
    verdicts: list[Verdict]


def _student_score(v: Verdict) -> float:
    """1 if the verdict prefers the student, 0 if the base, 0.5 for a tie."""
    if v.choice == "tie":
        return 0.5
    student_is_a = v.order == "student_first"
    return 1.0 if (v.choice == "A") == student_is_a else 0.0


def judge_prompt(item: Item, a: str, b: str) -> str:
    request = item.instruction.strip() + (f"\n\n{item.input.strip()}" if item.input.strip() else "")
    return JUDGE_PROMPT.format(request=request, a=a.strip(), b=b.strip())


def judge_pairs(
    items: Sequence[Item],
    student: dict[str, Answer | str],
    base: dict[str, Answer | str],
    *,
    judge: ModelRef,
    book: AnswerBook,
    start: Callable[[str], Backend],
    resamples: int = 10_000,
    seed: int = 0,
    constrained: bool = False,
) -> JudgeReport:
    """Ask `judge` about every item both models answered, in both orders, and sum up. `constrained`: the
    judge's reply is decoded as exactly one of `CHOICES` (its backend must support `Sampling.choice`)."""
    asks: list[tuple[Item, str, Item]] = []
    failed = 0
    for it in items:
        s, b = student.get(it.id), base.get(it.id)
        if not isinstance(s, Answer) or not isinstance(b, Answer):
            failed += 1
            continue
        for order, first, second in (("student_first", s, b), ("base_first", b, s)):
            text = judge_prompt(it, first.text, second.text)
            digest = hashlib.sha256(text.encode()).hexdigest()[:12]
            asks.append((it, order, Item(id=f"{it.id}:{order}:{digest}", instruction=text)))
    sampling = JUDGE_SAMPLING.model_copy(update={"choice": CHOICES}) if constrained else JUDGE_SAMPLING
    got = book.answer(judge, [q for _, _, q in asks], sampling, start) if asks else {}

    verdicts: list[Verdict] = []
    per_item: dict[str, list[Verdict | None]] = {}
    for it, order, q in asks:
        a = got[q.id]
        v = (
            Verdict(item=it.id, order=order, choice=parse_verdict(a.text), raw=a.text)
            if isinstance(a, Answer)
            else None
        )
        if v is not None:
            verdicts.append(v)
        per_item.setdefault(it.id, []).append(v)

    scores, unparseable, wins, ties, losses, picks_a, parsed = [], 0, 0, 0, 0, 0, 0
    for pair in per_item.values():
        if any(v is None for v in pair):
            failed += 1
            continue
        if any(v.choice == "unparseable" for v in pair):
            unparseable += 1
            continue
        # Position A is the student in "student_first", the base in "base_first".
        score = sum(_student_score(v) for v in pair) / len(pair)
        scores.append(score)
        wins, ties, losses = wins + (score == 1.0), ties + (0.0 < score < 1.0), losses + (score == 0.0)
        picks_a += sum(v.choice == "A" for v in pair)
        parsed += len(pair)
    return JudgeReport(
        judge=judge.path,
        items=len(items),
        compared=len(scores),
        failed=failed,
        unparseable=unparseable,
        wins=wins,
        ties=ties,
        losses=losses,
        position_a_share=picks_a / parsed if parsed else 0.0,
        win_rate=bootstrap_mean(scores, resamples=resamples, seed=seed) if scores else None,
        verdicts=verdicts,
    )


def evaluate_judge(
    student: ModelRef,
    base: ModelRef,
    judge: ModelRef,
    *,
    start: Callable[[str], Backend],
    judge_start: Callable[[str], Backend],
    out_dir: str | Path,
    data: str | Path | None = None,
    limit: int | None = None,
    max_tokens: int = 256,
    resamples: int = 10_000,
    seed: int = 0,
    constrained: bool = False,
) -> JudgeReport:
    """Both models answer the open-ended instructions (the 252 user-oriented ones by default; answers kept
    in OUT/answers.jsonl), then the judge compares them (verdicts kept in OUT/verdicts.jsonl)."""
    from selfinstruct.evaluation.items import load_instructions

    items = load_instructions(data, limit)
    out = Path(out_dir)
    answers = AnswerBook(out / "answers.jsonl")
    verdicts = AnswerBook(out / "verdicts.jsonl")  # checked now, not after both models have answered
    sampling = Sampling(temperature=0.0, max_tokens=max_tokens, seed=seed)
    # Student first: right after IFEval its engine is the one still running.
    s = answers.answer(student, items, sampling, start)
    b = answers.answer(base, items, sampling, start)
    return judge_pairs(
        items,
        s,
        b,
        judge=judge,
        book=verdicts,
        start=judge_start,
        resamples=resamples,
        seed=seed,
        constrained=constrained,
    )
