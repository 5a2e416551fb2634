"""The largest answer the HTTP backend takes leaves a run every reader can read: an answer becomes part of a
line of rejects.jsonl or journal.jsonl, and a line over 16 MiB (jsonl.MAX_LINE_BYTES) makes resume and audit
refuse the whole run.

Run: .venv/bin/pytest -q tests/llm/test_answer_size.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scripted import ScriptedServer

from selfinstruct.jsonl import MAX_LINE_BYTES
from selfinstruct.llm.openai_api import _MAX_BODY

ROOT = Path(__file__).resolve().parents[2]


def _generate(recipe: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "selfinstruct", "generate", str(recipe), "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})


def test_the_largest_answer_taken_leaves_every_line_readable(tmp_path):
    """A 4 MB answer of U+0085 (two bytes in the body, six in our files, where it is escaped) was taken whole,
    stored three times in one reject (the answer, the candidate, its meta), and made a 21 MB line."""
    server = ScriptedServer()
    worst = "1. Write" + "x\u0085" * ((_MAX_BODY - 300) // 3)  # just under the cap, as UTF-8 in the body
    server.instead = lambda n, text: worst if n == 1 else None
    try:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(
            f"name: big\nseeds: {ROOT / 'seeds'}\n"
            f"backend: {{kind: openai, base_urls: ['{server.url}'], model: scripted, max_retries: 0}}\n"
            "loop: {prompt_style: chat, target: 4, round_size: 4, max_rounds: 6, seed: 1}\n"
        )
        out = tmp_path / "run"
        res = _generate(recipe, out)
        assert res.returncode == 0, res.stderr[-2000:]
        assert server.calls, "the server was asked nothing"
        for name in ("journal.jsonl", "rejects.jsonl", "tasks.jsonl"):
            longest = max(map(len, (out / name).read_bytes().splitlines()), default=0)
            assert longest <= MAX_LINE_BYTES, (name, longest)
        rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
        assert any("\u0085" in json.dumps(r, ensure_ascii=False) for r in rejects)  # the answer is on record
        audit = subprocess.run(
            [sys.executable, "-m", "selfinstruct", "audit", str(out)], capture_output=True, text=True
        )
        assert audit.returncode == 0, audit.stderr[-2000:]
        recipe.write_text(recipe.read_text().replace("target: 4", "target: 6"))
        res = _generate(recipe, out)  # a resume reads every line back
        assert res.returncode == 0, res.stderr[-2000:]
    finally:
        server.close()
