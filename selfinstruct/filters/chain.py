"""The filter chain: heuristics, MinHash, ROUGE-L, semantic, in input order, with no I/O of its own.

Candidates are taken in order, each checked against the pool (seeds and everything kept before) and against
the earlier kept candidates of its own batch; a kept task is admitted to the indexes at once, a rejected one
never is. The chain, not the filters, counts (`stats`) and admits, except where ROUGE-L is the only check
after the heuristics (the loop's instruction step): then the index decides and admits the batch in one go,
with the same decisions (`RougeScan.decide`). Three entry points match the bootstrap
loop's two steps and the `filter` command:

  check_instructions  instruction heuristics, ROUGE-L and semantic (text: instruction) on the instruction;
                      kept ones enter the ROUGE and semantic indexes
  check_instances     instance heuristics (bad instances dropped), MinHash, semantic (text: instruction_input);
                      kept ones enter the MinHash (and semantic) index
  check               all of the above for complete records
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from selfinstruct.filters.base import reject
from selfinstruct.filters.config import FilterConfig
from selfinstruct.filters.heuristics import HeuristicsFilter
from selfinstruct.filters.minhash import MinHashFilter
from selfinstruct.filters.rouge_filter import RougeFilter
from selfinstruct.filters.semantic import SemanticFilter
from selfinstruct.schema import Reject, Task
from selfinstruct.stats import Stats


@dataclass
class Verdict:
    """What happened to one input task: the task as kept (instances may be dropped, meta gains rouge_max)."""

    task: Task
    kept: bool
    rejects: list[Reject] = field(default_factory=list)
    kept_instances: list[int] = field(default_factory=list)  # indices into the input task's instances


class FilterChain:
    def __init__(self, config: FilterConfig | None = None):
        self.config = c = config or FilterConfig()
        self.heuristics = HeuristicsFilter(c.heuristics) if c.heuristics is not None else None
        self.minhash = MinHashFilter(c.minhash) if c.minhash is not None else None
        self.rouge = RougeFilter(c.rouge) if c.rouge is not None else None
        self.semantic = SemanticFilter(c.semantic) if c.semantic is not None else None
        self.stats = Stats()

    def add(self, tasks: Iterable[Task]) -> None:
        """Put already-accepted tasks (seeds, tasks read back on resume) into the indexes, unchecked."""
        tasks = list(tasks)
        for task in tasks:
            if self.rouge is not None:
                self.rouge.add(task)
            if self.minhash is not None:
                self.minhash.add(task)
        if self.semantic is not None:
            with self.stats.timer("semantic"):
                self.semantic.add(tasks)  # one embedding pass over the whole list

    def add_instructions(self, tasks: Iterable[Task]) -> None:
        """Admitted instructions into the novelty pool only (a resume rebuilds the pool in admission order)."""
        tasks = list(tasks)
        if self.rouge is not None:
            for task in tasks:
                self.rouge.add(task)
        if self.semantic is not None and self.semantic.config.text == "instruction":
            with self.stats.timer("semantic"):
                self.semantic.add(tasks)

    def add_examples(self, tasks: Iterable[Task]) -> None:
        """Accepted tasks with their instances into the near-duplicate index only."""
        tasks = list(tasks)
        if self.minhash is not None:
            for task in tasks:
                self.minhash.add(task)
        if self.semantic is not None and self.semantic.config.text != "instruction":
            with self.stats.timer("semantic"):
                self.semantic.add(tasks)

    def check_instructions(
        self, tasks: Sequence[Task], *, round: int | None = None
    ) -> tuple[list[Task], list[Reject]]:
        return _split(self.run(tasks, round=round, instructions=True, instances=False))

    def check_instances(
        self, tasks: Sequence[Task], *, round: int | None = None
    ) -> tuple[list[Task], list[Reject]]:
        return _split(self.run(tasks, round=round, instructions=False, instances=True))

    def check(self, tasks: Sequence[Task], *, round: int | None = None) -> tuple[list[Task], list[Reject]]:
        return _split(self.run(tasks, round=round))

    def run(
        self,
        tasks: Sequence[Task],
        *,
        round: int | None = None,
        instructions: bool = True,
        instances: bool = True,
    ) -> list[Verdict]:
        """One verdict per input task, in order; `instructions`/`instances` pick the checks (module doc)."""
        st = self.stats
        verdicts = [Verdict(t, False) for t in tasks]
        survivors: list[int] = []
        with st.timer("heuristics"):
            for pos in range(len(tasks)):
                st.count("total")
                if self._heuristics(verdicts[pos], instructions, instances, round):
                    survivors.append(pos)
        use_rouge = self.rouge is not None and instructions
        use_minhash = self.minhash is not None and instances
        use_semantic = self.semantic is not None and (
            instructions if self.semantic.config.text == "instruction" else instances
        )
        scan = sem_scan = decided = None
        if use_rouge:
            with st.timer("rouge"):
                batch = [verdicts[p].task for p in survivors]
                scan = self.rouge.scan(batch)
                if not use_minhash and not use_semantic:  # ROUGE-L alone decides: the whole batch in one go
                    decided = self.rouge.decide(scan, batch, round=round)
        if use_semantic:
            with st.timer("semantic"):
                # One embedding pass for the batch; items a later check rejects are embedded for nothing,
                # which costs less than a second pass.
                sem_scan = self.semantic.scan([verdicts[p].task for p in survivors])
        for k, pos in enumerate(survivors):
            v = verdicts[pos]
            sig = None
            if use_minhash:
                with st.timer("minhash"):
                    sig = self.minhash.signature(v.task)
                    r = self.minhash.check(v.task, sig, round=round)
                if r is not None:
                    self._reject(v, r)
                    continue
            meta = {}
            if use_rouge:
                if decided is not None:
                    r, rouge_max = decided[k]
                else:
                    with st.timer("rouge"):
                        r, rouge_max = self.rouge.verdict(scan, k, v.task, round=round)
                if r is not None:
                    self._reject(v, r)
                    continue
                meta = {"rouge_max": rouge_max}
            if use_semantic:
                with st.timer("semantic"):
                    r, semantic_max = self.semantic.verdict(sem_scan, k, v.task, round=round)
                if r is not None:
                    self._reject(v, r)
                    continue
                meta["semantic_max"] = semantic_max
            # Admit: only now does the task enter the indexes, so a reject never becomes anyone's neighbour.
            if use_rouge and decided is None:
                with st.timer("rouge"):
                    scan.admit(k, v.task.id)
            if use_semantic:
                with st.timer("semantic"):
                    self.semantic.admit(sem_scan, k, v.task)
            if use_minhash:
                with st.timer("minhash"):
                    self.minhash.add(v.task, sig)
            if meta:
                v.task = v.task.model_copy(update={"meta": {**v.task.meta, **meta}})
            v.kept = True
            st.count("kept")
        return verdicts

    # ------------------------------------------------------------------------------------------------------

    def _heuristics(self, v: Verdict, instructions: bool, instances: bool, round: int | None) -> bool:
        """Apply the stateless rules; drop bad instances from v.task. False if the task is rejected."""
        task, h = v.task, self.heuristics
        v.kept_instances = list(range(len(task.instances)))
        if h is None:
            return True
        if instructions and (r := h.check_instruction(task, round=round)) is not None:
            self._reject(v, r)
            return False
        if not instances:
            return True
        keep = []
        for i in range(len(task.instances)):
            r = h.check_instance(task, i, round=round)
            if r is None:
                keep.append(i)
            else:
                v.rejects.append(r)
                self.stats.count("instances_dropped")
                self.stats.count(f"rejected_{r.reason}")
        if not keep:
            evidence = {"instances": len(task.instances), "reasons": [r.reason for r in v.rejects]}
            self._reject(v, reject(task, "heuristics", "heuristics_no_instances", evidence, round=round))
            return False
        if (r := h.check_task_instances(task, keep, round=round)) is not None:
            self._reject(v, r)
            return False
        if len(keep) < len(task.instances):
            v.task = task.model_copy(update={"instances": [task.instances[i] for i in keep]})
            v.kept_instances = keep
        return True

    def _reject(self, v: Verdict, r: Reject) -> None:
        v.rejects.append(r)
        v.kept = False
        self.stats.reject(r.reason)


def _split(verdicts: list[Verdict]) -> tuple[list[Task], list[Reject]]:
    return [v.task for v in verdicts if v.kept], [r for v in verdicts for r in v.rejects]
