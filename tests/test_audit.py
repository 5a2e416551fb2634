"""Audit tables, `--json` and the HTML report, on run directories written by the real RunStore.

Every number is checked against counts recomputed here straight from the JSONL files with the json module.
The HTML test feeds markup-laden "model text" through every field and checks, with html.parser and with
headless Chromium (Debian `chromium`), that nothing is injected and the page keeps its structure.
Run: pytest tests/test_audit.py
"""

from __future__ import annotations

import bisect
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfinstruct.audit import KEPT, SCHEMA, audit
from selfinstruct.cli import app
from selfinstruct.report import render
from selfinstruct.schema import Instance, Readmission, Reject, RunManifest, Task
from selfinstruct.store import JsonlAppender, RunStore

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "<b><i>unclosed",
    "</td></tr></table>",
    "' onmouseover='alert(1)",
    "[bold red]rich markup[/]",
]
WORDS = "explain the list of three main ideas behind a short story about rivers and mountains".split()


def _instruction(rng: random.Random, n_words: int, payload: bool) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(n_words)).capitalize()
    return f"{text} {rng.choice(PAYLOADS)}" if payload else text


def build_run(root: Path, *, seed: int = 0, rounds: int = 6, payload: bool = False) -> Path:
    """A run directory with varied reasons and rounds, written through RunStore like the loop writes it."""
    rng = random.Random(seed)
    seeds_file = root.parent / f"{root.name}-seeds.jsonl"
    seeds = [
        {
            "id": f"seed-{i}",
            "instruction": _instruction(rng, 6, payload),
            "instances": [{"input": "", "output": "x"}],
        }
        for i in range(4)
    ]
    seeds_file.write_text("".join(json.dumps(s) + "\n" for s in seeds), encoding="utf-8")
    pool = [(s["id"], s["instruction"]) for s in seeds]
    with RunStore.open(root) as store:
        for rnd in range(1, rounds + 1):
            tasks, rejects = [], []
            for i in range(rng.randint(1, 7)):
                score = rng.choice([rng.uniform(0.02, 0.69), None])  # some tasks carry no rouge_max
                meta = (
                    {"rouge_max": {"score": score, "neighbour_id": pool[0][0]}} if score is not None else {}
                )
                tasks.append(Task(
                    id=f"t-{rnd}-{i}", instruction=_instruction(rng, rng.randint(1, 170), payload),
                    instances=[Instance(output="ok")], provenance="generated", round=rnd, meta=meta,
                ))  # fmt: skip
            for j in range(rng.randint(3, 15)):
                rid = f"r-{rnd}-{j}"
                text = _instruction(rng, rng.randint(1, 40), payload)
                record = {"id": f"c-{rnd}-{j}", "instruction": text, "provenance": "generated", "round": rnd,
                          "meta": {"raw": "the raw completion"}}  # fmt: skip
                kind = rng.choice(["parse", "llm", "heur", "heur2", "minhash", "rouge", "rouge", "loop"])
                nid, ntext = rng.choice(pool[:6])  # a few neighbours recur, as popular pool members do
                if kind == "parse":
                    rej = Reject(
                        id=rid,
                        stage="parse",
                        reason="unparseable",
                        round=rnd,
                        raw="1. " + _instruction(rng, 5, payload),
                        evidence={"expected": "numbered list"},
                    )
                elif kind == "llm":
                    rej = Reject(
                        id=rid, stage="llm", reason="llm_error", round=rnd, evidence={"error": "timeout"}
                    )
                elif kind == "heur":
                    rej = Reject(
                        id=rid,
                        stage="heuristics",
                        reason="heuristics_too_long",
                        round=rnd,
                        record=record,
                        evidence={"words": 200, "max": 150},
                    )
                elif kind == "heur2":
                    rej = Reject(
                        id=rid,
                        stage="heuristics",
                        reason="heuristics_blacklisted_word",
                        round=rnd,
                        record=record,
                        evidence={"word": "image"},
                    )
                elif kind == "minhash":
                    rej = Reject(
                        id=rid,
                        stage="minhash",
                        reason="minhash_near_duplicate",
                        round=rnd,
                        record=record,
                        evidence={"neighbour_id": nid, "jaccard": rng.uniform(0.8, 1.0), "threshold": 0.8},
                    )
                elif kind == "rouge":
                    rej = Reject(
                        id=rid,
                        stage="rouge",
                        reason="rouge_too_similar",
                        round=rnd,
                        record=record,
                        evidence={
                            "score": rng.uniform(0.701, 1.0),
                            "neighbour_id": nid,
                            "neighbour": ntext,
                            "threshold": 0.7,
                        },
                    )
                else:
                    rej = Reject(
                        id=rid,
                        stage="loop",
                        reason="loop_over_target",
                        round=rnd,
                        record=record,
                        evidence={"target": 10, "accepted": 10, "index": j},
                    )
                rejects.append(rej)
            store.append(tasks, rejects)
            pool += [(t.id, t.instruction) for t in tasks]
        store.write_manifest(RunManifest(
            name="audit-test", created="2026-01-01T00:00:00+00:00", updated="2026-01-01T00:00:00+00:00",
            config={}, config_hash="x", model="m", backend="vllm", seeds={"path": str(seeds_file)},
            rounds=rounds,
        ))  # fmt: skip
    return root


