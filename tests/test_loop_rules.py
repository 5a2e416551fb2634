"""Loop rules on an in-process scripted backend: an unclear yes/no is asked again greedily, then the recipe's
default; in-context machine tasks come from the admitted or the accepted pool as the recipe says.

Run: .venv/bin/pytest -q tests/test_loop_rules.py
"""

from __future__ import annotations

import json
from pathlib import Path

from selfinstruct.config import load_recipe
from selfinstruct.generate import generate
from selfinstruct.llm.base import Completion

ROOT = Path(__file__).resolve().parents[1]


def recipe(sampling: dict | None = None, **loop):
    over = {
        **({"sampling.classify": sampling} if sampling else {}),
        "seeds": str(ROOT / "seeds"),
        "loop.prompt_style": "chat",
        "loop.round_size": 4,
        "loop.new_per_request": 2,
        "backend": {"kind": "openai", "base_urls": ["http://127.0.0.1:9/v1"], "model": "fixed"},
        **{f"loop.{k}": v for k, v in loop.items()},
    }
    return load_recipe(ROOT / "pipelines" / "quickstart.yaml", over)


class Fixed:
    """Answers by the kind of prompt; classification is unclear unless asked greedily."""

    name = model = "fixed"

    def __init__(self):
        self.classify: list[float] = []  # the temperature of each classification request
        self.shown: list[str] = []  # instruction prompts, to see which machine tasks were in context
        self.n = 0

    def generate(self, requests):
        out = []
        for r in requests:
            text = r.messages[-1]["content"]
            if "Say whether each task" in text:
                self.classify.append(r.sampling.temperature)
                reply = "Yes, it is." if r.sampling.temperature == 0.0 and len(self.classify) > 1 else "Hmm."
            elif "Give examples for" in text:
                reply = "Label: positive\nInput: a fine day" if "Label:" in text else "Input: x\nOutput: y"
            else:
                self.shown.append(text)
                self.n += 1
                reply = f"1. Describe planet number {self.n} orbiting a quiet star.\n" if self.n == 1 else ""
            out.append(Completion(request_id=r.id, texts=[reply], finish_reasons=["stop"]))
        return out

    def close(self):
        pass


def test_an_unclear_yes_no_is_asked_again_greedily_then_kept_in_meta(tmp_path):
    backend = Fixed()
    sampled = {"temperature": 0.7, "max_tokens": 4}
    m = generate(
        recipe(sampled, target=1, max_rounds=4, classify_unclear="ask_again"), tmp_path / "r", backend=backend
    )
    [task] = [json.loads(x) for x in (tmp_path / "r" / "tasks.jsonl").read_text().splitlines()]
    assert backend.classify == [0.7, 0.0]  # asked again, greedily, and "Yes, it is." reads as yes
    assert task["is_classification"] is True and task["meta"]["classify_unclear"] == 1
    assert m.counts["classify_unclear"] == 1


def test_unclear_means_what_the_recipe_says(tmp_path):
    backend = Fixed()
    generate(recipe(target=1, max_rounds=3, classify_unclear="yes"), tmp_path / "r", backend=backend)
    [task] = [json.loads(x) for x in (tmp_path / "r" / "tasks.jsonl").read_text().splitlines()]
    assert len(backend.classify) == 1 and task["is_classification"] is True
    assert task["meta"]["classify_unclear"] == 1


def test_machine_pool_admitted_shows_instructions_not_yet_finished(tmp_path):
    for pool, seen in (("admitted", True), ("accepted", False)):
        backend = Fixed()
        generate(
            recipe(target=5, max_rounds=2, machine_pool=pool, in_context_machine=2),
            tmp_path / pool,
            backend=backend,
        )
        # Round 2's instruction prompts: the planet task was admitted in round 1 but has no instances yet.
        later = backend.shown[4:]
        assert later and any("planet number 1" in p for p in later) is seen, pool


def test_seeds_through_a_pipe_are_read_once(tmp_path):
    import os
    import threading

    fifo = tmp_path / "seeds.jsonl"
    os.mkfifo(fifo)
    text = (ROOT / "seeds" / "seed_tasks.jsonl").read_text()

    def feed():
        with open(fifo, "w") as f:
            f.write(text)

    threading.Thread(target=feed, daemon=True).start()
    r = recipe(target=1, max_rounds=1).model_copy(update={"seeds": str(fifo)})
    m = generate(r, tmp_path / "r", backend=Fixed())
    assert m.seeds["tasks"] == 175 and m.seeds["files"]["seeds.jsonl"]
