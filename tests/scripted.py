"""A scripted model: fixed, reproducible texts for the loop's prompts, in process or over the OpenAI API.

A real model cannot be made to answer with chosen texts on demand (repeats, copies of in-context tasks,
unclear yes/no, broken instance layouts), and the resume tests need the same answer every time a request is
asked. Each answer is a function of the prompt and the request's seed alone; the mix is reject-heavy like a
small model's. Both forms count what they were asked, keyed by the request's seed (unique per request in a run).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from selfinstruct.llm.base import Completion, Request

VERBS = (
    "Write Explain List Describe Summarize Classify Translate Suggest Compare Rewrite Plan Outline Draft Rank "
    "Estimate Design Critique Simplify Predict Identify Sketch Convert Evaluate Propose"
).split()
WORDS = (
    "river harbour violin budget glacier recipe sonnet ledger orbit lantern meadow invoice tractor canyon "
    "puzzle compass quartz marathon pottery satellite monsoon bakery alphabet museum vaccine turbine "
    "origami volcano dialect festival algebra compost parliament telescope migraine sculpture cipher "
    "avalanche orchard mortgage symphony pixel lighthouse haiku sandstorm caravan bicycle democracy "
    "spreadsheet thermostat bonsai hurricane lullaby warehouse cathedral podcast microscope tariff "
    "wetland sourdough kayak firmware prairie chandelier referendum tapestry comet glossary backpack "
    "metronome quarry aquarium blizzard sitcom vineyard ferry keyboard sunflower ozone trombone "
    "password ballot mosaic hedgehog pension glacier rooftop subway coral pamphlet ravine antenna"
).split()
# Real words (those of our own seed tasks), drawn at random: unrelated candidates share few words, as a real
# model's distinct instructions do; the repeats, copies and near-copies below are the near-duplicates.
_SEEDS = Path(__file__).resolve().parents[1] / "seeds" / "seed_tasks.jsonl"
VOCAB = sorted(
    {w for line in _SEEDS.read_text(encoding="utf-8").splitlines() for w in re.findall(r"[a-z]{3,}", line)}
    - {
        "instruction",
        "instances",
        "input",
        "output",
        "is_classification",
        "true",
        "false",
        "name",
        "seed_task",
    }
)
LABELS = ("positive", "negative", "neutral")


def _rng(*parts) -> random.Random:
    return random.Random(int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16], 16))


def _instruction(rng: random.Random, shown: list[str]) -> str:
    roll = rng.random()
    if roll < 0.15:
        return "Name a bird that lives near the sea."  # a model repeating itself: identical candidates
    if roll < 0.25 and shown:
        return rng.choice(shown)  # a copy of an in-context task, word for word
    if roll < 0.35 and shown:  # a near-copy: one word of an in-context task changed
        words = rng.choice(shown).split()
        words[rng.randrange(len(words))] = rng.choice(VOCAB)
        return " ".join(words)
    return f"{rng.choice(VERBS)} {' '.join(rng.sample(VOCAB, rng.randint(5, 10)))}."


def answer(text: str, seed: int | None, raw: bool) -> str:
    """The scripted answer to one prompt (chat message text or raw prompt)."""
    rng = _rng(text, seed)
    if "Classification:" in text.rsplit("Task:", 1)[-1] and "Say whether each task" in text:
        return rng.choice([" Yes", " No", " No", " Maybe so"])
    if "Give examples for" in text:
        output_first = "Label:" in text
        blocks = []
        for _ in range(rng.choice([1, 2, 3])):
            if rng.random() < 0.1:
                blocks.append("Nothing useful here")
                continue
            inp = " ".join(rng.sample(WORDS, 5))
            if output_first:
                blocks.append(f"Label: {rng.choice(LABELS)}\nInput: {inp}")
            else:
                blocks.append(f"Input: {inp}\nOutput: {' '.join(rng.sample(WORDS, 6))}")
        body = "\n\nExample 2\n".join(blocks[:2]) if len(blocks) > 1 else blocks[0]
        return body
    if "Answer in exactly two lines:\nScore:" in text:  # the rating judge: 0 for a response saying "wrong"
        response = text.split("Response:\n", 1)[-1].split("\n\nGive the response", 1)[0]
        return f"Score: {0 if 'wrong' in response else 5}\nReason: scripted"
    if "numbered list of tasks" in text:
        shown = re.findall(r"^\d+\. (.+)$", text, flags=re.M)
        start = int(m.group(1)) if (m := re.search(r"Number them from (\d+)", text)) else len(shown) + 1
        n = rng.choice([3, 4, 5])
        items = [_instruction(rng, shown) for _ in range(n)]
        lines = [f"{start + i}. {it}" for i, it in enumerate(items)]
        if raw:  # the prompt ends with "N." already
            lines[0] = " " + items[0]
        return "\n".join(lines)
    return "I am not sure what to say."


def _key(seed: int | None, text: str) -> str:
    return f"{seed}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


class ScriptedBackend:
    """The in-process form: `generate(requests)` in input order, with `calls` counting each request asked."""

    name = "scripted"
    model = "scripted"

    def __init__(self):
        self.calls: Counter = Counter()

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        out = []
        for r in requests:
            text = r.prompt if r.prompt is not None else r.messages[-1]["content"]
            self.calls[_key(r.sampling.seed, text)] += 1
            reply = answer(text, r.sampling.seed, r.prompt is not None)
            out.append(
                Completion(
                    request_id=r.id,
                    texts=[reply],
                    finish_reasons=["stop"],
                    prompt_tokens=len(text.split()),
                    completion_tokens=len(reply.split()),
                )
            )
        return out

    def close(self) -> None:
        pass


class ScriptedServer:
    """The HTTP form, an OpenAI-compatible server on 127.0.0.1 answering with `answer`. `calls` lists the key of
    every request in arrival order; `on_call(n)` (if set) runs after the n-th request is answered."""

    def __init__(self, model: str = "scripted", delay_s: float = 0.0):
        self.model, self.delay_s = model, delay_s
        self.calls: list[str] = []
        self.on_call = None
        self.instead = None  # if set, `instead(n, text)` -> an exact answer for the n-th request, or None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.scripted = self  # type: ignore[attr-defined]
        self._server.daemon_threads = True
        self._server.handle_error = lambda *a: None  # a killed client closes its socket mid-answer: expected
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def reply(self, path: str, body: dict) -> dict:
        raw = not path.endswith("/chat/completions")
        text = body["prompt"] if raw else body["messages"][-1]["content"]
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.calls.append(_key(body.get("seed"), text))
            n = len(self.calls)
        out = answer(text, body.get("seed"), raw)
        if self.instead is not None:
            out = self.instead(n, text) or out
        choice = {"index": 0, "finish_reason": "stop"}
        choice.update({"text": out} if raw else {"message": {"role": "assistant", "content": out}})
        if self.on_call is not None:
            self.on_call(n)
        usage = {"prompt_tokens": len(text.split()), "completion_tokens": len(out.split())}
        return {"choices": [choice], "usage": usage}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _send(self, payload: dict, status: int = 200) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()  # as servers send it: raw UTF-8
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            self._send({"object": "list", "data": [{"id": self.server.scripted.model}]})
        else:
            self._send({"error": "no such route"}, 404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send(self.server.scripted.reply(self.path, body))
