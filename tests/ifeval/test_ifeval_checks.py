"""Each IFEval instruction check on literal answers, pass and fail. Run: .venv/bin/pytest -q tests/ifeval"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from selfinstruct.ifeval.registry import INSTRUCTIONS, build
from selfinstruct.ifeval.text import count_sentences, count_words, detect_language, word_tokens

LESS, ATLEAST = "less than", "at least"
HINDI = "मेरा नाम राम है और मैं दिल्ली में रहता हूँ। आज मौसम बहुत अच्छा है और हम बाहर खेलने जा रहे हैं।"
GERMAN = "Heute ist das Wetter sehr schön, und wir gehen alle zusammen in den großen Park spazieren."

# (instruction id, kwargs, answer, follows?)
CASES = [
    # keywords
    ("keywords:existence", {"keywords": ["Mars", "rover"]}, "The ROVER landed on mars.", True),
    ("keywords:existence", {"keywords": ["Mars", "rover"]}, "The rover landed.", False),
    ("keywords:existence", {"keywords": ["cat"]}, "A category of things.", True),  # substring, as IFEval
    (
        "keywords:frequency",
        {"keyword": "tea", "frequency": 3, "relation": ATLEAST},
        "Tea, tea and TEA.",
        True,
    ),
    ("keywords:frequency", {"keyword": "tea", "frequency": 3, "relation": ATLEAST}, "Tea and tea.", False),
    ("keywords:frequency", {"keyword": "tea", "frequency": 2, "relation": LESS}, "One tea.", True),
    ("keywords:frequency", {"keyword": "tea", "frequency": 2, "relation": LESS}, "Tea, steam.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["cat", "dog"]}, "A catalog of hotdogs.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["cat", "dog"]}, "My Dog sleeps.", False),
    (
        "keywords:letter_frequency",
        {"letter": "Z", "let_frequency": 3, "let_relation": ATLEAST},
        "Zzz z",
        True,
    ),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": ATLEAST}, "zz", False),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 2, "let_relation": LESS}, "a b c", True),
    (
        "keywords:letter_frequency",
        {"letter": "a", "let_frequency": 2, "let_relation": LESS},
        "A banana",
        False,
    ),
    # language
    ("language:response_language", {"language": "hi"}, HINDI, True),
    ("language:response_language", {"language": "de"}, GERMAN, True),
    ("language:response_language", {"language": "hi"}, GERMAN, False),
    ("language:response_language", {"language": "de"}, "1234 5678 !!!", True),  # nothing to detect: counts
    # letter case
    ("change_case:english_capital", {}, "THIS IS MY ANSWER, ALL IN CAPITAL LETTERS.", True),
    ("change_case:english_capital", {}, "THIS IS MY ANSWER, mostly in capital letters.", False),
    ("change_case:english_capital", {}, GERMAN.upper(), False),  # capitals, but not English
    ("change_case:english_lowercase", {}, "this whole answer is written in lowercase letters only.", True),
    ("change_case:english_lowercase", {}, "this whole answer is written in lowercase, except I.", False),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 3, "capital_relation": ATLEAST},
        "WE DON'T stop",
        True,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 3, "capital_relation": ATLEAST},
        "WE do NOT stop",
        False,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": LESS},
        "Only ONE here.",
        True,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": LESS},
        "NASA and ESA.",
        False,
    ),
    ("punctuation:no_comma", {}, "No commas here at all.", True),
    ("punctuation:no_comma", {}, "Well, one comma.", False),
    # detectable format
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Intro\n* one\n- two\n**bold** line", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two\n* three", False),
    ("detectable_format:constrained_response", {}, "I thought about it. My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "My answer is yes", False),  # no period
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and * * here", False),
    (
        "detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        "*across\nlines* and *one*",
        False,
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 2},
        "SECTION 1\na\nSECTION 2\nb",
        True,
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 2},
        "Section 1\na\nSection 2\nb",
        False,
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, '{"a": 1}', True),
    ("detectable_format:json_format", {}, 'Here it is: {"a": 1}', False),
    ("detectable_format:title", {}, "<<Poem of Joy>>\nLine one.", True),
    ("detectable_format:title", {}, "<<   >> no title and <<broken\nline>>", False),
    # detectable content
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "Dear [name], at your address.",
        False,
    ),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\n\np.s. see you", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\n\nPS see you", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Body.\nP. P. S bring cake", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Body.\nP.S. bring cake", False),
    # start and end
    ("startend:quotation", {}, '  "The whole answer, quoted."  ', True),
    ("startend:quotation", {}, '"Quoted" and then more.', False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, '"Done. any other questions?"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    # combination
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "One.\n******\n******\nTwo.", False),  # an empty answer between
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a poem."},
        "write a poem. Roses are red.",
        True,
    ),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem. Roses.", False),
    # length
    ("length_constraints:number_words", {"num_words": 5, "relation": ATLEAST}, "state-of-the-art work", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": ATLEAST}, "only four words here", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": LESS}, "only four words here", True),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 2, "relation": LESS},
        "Dr. Smith went home.",
        True,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 2, "relation": LESS},
        "He left. She stayed.",
        False,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": ATLEAST},
        "A b. C d! E f?",
        True,
    ),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\n***\nSecond.", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n\nSecond.", False),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Then"},
        'First part.\n\n"Then, second part.',
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        "First part.\n\nAfter that, second part.",
        False,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        "First part.\n\nThen the second.\n\nThen a third.",
        False,
    ),
]


@pytest.mark.parametrize(("iid", "kwargs", "answer", "expected"), CASES)
def test_check_on_literal_answer(iid, kwargs, answer, expected):
    assert build(iid, kwargs).follows(answer) is expected


def test_every_instruction_type_has_a_passing_and_a_failing_case():
    outcomes = {(iid, expected) for iid, _, _, expected in CASES}
    for iid in INSTRUCTIONS:
        assert (iid, True) in outcomes and (iid, False) in outcomes, iid


def test_text_measures_follow_ifevals_tokenisation():
    assert count_words("don't stop: state-of-the-art") == 7
    assert count_sentences("Mr. Jones met Dr. Smith at 5 p.m. on Monday. They talked.") == 2
    assert word_tokens("I DON'T know.") == ["I", "DO", "N'T", "know", "."]
    assert detect_language("The weather is lovely today and we are going for a long walk.") == "en"


def test_bad_arguments_are_refused_with_the_field_named():
    with pytest.raises(ValidationError, match="relation"):
        build("length_constraints:number_words", {"num_words": 5, "relation": "at most"})
    with pytest.raises(ValidationError, match="num_bullets"):
        build("detectable_format:number_bullet_lists", {"num_bulets": 3})
    # nulls are dropped (the Hugging Face copy of the input file lists every argument with nulls)
    assert build("punctuation:no_comma", {"num_words": None, "keywords": None}).follows("ok")
