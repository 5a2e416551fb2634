"""The bootstrap loop: sample in-context tasks, generate, parse, filter, admit, generate instances, stop.

Self-Instruct mode runs as a three-stage pipeline inside every round. One `generate` call carries
    - instance requests for tasks classified last round,
    - classification requests for instructions admitted last round,
    - new instruction requests filling the rest of the round,
so the engine always sees a full batch, never a thin tail of one stage (vLLM's throughput on CPU and GPU alike
depends on batch occupancy). Alpaca mode asks for complete examples in one request and filters them at once.

Every candidate ends as an accepted task or a reject with stage, reason and evidence; nothing is dropped.
This module never opens files: `store.RunStore` does.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from selfinstruct import parse, prompts
from selfinstruct.config import Recipe
from selfinstruct.errors import SelfInstructError
from selfinstruct.filters import FilterChain
from selfinstruct.filters.base import reject
from selfinstruct.llm.base import Backend, Completion, Request, Sampling
from selfinstruct.schema import Reject, Task, content_id
from selfinstruct.stats import Stats
from selfinstruct.store import RunStore


@dataclass
class RoundReport:
    """What one round did, for progress displays and the manifest."""

    round: int
    accepted: int
    rejected: int
    accepted_total: int
    target: int
    completion_tokens: int
    generate_s: float  # the engine call alone, so tokens / generate_s is the generation rate
    rejects_by_reason: dict[str, int]


@dataclass
class LoopState:
    round: int = 0
    requests: int = 0
    idle_rounds: int = 0
    # Tasks through the instance stage in this process, and those of them kept: the yield estimate. Counted
    # here, not taken from the store, whose accepted count spans every earlier process of a resumed run.
    finished: int = 0
    kept: int = 0
    machine: list[Task] = field(default_factory=list)  # accepted machine tasks, for in-context sampling
    reserve: list[Task] = field(default_factory=list)  # admitted instructions not yet needed for the target
    pending_classify: list[Task] = field(default_factory=list)
    pending_instances: list[Task] = field(default_factory=list)

    def instance_yield(self) -> float:
        """Share of tasks that survive the instance stage, with a prior of one in two."""
        return (self.kept + 1) / (self.finished + 2)

    @property
    def in_flight(self) -> int:
        """Tasks on their way to acceptance (the reserve is not: it waits until it is needed)."""
        return len(self.pending_classify) + len(self.pending_instances)


def request_seed(loop_seed: int, rnd: int, i: int) -> int:
    """A distinct, reproducible sampling seed per request."""
    return (loop_seed * 1_000_003 + rnd * 10_007 + i) % (2**31 - 1)


def round_rng(loop_seed: int, rnd: int) -> random.Random:
    """The round's sampler of in-context tasks: the same seed and round draw the same tasks on a resume."""
    return random.Random(loop_seed * 1_000_003 + rnd)


def _reject(
    stage: str, reason: str, rnd: int, request: str, *, raw: str = "", record: dict | None = None, **evidence
) -> Reject:
    """A reject of one completion. The request id keeps apart completions that read alike (two empty answers,
    two failed requests); round and text keep a replayed round's rejects from being written twice."""
    return Reject(
        id=content_id("r", str(rnd), request, stage, reason, raw or (str(record) if record else "")),
        stage=stage,
        reason=reason,
        evidence=evidence,
        raw=raw,
        record=record,
        round=rnd,
    )


def _for_record(task: Task) -> Task:
    """Accepted tasks keep their evidence but not the raw completion (that matters for rejects only)."""
    meta = {k: v for k, v in task.meta.items() if k not in ("raw", "raw_instances")}
    return task.model_copy(update={"meta": meta})


