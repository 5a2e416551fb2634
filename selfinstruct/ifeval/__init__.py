"""IFEval (arXiv 2311.07911) offline: its 25 verifiable instructions, strict and loose, and the four accuracies.

`read_inputs` + `read_answers` + `score_responses` score a file of answers; `registry.build` makes one check.
Nothing here is fetched at run time; nothing here knows about models or generation.
"""

from selfinstruct.ifeval.data import IFEvalAnswer, IFEvalPrompt, read_answers, read_inputs, resolve_inputs
from selfinstruct.ifeval.score import IFEvalScores, ItemResult, loose_variants, score_item, score_responses

__all__ = [
    "IFEvalAnswer",
    "IFEvalPrompt",
    "IFEvalScores",
    "ItemResult",
    "loose_variants",
    "read_answers",
    "read_inputs",
    "resolve_inputs",
    "score_item",
    "score_responses",
]