def read_files(root: Path) -> tuple[list[dict], list[dict], dict]:
    def lines(name):
        p = root / name
        return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()] if p.exists() else []

    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").exists() else {}
    return lines("tasks.jsonl"), lines("rejects.jsonl"), manifest


def expected(root: Path, stage=None, reason=None) -> dict:
    """The audit's figures, recomputed from the raw files without selfinstruct."""
    tasks, rejects, manifest = read_files(root)
    back = {r["reject_id"] for r in manifest.get("readmitted", [])}
    live = [r for r in rejects if r["id"] not in back]
    sel = [r for r in live if stage in (None, r["stage"]) and reason in (None, r["reason"])]
    rounds = sorted({t["round"] for t in tasks} | {r["round"] for r in live})
    rouge_edges = [i / 20 for i in range(21)]

    def rbin(scores):
        c = [0] * 20
        for s in scores:
            c[min(bisect.bisect_right(rouge_edges, s) - 1, 19)] += 1
        return c

    def wbin(texts):
        c = [0] * 31
        for t in texts:
            c[min(len(t.split()) // 5, 30)] += 1
        return c

    acc_scores = [t["meta"]["rouge_max"]["score"] for t in tasks if "rouge_max" in t["meta"]]
    return {
        "totals": {"accepted": len(tasks), "rejected": len(live), "readmitted": len(back)},
        "by_stage": Counter(r["stage"] for r in sel),
        "by_reason": Counter((r["stage"], r["reason"]) for r in sel),
        "rounds": {k: (sum(t["round"] == k for t in tasks), sum(r["round"] == k for r in live))
                   for k in rounds},
        "blockers": Counter(r["evidence"]["neighbour_id"] for r in sel if "neighbour_id" in r["evidence"]),
        "rouge": (rbin(acc_scores), rbin([r["evidence"]["score"] for r in live if r["stage"] == "rouge"])),
        "words": (wbin([t["instruction"] for t in tasks]),
                  wbin([r["record"]["instruction"] for r in live if r.get("record")])),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numbers_equal_counts_recomputed_from_the_files(tmp_path, seed):
    run = build_run(tmp_path / "run", seed=seed)
    s, want = audit(run, limit=1000), expected(run)
    assert {k: s["totals"][k] for k in ("accepted", "rejected", "readmitted")} == want["totals"]
    assert s["totals"]["records"] == want["totals"]["accepted"] + want["totals"]["rejected"]
    assert s["totals"]["acceptance"] == pytest.approx(want["totals"]["accepted"] / s["totals"]["records"])
    assert {r["stage"]: r["count"] for r in s["by_stage"]} == dict(want["by_stage"])
    assert {(r["stage"], r["reason"]): r["count"] for r in s["by_reason"]} == dict(want["by_reason"])
    for r in s["by_reason"]:
        assert r["share"] == pytest.approx(r["count"] / want["totals"]["rejected"])
    assert [r["count"] for r in s["by_reason"]] == sorted((r["count"] for r in s["by_reason"]), reverse=True)
    assert {r["round"]: (r["accepted"], r["rejected"]) for r in s["rounds"]} == want["rounds"]
    assert [r["round"] for r in s["rounds"]] == sorted(want["rounds"])
    assert {b["neighbour_id"]: b["count"] for b in s["blockers"]} == dict(want["blockers"])
    assert (s["histograms"]["rouge_max"]["accepted"], s["histograms"]["rouge_max"]["rejected"]) == want[
        "rouge"
    ]
    assert s["histograms"]["rouge_max"]["threshold"] == 0.7
    words = s["histograms"]["instruction_words"]
    assert (words["accepted"], words["rejected"]) == want["words"]
    samples = {(g["stage"], g["reason"]): g for g in s["samples"]}
    assert {k: g["count"] for k, g in samples.items()} == dict(want["by_reason"])


def test_a_live_or_killed_run_is_audited_without_its_unfinished_last_lines(tmp_path, caplog):
    """A run still writing (or killed mid-write) ends in a line with no newline yet: audit and export count the
    complete lines, warn about the rest, and repair nothing (the run owns its files)."""
    from selfinstruct.export import read_tasks

    run = build_run(tmp_path / "run", seed=5)
    want = expected(run)["totals"]
    cut = {}
    for name in ("tasks.jsonl", "rejects.jsonl"):
        with open(run / name, "a", encoding="utf-8") as f:
            f.write('{"id": "half", "instruction": "a line still being wri')
        cut[name] = (run / name).read_bytes()
    s = audit(run)
    assert {k: s["totals"][k] for k in want} == want
    assert len(read_tasks(run)) == want["accepted"]
    assert sum("last line has no newline yet" in r.getMessage() for r in caplog.records) == 3
    assert all((run / name).read_bytes() == data for name, data in cut.items())


def test_blockers_name_their_text_and_similarity_samples_show_both_sides(tmp_path):
    run = build_run(tmp_path / "run", seed=3)
    tasks, rejects, manifest = read_files(run)
    seeds = [json.loads(x) for x in Path(manifest["seeds"]["path"]).read_text().splitlines()]
    text = {t["id"]: t["instruction"] for t in tasks + seeds}
    s = audit(run, limit=3)
    assert 0 < len(s["blockers"]) <= 3
    counts = [b["count"] for b in s["blockers"]]
    assert counts == sorted(counts, reverse=True)
    for b in s["blockers"]:  # minhash evidence carries no text: it comes from tasks.jsonl or the seed file
        assert b["neighbour"] == text[b["neighbour_id"]]
    rouge = next(g for g in s["samples"] if g["reason"] == "rouge_too_similar")
    by_id = {r["id"]: r for r in rejects}
    assert len(rouge["rejects"]) == 3
    for x in rouge["rejects"]:
        raw = by_id[x["id"]]
        assert x["instruction"] == raw["record"]["instruction"]
        assert x["neighbour"] == {"id": raw["evidence"]["neighbour_id"], "text": raw["evidence"]["neighbour"],
                                  "score": raw["evidence"]["score"]}  # fmt: skip
    parse = next(g for g in s["samples"] if g["reason"] == "unparseable")
    assert all(x["instruction"] is None and x["raw"].startswith("1. ") and x["neighbour"] is None
               for x in parse["rejects"])  # fmt: skip


def test_stage_and_reason_select_rejects_but_not_totals(tmp_path):
    run = build_run(tmp_path / "run", seed=4)
    whole = audit(run, limit=1000)
    for stage, reason in [("rouge", None), ("heuristics", None), (None, "minhash_near_duplicate"),
                          ("heuristics", "heuristics_too_long"), ("nonexistent", None)]:  # fmt: skip
        s, want = audit(run, stage=stage, reason=reason, limit=2), expected(run, stage, reason)
        assert s["selection"] == {"stage": stage, "reason": reason, "limit": 2}
        assert s["totals"] == whole["totals"] and s["rounds"] == whole["rounds"]
        assert s["histograms"] == whole["histograms"]
        assert {(r["stage"], r["reason"]): r["count"] for r in s["by_reason"]} == dict(want["by_reason"])
        assert all(len(g["rejects"]) <= 2 for g in s["samples"])
        assert all(stage in (None, g["stage"]) and reason in (None, g["reason"]) for g in s["samples"])
        assert sum(b["count"] for b in s["blockers"]) <= sum(want["blockers"].values())


def test_filter_output_directory(tmp_path):
    out = tmp_path / "filtered"
    out.mkdir()
    kept = [{"instruction": "Give a synonym of happy.", "input": "", "output": "glad", "source": "x"},
            {"instruction": "Sort the numbers.", "input": "3 1 2", "output": "1 2 3"}]  # fmt: skip
    with JsonlAppender(out / KEPT) as f:
        for k in kept:
            f.write(k)
    from selfinstruct.seeds import to_task

    kid = to_task(kept[0], file="k", line=1).id
    with JsonlAppender(out / "rejects.jsonl") as f:
        f.write(
            Reject(
                id="f1",
                stage="rouge",
                reason="rouge_too_similar",
                record={"instruction": "Give a synonym."},
                evidence={"score": 0.8, "neighbour_id": kid, "threshold": 0.7},
            )
        )
        f.write(
            Reject(
                id="f2",
                stage="heuristics",
                reason="heuristics_empty_output",
                record={"instruction": "Say nothing.", "output": ""},
            )
        )
    s = audit(out)
    assert s["kind"] == "filter"
    assert s["totals"] == {
        "accepted": 2, "rejected": 2, "readmitted": 0, "instances_dropped": 0, "records": 4, "acceptance": 0.5
    }  # fmt: skip
    assert s["rounds"] == [{"round": None, "accepted": 2, "rejected": 2, "readmitted": 0, "acceptance": 0.5}]
    assert s["blockers"] == [{"neighbour_id": kid, "neighbour": "Give a synonym of happy.", "count": 1,
                              "reasons": {"rouge_too_similar": 1}, "max_score": 0.8}]  # fmt: skip
    res = CliRunner().invoke(app, ["audit", str(out)])
    assert res.exit_code == 0, res.output
    assert "filter" in res.stdout and "rouge_too_similar" in res.stdout


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_terminal_that_cannot_encode_the_text_gets_whole_json_and_tables(tmp_path, encoding):
    """PYTHONIOENCODING=ascii ended `audit --json` in a UnicodeEncodeError traceback: the JSON is escaped
    instead (still every character), and a table prints what it cannot encode as `?`."""
    out = tmp_path / "filtered"
    out.mkdir()
    text = "Write a haiku about the sea \U0001f30a and \u6d77 \u2013 quickly."
    with JsonlAppender(out / KEPT) as f:
        f.write({"instruction": text, "input": "", "output": "Waves \u2013 \u6d77."})
    with JsonlAppender(out / "rejects.jsonl") as f:
        f.write(
            Reject(id="f1", stage="heuristics", reason="heuristics_too_short", record={"instruction": text})
        )
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    cmd = [sys.executable, "-m", "selfinstruct", "audit", str(out), "--no-clusters"]
    res = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert json.loads(res.stdout)["samples"][0]["rejects"][0]["instruction"] == text
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, errors="replace")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "heuristics_too_short" in res.stdout


def test_bad_directories_are_one_line_errors(tmp_path):
    runner = CliRunner()
    for target in [tmp_path / "missing", tmp_path]:
        res = runner.invoke(app, ["audit", str(target)])
        assert res.exit_code == 1
        assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1
        assert str(target) in res.stderr
    run = build_run(tmp_path / "run")
    with open(run / "rejects.jsonl", "a") as f:
        f.write('{"id": "broken", "stage": "x", "reason": "y", "unknown_key": 1}\n')
    res = runner.invoke(app, ["audit", str(run)])
    assert res.exit_code == 1 and "rejects.jsonl:" in res.stderr and "unknown_key" in res.stderr


# ---------------------------------------------------------------------------------------------------- CLI


SCHEMA_KEYS = {
    "": {"schema", "source", "kind", "selection", "totals", "by_stage", "by_reason", "rounds", "blockers",
         "samples", "readmitted", "histograms", "coverage"},
    "selection": {"stage", "reason", "limit"},
    "totals": {"accepted", "rejected", "readmitted", "instances_dropped", "records", "acceptance"},
    "by_stage": {"stage", "count", "share", "readmitted"},
    "by_reason": {"stage", "reason", "count", "share", "readmitted"},
    "rounds": {"round", "accepted", "rejected", "readmitted", "acceptance"},
    "blockers": {"neighbour_id", "neighbour", "count", "reasons", "max_score"},
    "samples": {"stage", "reason", "count", "rejects"},
    "sample": {"id", "round", "instruction", "raw", "raw_chars", "evidence", "neighbour"},
    "neighbour": {"id", "text", "score"},
    "readmitted": {"reject_id", "task_id", "stage", "reason", "by", "time", "instruction"},
    "histograms": {"rouge_max", "instruction_words"},
}  # fmt: skip


def test_json_schema(tmp_path):
    run = build_run(tmp_path / "run", seed=5)
    with RunStore.open(run) as store:  # one readmission, so every list in the schema has rows
        m = store.manifest()
        rej = next(r for r in store.rejects() if r.reason == "rouge_too_similar")
        entry = Readmission(reject_id=rej.id, task_id=rej.record["id"], stage=rej.stage, reason=rej.reason,
                            by="tester", time="2026-01-02T00:00:00+00:00")  # fmt: skip
        store.write_manifest(m.model_copy(update={"readmitted": [entry]}))
    res = CliRunner().invoke(app, ["audit", str(run), "--json", "--limit", "2"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert s["schema"] == SCHEMA == "selfinstruct.audit/1" and s["kind"] == "run" and s["source"] == str(run)
    assert set(s) == SCHEMA_KEYS[""]
    assert s["selection"] == {"stage": None, "reason": None, "limit": 2}
    assert set(s["totals"]) == SCHEMA_KEYS["totals"]
    for key in ("by_stage", "by_reason", "rounds", "blockers", "samples", "readmitted"):
        assert s[key] and all(set(row) == SCHEMA_KEYS[key] for row in s[key]), key
    samples = [x for g in s["samples"] for x in g["rejects"]]
    assert all(set(x) == SCHEMA_KEYS["sample"] for x in samples)
    assert all(set(x["neighbour"]) == SCHEMA_KEYS["neighbour"] for x in samples if x["neighbour"])
    assert (
        s["readmitted"][0]["instruction"] == rej.record["instruction"]
        and s["readmitted"][0]["by"] == "tester"
    )
    h = s["histograms"]
    assert set(h) == SCHEMA_KEYS["histograms"]
    assert set(h["rouge_max"]) == {"edges", "accepted", "rejected", "threshold", "accepted_below_floor"}
    assert len(h["rouge_max"]["edges"]) == 21 and len(h["rouge_max"]["accepted"]) == 20
    assert set(h["instruction_words"]) == {"edges", "accepted", "rejected"}
    assert h["instruction_words"]["edges"][:3] == [0, 5, 10] and len(h["instruction_words"]["rejected"]) == 31
    assert isinstance(s["totals"]["acceptance"], float)
    assert all(isinstance(r["round"], int) for r in s["rounds"])


def test_tables_print_model_text_literally(tmp_path):
    run = tmp_path / "run"
    with RunStore.open(run) as store:
        store.append(
            [],
            [
                Reject(
                    id="r1",
                    stage="heuristics",
                    reason="heuristics_too_long",
                    round=1,
                    record={"instruction": "[bold red]not markup[/] \x1b[31mred\x1b[0m"},
                )
            ],
        )
    res = CliRunner().invoke(app, ["audit", str(run)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "[bold red]not markup[/]" in res.stdout  # rich markup in model text is shown, not applied
    assert "\x1b" not in res.stdout  # and terminal escapes never reach the terminal


# ---------------------------------------------------------------------------------------------------- HTML


VOID = {"meta", "br", "hr", "wbr", "input", "link", "img", "area", "base", "col", "embed", "source", "track"}
ACTIVE = {"script", "img", "iframe", "object", "embed", "link", "base", "form", "input", "svg:script",
          "foreignobject", "image", "a", "audio", "video", "frame", "frameset"}  # fmt: skip


class Structure(HTMLParser):
    """Tags, attributes and text of a page; fails on a closing tag that does not match what is open."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: Counter = Counter()
        self.attrs: list[tuple[str, str, str | None]] = []
        self.stack: list[str] = []
        self.text: list[str] = []
        self.mismatched: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] += 1
        self.attrs += [(tag, k, v) for k, v in attrs]

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.mismatched.append((tag, list(self.stack)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Structure:
    p = Structure()
    p.feed(page)
    p.close()
    return p


def hostile_run(tmp_path: Path) -> Path:
    """Markup everywhere a model (or a file) can put text: instructions, raw text, evidence, reason codes,
    neighbour ids, the readmitting user's name and the directory's own name."""
    run = build_run(tmp_path / '"><img src=x onerror=alert(1)>', seed=7, payload=True)
    with RunStore.open(run) as store:
        store.append([], [
            Reject(id='x1"><img src=x onerror=alert(1)>', stage="<script>alert(1)</script>",
                   reason="</td></tr></table><b>", round=2,
                   record={"id": "c-x1", "instruction": "<b><i>unclosed"}, raw="<script>alert(2)</script>",
                   evidence={"neighbour_id": '"><img src=x onerror=alert(1)>', "score": 0.9,
                             "neighbour": "</td></tr></table><script>alert(3)</script>", "threshold": 0.7}),
            Reject(id="x2", stage="rouge", reason="rouge_too_similar", round=1,
                   record={"id": "c-x2", "instruction": "' onmouseover='alert(1)"},
                   evidence={"neighbour_id": "seed-0", "score": 0.95, "threshold": 0.7,
                             "neighbour": "<svg onload=alert(1)>", "<k>": "<v>"}),
        ])  # fmt: skip
        m = store.manifest()
        entry = Readmission(reject_id="x2", task_id="c-x2", stage="rouge", reason="rouge_too_similar",
                            by='<script>alert("by")</script>', time="<i>now")  # fmt: skip
        store.write_manifest(m.model_copy(update={"readmitted": [entry]}))
    return run


def check_page_is_intact(page_or_dom: str, summary: dict) -> Structure:
    p = parse(page_or_dom)
    assert not p.mismatched, p.mismatched[:3]
    assert p.stack == [], p.stack  # every element closed: no payload left a tag open or closed one early
    assert not (set(p.tags) & ACTIVE), set(p.tags) & ACTIVE
    assert p.tags["script"] == 0 and p.tags["img"] == 0
    assert not [a for a in p.attrs if a[1].startswith("on")]  # no event handler attribute on any element
    assert not [a for a in p.attrs if "javascript:" in (a[2] or "").lower()]
    cov = summary["coverage"]  # coverage: a verb chart, one histogram per scored stage, a clusters table
    n_tables = 3 + bool(summary["blockers"]) + len(summary["samples"]) + bool(summary["readmitted"])
    assert p.tags["table"] == n_tables + bool(cov["clusters"])
    assert p.tags["h2"] == 8 and p.tags["svg"] == 4 + bool(cov["verbs"]["verbs"]) + len(cov["scores"])
    text = "".join(p.text)
    for payload in PAYLOADS + ["</td></tr></table><script>alert(3)</script>", '<script>alert("by")</script>']:
        assert payload in text, payload  # shown to the reader as text
    return p


def test_html_escapes_every_piece_of_model_text(tmp_path):
    run = hostile_run(tmp_path)
    summary = audit(run, limit=50)
    page = render(summary)
    p = check_page_is_intact(page, summary)
    assert p.tags["title"] >= 1 and p.tags["title"] - 1 >= len(summary["by_reason"])  # page + SVG <title>s
    svg_titles = page.count("<title>")
    assert (
        svg_titles > 10 and "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;b&gt;: " in page
    )  # reason in an SVG title
    assert '"><img' not in page and "<script" not in page and "<b><i>" not in page
    assert 'id="reject-x1&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"' in page  # inside an attribute
    assert "Content-Security-Policy" in page and "http://" not in page and "https://" not in page
    assert f"<b>{summary['totals']['rejected']}</b>" in page  # the cards show the summary's figures


def _chromium(*args: str, user_dir: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed: `make system-deps` (Debian packages chromium, chromium-driver)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={user_dir}"]  # fmt: skip
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=timeout)


def test_html_in_headless_chromium(tmp_path):
    from PIL import Image

    run = hostile_run(tmp_path)
    page_file = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["audit", str(run), "--html", str(page_file), "--limit", "4"])
    assert res.exit_code == 0, res.output
    summary = audit(run, limit=4, clusters=True)  # --html clusters by default
    url = page_file.resolve().as_uri()

    dom = _chromium("--dump-dom", url, user_dir=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    check_page_is_intact(dom.stdout, summary)  # after load and layout: nothing injected, nothing broken

    png = tmp_path / "report.png"
    shot = _chromium(
        f"--screenshot={png}", "--window-size=1280,2000", url, user_dir=tmp_path / "profile-shot"
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png.exists() and png.stat().st_size > 20_000
    img = Image.open(png).convert("RGB")
    assert img.size == (1280, 2000)
    colours = Counter({rgb: n for n, rgb in img.getcolors(maxcolors=1 << 24)})
    assert len(colours) > 50  # text, tables and charts, not a blank or error page
    red = sum(
        n for (r, g, b), n in colours.items() if abs(r - 0xC0) < 8 and abs(g - 0x39) < 8 and abs(b - 0x2B) < 8
    )
    green = sum(
        n for (r, g, b), n in colours.items() if abs(r - 0x2F) < 8 and abs(g - 0x7D) < 8 and abs(b - 0x4F) < 8
    )
    assert red > 500 and green > 500  # the reject and acceptance bars were drawn


def test_audit_counts_candidates_not_lines(tmp_path):
    """A record that loses its only instance is two reject lines (the instance, then the task) but one
    candidate: a 3-line file is 3 records, not 4."""
    src = tmp_path / "three.jsonl"
    rows = [
        {"instruction": "Name the capital of France.", "instances": [{"input": "", "output": "Paris"}]},
        {
            "instruction": "Give the boiling point of water in Celsius.",
            "instances": [{"input": "", "output": ""}],
        },
        {"instruction": "Spell the word cat backwards.", "instances": [{"input": "", "output": "tac"}]},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["filter", str(src), "--out", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "f" / "rejects.jsonl").read_text().splitlines()
    assert len(lines) == 2  # the instance and the task, each on record
    s = audit(tmp_path / "f")
    assert s["totals"]["records"] == 3
    assert (s["totals"]["accepted"], s["totals"]["rejected"], s["totals"]["instances_dropped"]) == (2, 1, 1)
    # the tables list reject lines, so their shares are of lines: they add up to 1 (they once made 2: 1/1 + 1/1)
    for table in ("by_stage", "by_reason"):
        assert sum(r["count"] for r in s[table]) == 2
        assert sum(r["share"] for r in s[table]) == pytest.approx(1.0)


def test_a_stage_or_reason_the_run_does_not_have_is_said(tmp_path):
    """`--stage bogus` printed empty tables, as for a stage that rejected nothing."""
    run = build_run(tmp_path / "run", seed=4)
    res = CliRunner().invoke(app, ["audit", str(run), "--stage", "rogue", "--no-clusters"])
    assert res.exit_code == 0, res.output
    [line] = [x for x in res.stderr.splitlines() if "warning" in x]
    assert f"{run}: no reject has stage 'rogue' (it has: " in line and "rouge" in line
    res = CliRunner().invoke(app, ["audit", str(run), "--stage", "rouge", "--no-clusters"])
    assert "warning" not in res.stderr