class Bootstrap:
    """One run of the loop over an open store. `run()` returns the stop reason."""

    def __init__(
        self,
        recipe: Recipe,
        backend: Backend,
        chain: FilterChain,
        store: RunStore,
        seeds: Sequence[Task],
        *,
        style: prompts.Style,
        state: LoopState | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
    ):
        self.recipe, self.backend, self.chain, self.store = recipe, backend, chain, store
        self.loop, self.sampling = recipe.loop, recipe.sampling
        self.seeds = list(seeds)
        self.style = style
        self.state = state or LoopState()
        self.on_round = on_round
        self.stats = Stats()
        # Instance prompts show seeds of the same kind as layout examples.
        self._complete = [s for s in self.seeds if s.instances]
        if not self._complete:
            raise SelfInstructError(
                "the seed tasks have no instances: instance and Alpaca prompts need examples"
            )
        self._shots = {
            flag: [s for s in self._complete if bool(s.is_classification) == flag] or self._complete
            for flag in (True, False)
        }

    # ------------------------------------------------------------------ stopping
    def accepted(self) -> int:
        return self.store.counts["accepted"]

    def stop_reason(self) -> str | None:
        if self.accepted() >= self.loop.target and self.state.in_flight == 0:
            return "target_reached"
        if self.loop.max_rounds is not None and self.state.round >= self.loop.max_rounds:
            return "max_rounds"
        if self.loop.max_requests is not None and self.state.requests >= self.loop.max_requests:
            return "max_requests"
        if self.loop.patience is not None and self.state.idle_rounds >= self.loop.patience:
            return "no_progress"
        return None

    def run(self) -> str:
        while (reason := self.stop_reason()) is None:
            self.step()
        # Admitted but never finished (the target was met or a budget ran out): recorded, not dropped.
        st, left = self.state, []
        for where in ("reserve", "pending_classify", "pending_instances"):
            left += [(where, t) for t in getattr(st, where)]
            setattr(st, where, [])
        self.store.append(
            rejects=[
                reject(t, "loop", "loop_unfinished", {"stop": reason, "waiting_in": where}, round=st.round)
                for where, t in left
            ]
        )
        return reason

    # ------------------------------------------------------------------ one round
    def step(self) -> RoundReport:
        st = self.state
        st.round += 1
        rnd = st.round
        budget = self.loop.round_size
        if self.loop.max_requests is not None:
            budget = min(budget, self.loop.max_requests - st.requests)
        plan: list[tuple[str, object]] = []
        requests: list[Request] = []

        def add(kind: str, ref: object, prompt: prompts.Prompt, sampling: Sampling) -> None:
            sampling = sampling.model_copy(
                update={
                    "seed": request_seed(self.loop.seed, rnd, len(requests)),
                    "stop": tuple(dict.fromkeys(sampling.stop + prompt.stop)),
                }
            )
            key = "messages" if isinstance(prompt.content, tuple) else "prompt"
            requests.append(Request(id=f"{rnd}-{len(requests)}", sampling=sampling, **{key: prompt.content}))
            plan.append((kind, ref))

        # Move admitted instructions from the reserve into the pipeline only as far as the target needs them,
        # allowing for the share that the instance stage will still reject.
        st.pending_classify += self._take(st.reserve, self._wanted() - st.in_flight)
        if self.loop.mode == "self_instruct":
            for task in self._take(st.pending_instances, budget):
                shots = self._shots[bool(task.is_classification)][: self.loop.instance_shots]
                add(
                    "instances",
                    task,
                    prompts.instance_prompt(
                        task,
                        shots,
                        bool(task.is_classification),
                        self.style,
                        n_examples=self.loop.max_instances,
                    ),
                    self.sampling.instances,
                )
            for task in self._take(st.pending_classify, budget - len(requests)):
                add(
                    "classify",
                    task,
                    prompts.classify_prompt(task.instruction, self.style),
                    self.sampling.classify,
                )
        rng = round_rng(self.loop.seed, rnd)
        for i in range(self._new_requests(budget - len(requests))):
            if self.loop.mode == "self_instruct":
                shown = self._in_context(rng)
                # ref: the number the model continues from (raw prompts end with it)
                add(
                    "instructions",
                    len(shown) + 1,
                    prompts.instruction_prompt(shown, self.loop.new_per_request, self.style),
                    self.sampling.instructions,
                )
            else:
                shots = rng.sample(self._complete, min(self.loop.alpaca_in_context, len(self._complete)))
                add(
                    "examples",
                    i,
                    prompts.alpaca_prompt(shots, self.loop.new_per_request, self.style),
                    self.sampling.instructions,
                )

        t0 = time.perf_counter()
        with self.stats.timer("generate"):
            completions = self.backend.generate(requests) if requests else []
        g = time.perf_counter() - t0
        st.requests += len(requests)
        tokens = sum(c.completion_tokens for c in completions)
        self.stats.count("requests", len(requests))
        self.stats.count("prompt_tokens", sum(c.prompt_tokens for c in completions))
        self.stats.count("completion_tokens", tokens)

        accepted, rejects = self._handle(rnd, plan, completions)
        with self.stats.timer("write"):
            n_acc, _ = self.store.append(accepted, rejects)
        st.machine.extend(accepted)
        st.idle_rounds = 0 if n_acc else st.idle_rounds + 1
        by_reason: dict[str, int] = {}
        for r in rejects:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
        report = RoundReport(
            rnd,
            n_acc,
            len(rejects),
            self.accepted(),
            self.loop.target,
            tokens,
            g,
            by_reason,
        )
        if self.on_round:
            self.on_round(report)
        return report

    @staticmethod
    def _take(queue: list[Task], n: int) -> list[Task]:
        taken = queue[: max(0, n)]
        del queue[: len(taken)]
        return taken

    def _new_requests(self, room: int) -> int:
        """New instruction/example requests: fill the round while the target still needs tasks and the reserve
        is empty. A full batch costs little more than a thin one on vLLM, and extras wait in the reserve."""
        st = self.state
        missing = self._wanted() - st.in_flight - len(st.reserve)
        return max(0, room) if missing > 0 else 0

    def _wanted(self) -> int:
        """Tasks to have in the pipeline so that, at the observed instance-stage yield, the target is met."""
        if self.loop.mode == "alpaca":
            return self.loop.target - self.accepted()
        missing = self.loop.target - self.accepted()
        return math.ceil(missing / self.state.instance_yield()) if missing > 0 else 0

    def _in_context(self, rng: random.Random) -> list[Task]:
        n_machine = min(self.loop.in_context_machine, len(self.state.machine))
        n_seed = min(len(self.seeds), self.loop.in_context_seeds + self.loop.in_context_machine - n_machine)
        shown = rng.sample(self.seeds, n_seed) + rng.sample(self.state.machine, n_machine)
        rng.shuffle(shown)
        return shown

    # ------------------------------------------------------------------ completions -> records
    def _handle(self, rnd: int, plan, completions: list[Completion]) -> tuple[list[Task], list[Reject]]:
        rejects: list[Reject] = []
        candidates: list[Task] = []
        with_instances: list[Task] = []
        for (kind, ref), comp in zip(plan, completions, strict=True):
            if not comp.ok:
                record = ref.model_dump() if isinstance(ref, Task) else None
                rejects.append(
                    _reject("llm", "llm_error", rnd, comp.request_id, record=record, error=comp.error)
                )
                continue
            truncated = comp.finish_reason == "length"
            with self.stats.timer("parse"):
                if kind == "instructions":
                    first = ref if self.style == "raw" else None  # raw prompts end with the next number
                    items = parse.parse_list(comp.text, first_number=first, truncated=truncated)
                    if not items:
                        rejects.append(
                            _reject(
                                "parse",
                                "unparseable",
                                rnd,
                                comp.request_id,
                                raw=comp.text,
                                expected="numbered list",
                            )
                        )
                    candidates += [self._candidate(it.text, rnd, comp.text, it.complete) for it in items]
                elif kind == "examples":
                    text = (
                        f"Instruction:{comp.text}" if self.style == "raw" else comp.text
                    )  # prompt ended there
                    pairs = parse.parse_examples(text, truncated=truncated)
                    if not pairs:
                        rejects.append(
                            _reject(
                                "parse",
                                "unparseable",
                                rnd,
                                comp.request_id,
                                raw=comp.text,
                                expected="examples",
                            )
                        )
                    for instr, inst in pairs:
                        task = self._candidate(instr, rnd, comp.text, True)
                        candidates.append(task.model_copy(update={"instances": [inst]}))
                elif kind == "classify":
                    label = parse.parse_yes_no(comp.text)
                    if label is None:  # a task is not thrown away over an unclear yes/no: default, and say so
                        self.stats.count("classify_unclear")
                    meta = {**ref.meta, "classify_raw": comp.text.strip()[:80]}
                    self.state.pending_instances.append(
                        ref.model_copy(update={"is_classification": bool(label), "meta": meta})
                    )
                else:  # instances
                    insts = parse.parse_instances(
                        comp.text, output_first=bool(ref.is_classification), truncated=truncated
                    )
                    if not insts:
                        self.state.finished += 1
                        rejects.append(
                            _reject(
                                "parse",
                                "unparseable",
                                rnd,
                                comp.request_id,
                                raw=comp.text,
                                record=ref.model_dump(),
                                expected="instances",
                            )
                        )
                        continue
                    with_instances.append(
                        ref.model_copy(
                            update={
                                "instances": insts[: self.loop.max_instances],
                                "meta": {**ref.meta, "raw_instances": comp.text},
                            }
                        )
                    )
        accepted: list[Task] = []
        with self.stats.timer("filter"):
            if self.loop.mode == "alpaca":
                kept, rej = self.chain.check(candidates, round=rnd)
                rejects += rej
                accepted += kept  # complete already; a last round may pass the target by its own yield
            else:
                kept, rej = self.chain.check_instructions(candidates, round=rnd)
                rejects += rej
                self.state.reserve += kept
                self.state.finished += len(with_instances)
                kept, rej = self.chain.check_instances(with_instances, round=rnd)
                rejects += rej
                accepted += kept
                self.state.kept += len(kept)
        return [_for_record(t) for t in accepted], rejects

    @staticmethod
    def _candidate(instruction: str, rnd: int, raw: str, complete: bool) -> Task:
        meta = {"raw": raw, "finish_reason": "stop" if complete else "length"}
        return Task(
            id=content_id("t", instruction),
            instruction=instruction,
            provenance="generated",
            round=rnd,
            meta=meta,
        )
