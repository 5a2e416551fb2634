"""The streaming schedule: no barrier. `round_size` requests stay in flight; each answer is settled as it arrives
(parsed, filtered, written) and the freed place is given to the next request at once.

What the loop decides is a function of the order in which it settles answers, and that order is the journal's:
each answer is journaled, fsynced, then settled, then the window is topped up. Planning is a function of the
state alone (request `s<n>` gets seed and in-context draw from n), so replaying the journal's answers in order
after the last checkpoint, topping up after each as live, rebuilds the exact state, in-flight requests
included; those not yet answered are then sent again. A checkpoint (a "round" in the journal and the manifest)
falls after every `round_size` settled answers.

The backend's `stream(requests, max_in_flight=)` pulls requests from an iterator that yields None for "nothing
to ask right now" (the backend asks again after the next answer); `llm.base.stream` builds one from `generate`
for backends without it. This module knows nothing of files: the loop's store does the writing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import closing
from typing import TYPE_CHECKING

from selfinstruct import faults, journal, signals
from selfinstruct.llm.base import Completion, Request
from selfinstruct.llm.base import stream as llm_stream
from selfinstruct.loopstate import request_seed, round_rng
from selfinstruct.schema import Task

if TYPE_CHECKING:
    from selfinstruct.bootstrap import Bootstrap


def run_stream(loop: Bootstrap) -> str:
    """Settle answers until a stop condition; returns its reason (the caller writes what is unfinished)."""
    st = loop.state
    if (reason := replay(loop)) is not None:
        return reason

    given: set[str] = set()
    pending: deque[Request] = deque()

    def hand_over() -> None:
        for e in st.inflight:
            if e["request"]["id"] not in given:
                given.add(e["request"]["id"])
                loop.sent += 1
                pending.append(Request.model_validate(e["request"]))

    def source() -> Iterator[Request | None]:
        while True:
            yield pending.popleft() if pending else None

    hand_over()
    if not st.inflight:
        return "no_progress"  # nothing to ask and nothing asked: the target cannot move
    answers = llm_stream(loop.backend, source(), max_in_flight=loop.loop.round_size)
    with closing(answers), signals.unwrap_stop():
        for c in answers:
            entry = _entry(st, c.request_id)
            if entry is None:  # not ours (cannot happen with our backends): never settle a stranger
                continue
            with signals.critical():  # a journaled answer is settled before a stop: the journal is the record
                loop.store.log(
                    journal.completion_event(
                        st.round + 1,
                        entry["kind"],
                        Request.model_validate(entry["request"]),
                        entry["hash"],
                        c,
                    ),
                    sync=True,
                )
                faults.crash_point("after:journal")
                settle(loop, entry, c)
            if (reason := loop.stop_reason()) is not None:
                return reason
            hand_over()
            if not st.inflight:
                return loop.stop_reason() or "no_progress"
    return loop.stop_reason() or "no_progress"


def replay(loop: Bootstrap, *, take_in: bool = True) -> str | None:
    """Settle the answers journaled after the last checkpoint in journal order, topping up after each as live:
    the state as it was when the last process ended. Returns a stop reason that falls due on the way, as it
    did live. `take_in=False` (finishing a journaled stop): readmissions after the stop wait for it."""
    st = loop.state
    events = list(loop.replay.values())  # journal order: the order the answers were settled in
    loop.replay = {}
    if take_in and loop.store is not None:
        loop.take_in(st.round + 1)
    top_up(loop)
    for ev in events:
        entry = _entry(st, ev["request"])
        if (
            entry is None
            or journal.request_hash(Request.model_validate(entry["request"])) != ev["prompt_hash"]
        ):
            continue
        with signals.critical():
            settle(loop, entry, journal.completion_of(ev))
        if (reason := loop.stop_reason()) is not None:
            return reason
    return loop.stop_reason()


def settle(loop: Bootstrap, entry: dict, completion: Completion) -> None:
    """One answer: parse, filter, write, update the state; top the window up; checkpoint every round_size."""
    st = loop.state
    st.inflight.remove(entry)
    kind = entry["kind"]
    ref = Task.model_validate(entry["ref"]) if isinstance(entry["ref"], dict) else entry["ref"]
    if entry.get("first") is not None:
        loop._refs[completion.request_id] = entry["first"]
    st.requests += 1
    st.prompt_tokens += completion.prompt_tokens
    st.completion_tokens += completion.completion_tokens
    rnd = st.round + 1
    accepted, rejects, admitted = loop._handle(rnd, [(kind, ref)], [completion])
    loop.store.append(accepted, rejects, sync=False)  # fsynced at the checkpoint; the journal has the answer
    loop.settled(accepted, admitted)
    loop._round_accepted += len(accepted)
    top_up(loop)
    st.handled += 1
    if st.handled % loop.loop.round_size == 0:
        st.round += 1
        st.idle_rounds = 0 if loop._round_accepted else st.idle_rounds + 1
        loop._checkpoint()
        if loop.store is not None:
            loop.take_in(st.round + 1)  # readmissions: taken in at each checkpoint, journaled there
        report = _report(loop)
        loop._round_accepted, loop._round_tokens = 0, st.completion_tokens
        loop._round_t0 = time.perf_counter()
        if loop.on_round:
            loop.on_round(report)


def top_up(loop: Bootstrap) -> None:
    """Plan requests until `round_size` are in flight or nothing is wanted now (a function of the state)."""
    st = loop.state
    while len(st.inflight) < loop.loop.round_size:
        if loop.loop.max_requests is not None and st.sent >= loop.loop.max_requests:
            return
        entry = _next(loop)
        if entry is None:
            return
        st.inflight.append(entry)


def _next(loop: Bootstrap) -> dict | None:
    st, cfg = loop.state, loop.loop
    loop._release_reserve()
    n = st.sent
    rng = None
    if cfg.mode == "self_instruct" and st.pending_instances:
        kind, ref = "instances", st.pending_instances.pop(0)
    elif cfg.mode == "self_instruct" and st.pending_classify:
        kind, ref = "classify", st.pending_classify.pop(0)
    elif loop._new_requests(1):
        kind, ref, rng = (
            ("instructions" if cfg.mode == "self_instruct" else "examples"),
            n,
            round_rng(cfg.seed, n),
        )
    else:
        return None
    rid = f"s{n}"
    req = loop.request(kind, ref, rid, request_seed(cfg.seed, 0, n), rng)
    st.sent += 1
    return {
        "kind": kind,
        "ref": ref.model_dump(mode="json") if isinstance(ref, Task) else ref,
        "request": req.model_dump(mode="json"),
        "hash": journal.request_hash(req),
        "first": loop._refs.pop(rid, None),
    }


def _entry(st, request_id: str) -> dict | None:
    return next((e for e in st.inflight if e["request"]["id"] == request_id), None)


def _report(loop: Bootstrap):
    """A round of the streaming schedule (round_size settled answers), for progress and the manifest."""
    from selfinstruct.loopstate import RoundReport

    st = loop.state
    tokens = st.completion_tokens - loop._round_tokens
    took = time.perf_counter() - loop._round_t0
    return RoundReport(st.round, loop._round_accepted, 0, st.accepted, loop.loop.target, tokens, took, {})
