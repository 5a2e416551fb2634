"""The bootstrap loop: sample in-context tasks, generate, parse, filter, admit, generate instances, stop.

Self-Instruct mode runs as a three-stage pipeline inside every round. One backend call carries
    - instance requests for tasks classified last round,
    - classification requests for instructions admitted last round,
    - new instruction requests filling the rest of the round,
so the engine always sees a full batch, never a thin tail of one stage (vLLM's throughput on CPU and GPU alike
depends on batch occupancy). Alpaca mode asks for complete examples in one request and filters them at once.

Every candidate ends as an accepted task or a reject with stage, reason and evidence, exactly once: ids come
from the request and the position in its answer, never from the text, so repeats are separate records.
Everything the loop decides is a function of the recipe, the seeds and the run's journal (journal.py): each
answer is journaled as the backend hands it back, each round ends with a checkpoint, and a resumed loop
replays a round cut short from the journal with no model call for what was already answered.
This module never opens files: `store.RunStore` does.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

from selfinstruct import answers, faults, journal, parse, prompts, signals
from selfinstruct.config import Recipe
from selfinstruct.errors import SelfInstructError
from selfinstruct.filters import FilterChain
from selfinstruct.filters.base import reject
from selfinstruct.llm.base import Backend, Completion, Request
from selfinstruct.loopstate import QUEUES, LoopState, RoundReport, request_seed, round_rng, stop_name
from selfinstruct.schema import Reject, Task
from selfinstruct.stats import Stats
from selfinstruct.store import RunStore


class Bootstrap:
    """One run of the loop over an open store. `run()` returns the stop reason.

    `replay` holds journaled answers of a round that did not reach its checkpoint (journal.restore); they are
    used instead of calling the model when the same request comes up again.
    """

    def __init__(
        self,
        recipe: Recipe,
        backend: Backend | None,
        chain: FilterChain | None,
        store: RunStore | None,
        seeds: Sequence[Task],
        *,
        style: prompts.Style,
        state: LoopState | None = None,
        replay: dict[str, dict] | None = None,
        applied: set[str] | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
    ):
        self.recipe, self.backend, self.chain, self.store = recipe, backend, chain, store
        self.loop, self.sampling = recipe.loop, recipe.sampling
        self.seeds = list(seeds)
        self.style = style
        self.state = state or LoopState()
        self.replay = dict(replay or {})
        self.applied = set(applied or ())  # reject ids whose readmission was taken in
        self.readmitted: list[dict] = []  # Readmission entries taken in by this process
        self.on_round = on_round
        self.stats = Stats()
        self.sent = 0  # requests this process sent to the backend (replayed ones are not sent)
        self._committed = self.state.copy()  # the state as of the last journal event
        self._refs: dict[str, int] = {}  # instruction request id -> the list number its prompt ends with
        self._window: tuple[list[Task], list[Task]] = ([], [])  # admitted, accepted since the last checkpoint
        # Streaming: this round's accepted count, and its start (tokens, time) for the progress report.
        self._round_accepted, self._round_tokens, self._round_t0 = 0, 0, time.perf_counter()
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
    def stop_reason(self) -> str | None:
        st = self.state
        if st.accepted >= self.loop.target and st.in_flight == 0:
            return "target_reached"
        if self.loop.max_rounds is not None and st.round >= self.loop.max_rounds:
            return "max_rounds"
        if self.loop.max_requests is not None and st.requests >= self.loop.max_requests:
            return "max_requests"
        if self.loop.patience is not None and st.idle_rounds >= self.loop.patience:
            return "no_progress"
        return None

    def run(self) -> str:
        """Rounds until a stop condition. A signal or an unusable backend stops the loop too: the answers the
        round it cut short already got are settled, its other requests are given up, and either way every
        admitted task that was not finished is written as `loop_unfinished`, so nothing is left only in memory
        or only in the journal."""
        streaming = self.loop.schedule == "stream"
        try:
            if streaming:
                from selfinstruct.streaming import run_stream

                reason = run_stream(self)
            else:
                while (reason := self.stop_reason()) is None:
                    self.step()
        except (signals.Stopped, SelfInstructError) as e:
            cut, self._cut = self._cut, None
            # Streaming settles one answer at a time: its state is the files'. A round stopped after its answers
            # (a write failed) is given up; its ids are never reused.
            if not streaming and cut is None:
                rnd = self.state.round
                self.state = self._committed.copy()
                self.state.round = max(self.state.round, rnd)
                self._window = ([], [])
            self.finish(stop_name(e), cut)
            raise
        self.finish(reason)
        return reason

    stopped: str | None = None  # set by finish: the reason this loop ended
    # A round waiting on its answers: (round, plan, requests, the answers journaled so far), for a stop to settle.
    _cut: tuple[int, list, list[Request], dict[str, Completion]] | None = None

    def finish(self, reason: str, cut: tuple | None = None) -> None:
        """Journal the stop, then write what it implies (`_close`). The stop event comes first: a kill before
        the checkpoint that ends it leaves a resume to finish the stop as it was decided (`resume_stop`), so
        what a stop writes is never also accepted later."""
        self.stopped = reason
        st = self.state
        asked = any(isinstance(e["ref"], dict) for e in st.inflight)
        if (
            cut is None
            and not asked
            and not any(getattr(st, q) for q in QUEUES)
            and not self._window[0]
            and self._last_stop == (reason, st.round)
        ):
            st.inflight = []
            self._last_take_in(st.round)  # a rerun of a finished run: nothing else new to say
            return
        with signals.critical():
            self.store.log(
                {"ev": "stop", "round": st.round, "stop": reason, "cut": cut is not None}, sync=True
            )
            self._close(reason, cut)

    def resume_stop(self, event: dict, readmits: Sequence[dict] = ()) -> None:
        """Finish a stop a kill cut short (its journal event has no checkpoint after it) from the journal, as it
        was decided: the state it was decided in is derived again, so the same records follow (those already on
        disk are skipped by id) and the run is left as the clean stop leaves it. Readmissions `readmit` took in
        after the kill are applied after the stop, as they would have been after a clean one."""
        st, cut = self.state, None
        if self.loop.schedule == "stream":
            from selfinstruct.streaming import replay

            replay(self, take_in=False)
        elif event["cut"]:
            st.round = rnd = event["round"]
            plan, requests = self._plan(rnd)
            answered = {
                r.id: c for r in requests if (c := self._journaled(r, journal.request_hash(r))) is not None
            }
            cut = (rnd, plan, requests, answered)
        else:
            st.round = max(st.round, event["round"])
        self.replay = {}
        with signals.critical():
            self._close(event["stop"], cut, readmits, last=False)

    def _close(
        self, reason: str, cut: tuple | None, readmits: Sequence[dict] = (), last: bool = True
    ) -> None:
        """What a journaled stop implies: the answers of the round it cut short settled (`_settle_cut`), every
        task still queued or asked about written as `loop_unfinished`, then a checkpoint with empty queues.
        `last`: this writer stops here (not a resume finishing the stop a kill cut short, which goes on)."""
        if cut is not None:
            self._settle_cut(*cut)
        st, left = self.state, []
        for where in QUEUES:
            left += [(where, t) for t in getattr(st, where)]
            setattr(st, where, [])
        # Streaming: tasks whose classification or instances were being asked for when the run stopped.
        left += [
            ("in_flight", Task.model_validate(e["ref"])) for e in st.inflight if isinstance(e["ref"], dict)
        ]
        st.inflight = []
        for ev in readmits:
            self.apply_readmit(ev)
        self.store.append(
            rejects=[
                reject(t, "loop", "loop_unfinished", {"stop": reason, "waiting_in": where}, round=st.round)
                for where, t in left
            ]
        )
        faults.crash_point("after:unfinished")
        if last:  # after the unfinished ones: an instruction readmitted now waits, queued, for a resume
            self._last_take_in(st.round)
        self._checkpoint(stop=reason)

    def _settle_cut(
        self, rnd: int, plan: list, requests: list[Request], answered: dict[str, Completion]
    ) -> None:
        """A round a stop cut short: the answers it got (each journaled) are settled as a whole round's are, so
        none is paid for and dropped; tasks whose requests went unanswered go back to the queue they came from."""
        st = self.state
        pairs = list(zip(plan, requests, strict=True))
        got = [(p, answered[r.id]) for p, r in pairs if r.id in answered]
        queue = {"classify": st.pending_classify, "instances": st.pending_instances}
        back = [(kind, ref) for (kind, ref), r in pairs if r.id not in answered and kind in queue]
        for kind, ref in reversed(back):
            queue[kind].insert(0, ref)
        self._count([c for _, c in got])
        accepted, rejects, admitted = self._handle(rnd, [p for p, _ in got], [c for _, c in got])
        self.store.append(accepted, rejects)
        self.settled(accepted, admitted)

    def _count(self, completions: list[Completion]) -> int:
        """Requests answered and their tokens, into the counters; returns the completion tokens."""
        st = self.state
        tokens = sum(c.completion_tokens for c in completions)
        st.requests += len(completions)
        st.prompt_tokens += sum(c.prompt_tokens for c in completions)
        st.completion_tokens += tokens
        return tokens

    _last_stop: tuple[str, int] | None = None

    def _checkpoint(self, stop: str | None = None) -> None:
        """The state, and what entered the pool and the accepted set since the last checkpoint, journaled
        after the records they imply are on disk."""
        admitted, accepted = self._window
        self._window = ([], [])
        self.store.sync()
        self.store.log(
            {
                "ev": "round",
                "round": self.state.round,
                "state": self.state.checkpoint(),
                "admitted": [journal.brief(t) for t in admitted],
                "accepted": [journal.brief(t) for t in accepted],
                "stop": stop,
            },
            sync=True,
        )
        faults.crash_point("after:checkpoint")
        self._committed = self.state.copy()
        self._last_stop = (stop, self.state.round) if stop else None

    def settled(self, accepted: list[Task], admitted: list[Task]) -> None:
        """Tasks just accepted and instructions just admitted: counted, pooled, kept for the next checkpoint."""
        self.state.accepted += len(accepted)
        self.state.machine += accepted if self.loop.machine_pool == "accepted" else admitted
        self._window[0].extend(admitted)
        self._window[1].extend(accepted)

    # ------------------------------------------------------------------ readmissions
    def take_in(self, rnd: int) -> None:
        """Readmissions `readmit` appended since the last look: accepted or queued, journaled, pooled."""
        new = [r for r in self.store.readmissions() if r["readmission"]["reject_id"] not in self.applied]
        if not new:
            return
        event = journal.readmit_event(rnd, new)
        with signals.critical():
            accepted = [Task.model_validate(t) for t in event["accepted"]]
            self.store.append(tasks=accepted)  # before the event: a crash in between only repeats this
            self.store.log(event, sync=True)
            self.apply_readmit(event)
            self._committed = self.state.copy()

    def _last_take_in(self, rnd: int) -> None:
        """The readmissions that came since the last round, taken in by the stop; `readmit` is held off from
        here until the run's lock is released, so no request is acknowledged to a writer that no longer looks
        (it takes a later one in itself)."""
        if self.store is not None:
            self.store.hold_requests()
            self.take_in(rnd)

    def apply_readmit(self, event: dict) -> None:
        """A readmit event's effect on the state and the indexes (live and on restore alike)."""
        st = self.state
        accepted = [Task.model_validate(t) for t in event["accepted"]]
        self.chain.add_instructions(journal.briefs_to_tasks(event["admitted"]))
        self.chain.add_examples(accepted)
        st.accepted += len(accepted)
        st.pending_classify += [Task.model_validate(t) for t in event["queued"]]
        pool = event["admitted"] if self.loop.machine_pool == "admitted" else event["accepted"]
        st.machine += journal.briefs_to_tasks(pool)
        self.applied.update(e["reject_id"] for e in event["entries"])
        self.readmitted += event["entries"]

    # ------------------------------------------------------------------ one round
    def step(self) -> RoundReport:
        st = self.state
        rnd = st.round + 1
        if self.store is not None:
            self.take_in(rnd)
        st.round = rnd
        plan, requests = self._plan(rnd)
        answered: dict[str, Completion] = {}
        self._cut = (rnd, plan, requests, answered)  # a stop now settles what is answered (finish)
        t0 = time.perf_counter()
        completions = self._answers(rnd, plan, requests, answered)
        self._cut = None
        g = time.perf_counter() - t0
        self.stats.timings["generate"] = self.stats.timings.get("generate", 0.0) + g
        tokens = self._count(completions)

        # From here to the checkpoint nothing waits on the model: a stop asked for now waits for the
        # checkpoint, so the files and the journal always agree.
        with signals.critical():
            accepted, rejects, admitted = self._handle(rnd, plan, completions)
            with self.stats.timer("write"):
                self.store.append(accepted, rejects)
            self.settled(accepted, admitted)
            st.idle_rounds = 0 if accepted else st.idle_rounds + 1
            self._checkpoint()
        by_reason: dict[str, int] = {}
        for r in rejects:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
        report = RoundReport(
            rnd, len(accepted), len(rejects), st.accepted, self.loop.target, tokens, g, by_reason
        )
        if self.on_round:
            self.on_round(report)
        return report

    def _plan(self, rnd: int) -> tuple[list[tuple[str, object]], list[Request]]:
        """This round's requests, a function of the state alone (so a resume plans the same round again)."""
        st = self.state
        budget = self.loop.round_size
        if self.loop.max_requests is not None:
            budget = min(budget, self.loop.max_requests - st.requests)
        plan: list[tuple[str, object]] = []
        requests: list[Request] = []

        def add(kind: str, ref: object, rng: random.Random | None = None) -> None:
            i = len(requests)
            requests.append(self.request(kind, ref, f"{rnd}-{i}", request_seed(self.loop.seed, rnd, i), rng))
            plan.append((kind, ref))

        self._release_reserve()
        if self.loop.mode == "self_instruct":
            for task in self._take(st.pending_instances, budget):
                add("instances", task)
            for task in self._take(st.pending_classify, budget - len(requests)):
                add("classify", task)
        rng = round_rng(self.loop.seed, rnd)
        for i in range(self._new_requests(budget - len(requests))):
            add("instructions" if self.loop.mode == "self_instruct" else "examples", i, rng)
        return plan, requests

    def _release_reserve(self) -> None:
        """Move admitted instructions from the reserve into the pipeline only as far as the target needs them,
        allowing for the share that the instance stage will still reject."""
        st = self.state
        st.pending_classify += self._take(st.reserve, self._wanted() - st.in_flight)

    def request(self, kind: str, ref: object, rid: str, seed: int, rng: random.Random | None) -> Request:
        """One request of `kind` about `ref` (a task, or the new request's index); `rng` draws in-context tasks.
        Returns the request; for instruction requests `ref` is replaced by the number the model continues from,
        kept in `self._refs[rid]`."""
        if kind == "instances":
            shots = self._shots[bool(ref.is_classification)][: self.loop.instance_shots]
            prompt = prompts.instance_prompt(
                ref, shots, bool(ref.is_classification), self.style, n_examples=self.loop.max_instances
            )
            sampling = self.sampling.instances
        elif kind == "classify":
            prompt, sampling = prompts.classify_prompt(ref.instruction, self.style), self.sampling.classify
            if ref.meta.get("classify_unclear"):  # asked again, greedily (issue: unclear yes/no)
                sampling = sampling.model_copy(update={"temperature": 0.0})
        elif kind == "instructions":
            shown = self._in_context(rng)
            self._refs[rid] = len(shown) + 1  # raw prompts end with the number the model continues from
            prompt = prompts.instruction_prompt(shown, self.loop.new_per_request, self.style)
            sampling = self.sampling.instructions
        else:
            shots = rng.sample(self._complete, min(self.loop.alpaca_in_context, len(self._complete)))
            prompt = prompts.alpaca_prompt(shots, self.loop.new_per_request, self.style)
            sampling = self.sampling.instructions
        sampling = sampling.model_copy(
            update={"seed": seed, "stop": tuple(dict.fromkeys(sampling.stop + prompt.stop))}
        )
        key = "messages" if isinstance(prompt.content, tuple) else "prompt"
        return Request(id=rid, sampling=sampling, **{key: prompt.content})

    def _answers(
        self, rnd: int, plan, requests: list[Request], out: dict[str, Completion]
    ) -> list[Completion]:
        """One answer per request, in order: from the journal when this exact request was answered before a
        crash, else from the backend, each journaled as soon as the backend hands it back. `out` holds those
        answered so far, exactly those in the journal (a stop settles them)."""
        todo: list[tuple[str, Request, str]] = []
        for (kind, _), req in zip(plan, requests, strict=True):
            digest = journal.request_hash(req)
            if (c := self._journaled(req, digest)) is not None:
                out[req.id] = c
            else:
                todo.append((kind, req, digest))
        if todo:
            sent = [r for _, r, _ in todo]
            self.sent += len(sent)
            stream = getattr(self.backend, "stream", None)
            with signals.unwrap_stop():
                if stream is not None:
                    by_id = {r.id: (k, r, d) for k, r, d in todo}
                    for c in stream(sent):
                        kind, req, digest = by_id[c.request_id]
                        with signals.critical():  # journaled and kept together
                            self.store.log(journal.completion_event(rnd, kind, req, digest, c))
                            out[req.id] = c
                else:
                    for (kind, req, digest), c in zip(todo, self.backend.generate(sent), strict=True):
                        with signals.critical():
                            self.store.log(journal.completion_event(rnd, kind, req, digest, c))
                            out[req.id] = c
            self.store.sync_journal()
            faults.crash_point("after:journal")
        return [out[r.id] for r in requests]

    def _journaled(self, req: Request, digest: str) -> Completion | None:
        """This exact request's answer from before a crash (same id, same prompt hash), taken from the replay."""
        ev = self.replay.pop(req.id, None)
        return journal.completion_of(ev) if ev is not None and ev["prompt_hash"] == digest else None

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
        missing = self.loop.target - self.state.accepted
        if self.loop.mode == "alpaca":
            return missing
        return math.ceil(missing / self.state.instance_yield()) if missing > 0 else 0

    def _in_context(self, rng: random.Random) -> list[Task]:
        n_machine = min(self.loop.in_context_machine, len(self.state.machine))
        n_seed = min(len(self.seeds), self.loop.in_context_seeds + self.loop.in_context_machine - n_machine)
        shown = rng.sample(self.seeds, n_seed) + rng.sample(self.state.machine, n_machine)
        rng.shuffle(shown)
        return shown

    # ------------------------------------------------------------------ answers -> records
    def _handle(
        self, rnd: int, plan, completions: list[Completion]
    ) -> tuple[list[Task], list[Reject], list[Task]]:
        """Read and filter answers: (accepted tasks, rejects, instructions admitted to the pool)."""
        st = self.state
        rejects: list[Reject] = []
        candidates: list[Task] = []
        with_instances: list[Task] = []
        with self.stats.timer("parse"):
            for (kind, ref), comp in zip(plan, completions, strict=True):
                if kind == "classify" and comp.ok:
                    self._classified(ref, comp.text)
                    continue
                first = self._refs.pop(comp.request_id, None)
                got = answers.read_answer(
                    kind,
                    ref if isinstance(ref, Task) else None,
                    comp,
                    rnd=rnd,
                    raw_style=self.style == "raw",
                    first=first,
                    max_instances=self.loop.max_instances,
                )
                rejects += got.rejects
                candidates += got.candidates
                if got.completed is not None:
                    with_instances.append(got.completed)
                elif kind == "instances":
                    st.finished += 1  # through the instance stage with nothing to show
        accepted: list[Task] = []
        with self.stats.timer("filter"):
            if self.loop.mode == "alpaca":
                kept, rej = self.chain.check(candidates, round=rnd)
                rejects += rej
                accepted = admitted = (
                    kept  # complete already; a last round may pass the target by its own yield
                )
            else:
                admitted, rej = self.chain.check_instructions(candidates, round=rnd)
                rejects += rej
                st.reserve += admitted
                st.finished += len(with_instances)
                accepted, rej = self.chain.check_instances(with_instances, round=rnd)
                rejects += rej
                st.kept += len(accepted)
        return [answers.for_record(t) for t in accepted], rejects, admitted

    def _classified(self, task: Task, answer: str) -> None:
        """Yes/no from the answer. An unclear one is asked once more, greedily, when the recipe says so;
        after that `loop.classify_unclear` decides. Either way the task says so in its meta."""
        reading = parse.read_yes_no(answer)
        label = reading.value
        meta = {**task.meta, "classify_raw": answer.strip()[:80], "classify_evidence": reading.evidence[:80]}
        if label is None:
            self.state.classify_unclear += 1
            policy = self.loop.classify_unclear
            if policy == "ask_again" and not task.meta.get("classify_unclear"):
                meta["classify_unclear"] = 1
                self.state.pending_classify.append(task.model_copy(update={"meta": meta}))
                return
            meta["classify_unclear"] = meta.get("classify_unclear", 0) + 1
            label = policy == "yes"
        self.state.pending_instances.append(
            task.model_copy(update={"is_classification": bool(label), "meta": meta})
        )
