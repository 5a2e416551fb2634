"""Coverage in the audit: verb-object reading against hand labels, tables recomputed from the files, charts.

Run: .venv/bin/pytest -q tests/test_coverage.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from selfinstruct.audit import audit
from selfinstruct.cli import app
from selfinstruct.coverage import clusters, kmeans, verb_object, verb_table
from selfinstruct.filters import FilterConfig
from selfinstruct.filters.config import SemanticConfig
from selfinstruct.filters.dataset import filter_file

LABELS = Path(__file__).resolve().parent / "data" / "verb_noun_labels.json"

RECORDS = [
    "Write a short story about a lighthouse keeper.",
    "Write a poem about the moon.",
    "Compose some verses describing the moon at night.",  # a paraphrase of the poem: semantic reject
    "Give me three tips for learning a language.",
    "Give an example of a renewable resource.",
    "Translate the sentence into German.",
    "Sort the numbers from smallest to largest.",
    "What is the tallest mountain in Europe?",
    "Given a list of words, find the longest one.",
]


def _accuracy(pairs: dict[str, list | None], text: dict[str, str]) -> tuple[int, int]:
    verbs = full = 0
    for key, label in pairs.items():
        got = verb_object(text[key])
        want = tuple(label) if label else None
        verbs += (got[0] if got else None) == (want[0] if want else None)
        full += got == want
    return verbs, full


def test_verb_object_accuracy_on_hand_labels(external):
    labels = json.loads(LABELS.read_text())
    seeds = {}
    for line in (external / "self_instruct_seed_tasks.jsonl").read_text().splitlines():
        d = json.loads(line)
        seeds[d["id"]] = d["instruction"]
    alpaca = json.loads((external / "stanford_alpaca_pr152_alpaca_5000.json").read_text())
    held = {k: alpaca[int(k)]["instruction"] for k in labels["held_out"]}
    assert len(labels["seed"]) == 60 and len(labels["held_out"]) == 30
    # Measured: seed 58/60 verbs, 58/60 pairs; held out 29/30 verbs, 25/30 pairs.
    assert _accuracy(labels["seed"], seeds) >= (57, 56)
    assert _accuracy(labels["held_out"], held) >= (28, 24)


def test_verb_object_rules():
    assert verb_object("Given a list of numbers, find the largest one.") == ("find", None)
    assert verb_object("Can you give me some suggestions?") == ("give", "suggestion")
    assert verb_object("Come up with three catchy names for a bakery.") == ("come up with", "name")
    assert verb_object("What is the capital of Peru?") is None
    assert verb_object("I am bored. Please recommend a good movie for tonight.") == ("recommend", "movie")
    table = verb_table(["Write a poem.", "Write two essays about rain.", "Write a poem about snow.", "Why?"])
    assert table["parsed"] == 3 and table["instructions"] == 4
    assert table["verbs"] == [
        {
            "verb": "write",
            "count": 3,
            "objects": [{"noun": "poem", "count": 2}, {"noun": "essay", "count": 1}],
        }
    ]


def test_kmeans_finds_separated_groups_and_representatives():
    rng = np.random.default_rng(1)
    centres = np.eye(384, dtype=np.float32)[:3]
    x = np.concatenate([c + 0.05 * rng.standard_normal((10, 384)).astype(np.float32) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels, _ = kmeans(x, 3)
    assert sorted(np.bincount(labels).tolist()) == [10, 10, 10]
    assert all(len(set(labels[i * 10 : (i + 1) * 10])) == 1 for i in range(3))
    ids = [f"i{i}" for i in range(30)]
    found = clusters(ids, [f"text {i}" for i in range(30)], x, k=3)
    assert [c["size"] for c in found] == [10, 10, 10]
    assert all(c["representative"] == f"text {c['id'][1:]}" for c in found)


def test_coverage_recomputes_from_the_files(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"instruction": r, "input": "", "output": "ok."}) + "\n" for r in RECORDS)
    )
    out = tmp_path / "out"
    config = FilterConfig(minhash=None, semantic=SemanticConfig(threshold=0.7))
    filter_file(src, out, config)
    kept = [json.loads(line)["instruction"] for line in (out / "kept.jsonl").read_text().splitlines()]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    sem = [r for r in rejects if r["reason"] == "semantic_near_duplicate"]
    assert [r["record"]["instruction"] for r in sem] == ["Compose some verses describing the moon at night."]

    cov = audit(out)["coverage"]
    assert cov["verbs"] == verb_table(kept)  # the table is what the kept file says, nothing else
    verbs = {v["verb"]: v["count"] for v in cov["verbs"]["verbs"]}
    assert verbs == {"write": 2, "give": 2, "translate": 1, "sort": 1, "find": 1}
    assert cov["verbs"]["parsed"] == 7 and cov["verbs"]["instructions"] == 8
    hist = cov["scores"]["semantic_cosine"]["rejected"]
    assert hist["n"] == 1 and hist["mean"] == sem[0]["evidence"]["cosine"]

    # Change the file, and the tables follow.
    with (out / "kept.jsonl").open("a") as f:
        f.write(
            json.dumps({"instruction": "Write a limerick about a cat.", "input": "", "output": "x"}) + "\n"
        )
    again = audit(out)["coverage"]["verbs"]
    assert again["verbs"][0] == {
        "verb": "write",
        "count": 3,
        "objects": [
            {"noun": "limerick", "count": 1},
            {"noun": "poem", "count": 1},
            {"noun": "story", "count": 1},
        ],
    }

    # The CLI's --json and --html show the same block, clusters included with --html.
    res = CliRunner().invoke(app, ["audit", str(out), "--json", "--clusters"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)["coverage"]
    assert shown["verbs"] == again
    assert sum(c["size"] for c in shown["clusters"]) == 9
    kept_now = set(kept) | {"Write a limerick about a cat."}
    assert all(c["representative"] in kept_now for c in shown["clusters"])
    page = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["audit", str(out), "--html", str(page)])
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert "Leading verbs" in html and 'aria-label="leading verbs and objects"' in html
    assert "Clusters of the embedding space" in html and "highest cosine to the pool" in html
