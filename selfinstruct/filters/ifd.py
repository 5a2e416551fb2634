"""Instruction-following difficulty (IFD): how much the instruction helps a causal LM predict the answer.

IFD = perplexity(answer | instruction + input) / perplexity(answer alone) (Cherry LLM, Li et al. 2023). Near 0:
the instruction makes the answer easy to predict; near 1: it hardly helps; >= 1: the answer does not follow
from it (Cherry LLM drops those). Superfiltering (Li et al. 2024) found a 124M model ranks examples nearly as a
7B one does, so the default scorer is the embedded 135M model; any causal LM directory works.

The conditioned sequence is the student's own prompt (sft.render's plain template) followed by the answer;
the unconditioned one is the answer after the tokenizer's BOS (or nothing). Loss is taken over answer tokens
only, in padded batches. Scores go to instance.meta["ifd"] and task.meta["ifd"] (the mean over instances);
`select` turns scores into rejects (`ifd_above_one`, `ifd_below_threshold`, `ifd_not_in_top_share`) with the
score and the cut-off. No files here; torch and transformers are imported where used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from selfinstruct.filters.base import reject
from selfinstruct.filters.config import IFDConfig
from selfinstruct.schema import Reject, Task

STAGE = "ifd"


class IFDScorer:
    """Scores (instruction, input, output) triples with one causal LM, `batch_size` sequences per forward."""

    def __init__(self, config: IFDConfig | None = None):
        self.config = config or IFDConfig()
        self._model = self._tok = None

    @property
    def path(self) -> Path:
        if self.config.model is not None:
            return Path(self.config.model)
        from selfinstruct.models import default_model_dir

        return default_model_dir()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from selfinstruct.errors import SelfInstructError

        if not (self.path / "config.json").exists():
            raise SelfInstructError(
                f"ifd.model: {self.path} is not a model directory (run `selfinstruct model prepare`)"
            )
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self._model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True).to(device).eval()
        self._device = device

    def _prefix_ids(self, prompt: str | None) -> list[int]:
        ids = [] if self._tok.bos_token_id is None else [self._tok.bos_token_id]
        if prompt:
            ids += self._tok(prompt, add_special_tokens=False)["input_ids"]
        return ids

    def _mean_nll(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        """Mean negative log-likelihood of each answer (second list) after its prefix (first list)."""
        import torch

        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
        out: list[float] = []
        for start in range(0, len(pairs), self.config.batch_size):
            batch = pairs[start : start + self.config.batch_size]
            seqs = [(p + a)[: self.config.max_length] for p, a in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            labels = torch.full((len(seqs), width), -100, dtype=torch.long)
            for i, ((p, _), s) in enumerate(zip(batch, seqs, strict=True)):
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
                # The first answer token needs something before it; with neither BOS nor prompt it is skipped.
                first = max(len(p), 1)
                labels[i, first : len(s)] = ids[i, first : len(s)]
            target = labels[:, 1:].to(self._device)
            keep = target != -100  # positions whose next token is an answer token
            with torch.inference_mode():
                logits = self._answer_logits(ids.to(self._device), mask.to(self._device), keep)
            nll = torch.nn.functional.cross_entropy(logits.float(), target[keep], reduction="none")
            rows = torch.zeros(len(seqs), device=nll.device).index_add_(0, keep.nonzero()[:, 0], nll)
            for row, n in zip(rows.tolist(), keep.sum(1).tolist(), strict=True):
                out.append(row / n if n else float("nan"))
        return out

    def _answer_logits(self, ids, mask, keep):
        """Logits at the `keep` positions only. The vocabulary projection of every prompt position would cost
        a (batch, length, 49K) tensor, most of it thrown away; models that post-process logits (a softcap)
        go through their own head instead."""
        m = self._model
        body = getattr(m, "model", None)
        if (
            body is None
            or getattr(m.config, "final_logit_softcapping", None)
            or m.get_output_embeddings() is None
        ):
            return m(input_ids=ids, attention_mask=mask).logits[:, :-1][keep]
        hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        return m.get_output_embeddings()(hidden[keep])

    def score_texts(self, triples: Sequence[tuple[str, str, str]]) -> list[dict[str, float | None]]:
        """For each (instruction, input, output): {"ifd", "ppl_conditioned", "ppl_answer"} (None if empty)."""
        from selfinstruct.sft.render import plain_prompt

        if not triples:
            return []
        if self._model is None:
            self._load()
        answers = [self._tok(o, add_special_tokens=False)["input_ids"] for _, _, o in triples]
        cond = [
            (self._prefix_ids(plain_prompt(i, x)), a) for (i, x, _), a in zip(triples, answers, strict=True)
        ]
        bare = [(self._prefix_ids(None), a) for a in answers]
        nll_c, nll_a = self._mean_nll(cond), self._mean_nll(bare)
        scores = []
        for c, a in zip(nll_c, nll_a, strict=True):
            if math.isnan(c) or math.isnan(a):
                scores.append({"ifd": None, "ppl_conditioned": None, "ppl_answer": None})
                continue
            # ppl_c / ppl_a = exp(nll_c - nll_a): computed in log space so long answers cannot overflow.
            scores.append(
                {
                    "ifd": round(math.exp(c - a), 4),
                    "ppl_conditioned": round(math.exp(min(c, 50.0)), 4),
                    "ppl_answer": round(math.exp(min(a, 50.0)), 4),
                }
            )
        return scores

    def score(self, tasks: Sequence[Task]) -> list[Task]:
        """The tasks with meta["ifd"] on each instance and, as their mean, on the task; one pass for all."""
        triples = [(t.instruction, inst.input, inst.output) for t in tasks for inst in t.instances]
        flat = iter(self.score_texts(triples))
        out = []
        for t in tasks:
            instances, values = [], []
            for inst in t.instances:
                s = next(flat)
                instances.append(inst.model_copy(update={"meta": {**inst.meta, "ifd": s}}))
                if s["ifd"] is not None:
                    values.append(s["ifd"])
            ifd = round(sum(values) / len(values), 4) if values else None
            out.append(t.model_copy(update={"instances": instances, "meta": {**t.meta, "ifd": ifd}}))
        return out


def select(tasks: Sequence[Task], config: IFDConfig) -> tuple[list[Task], list[Reject]]:
    """Keep scored tasks by the config's rules, in input order; each reject names its score and cut-off.

    Order of the rules: IFD >= 1 (the instruction does not help), then the threshold, then the top share of
    what is left (a share of the whole set would let the first two rules change what "top" means).
    """
    kept: list[Task] = []
    rejects: list[Reject] = []
    for t in tasks:
        ifd = t.meta.get("ifd")
        if ifd is None:
            kept.append(t)  # nothing to score (no instances): no evidence to reject on
        elif config.drop_above_one and ifd >= 1:
            rejects.append(reject(t, STAGE, "ifd_above_one", {"ifd": ifd, "cutoff": 1.0}))
        elif config.threshold is not None and ifd < config.threshold:
            rejects.append(reject(t, STAGE, "ifd_below_threshold", {"ifd": ifd, "cutoff": config.threshold}))
        else:
            kept.append(t)
    if config.top_share is None:
        return kept, rejects
    scored = [t for t in kept if t.meta.get("ifd") is not None]
    n = max(1, math.ceil(config.top_share * len(scored))) if scored else 0
    # Highest IFD first (the hardest examples the instruction still helps with); ties by id, repeatably.
    top = sorted(scored, key=lambda t: (-t.meta["ifd"], t.id))[:n]
    cutoff = top[-1].meta["ifd"] if top else None
    keep_ids = {t.id for t in top}
    final = []
    for t in kept:
        if t.meta.get("ifd") is None or t.id in keep_ids:
            final.append(t)
        else:
            evidence = {"ifd": t.meta["ifd"], "cutoff": cutoff, "top_share": config.top_share}
            rejects.append(reject(t, STAGE, "ifd_not_in_top_share", evidence))
    return final, rejects
