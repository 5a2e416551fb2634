"""MinHash near-duplicates: recall on planted copies, precision reported, seeded runs identical, Redis."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from selfinstruct.filters import MinHashConfig, MinHashIndex, RedisStorage
from selfinstruct.filters.minhash import shingles


def _examples(external, n=900):
    records = json.loads((external / "stanford_alpaca_pr152_alpaca_5000.json").read_text(encoding="utf-8"))
    texts = ["\n".join((r["instruction"], r["input"], r["output"])) for r in records]
    return [t for t in texts if len(t.split()) >= 60][:n]


def _jaccard(a: str, b: str, n: int = 3) -> float:
    x, y = shingles(a, n), shingles(b, n)
    return len(x & y) / len(x | y)


def _plant(texts, rng, count):
    """Copies of random texts with one word replaced, kept only if their true shingle Jaccard is >= 0.9."""
    plants = []
    while len(plants) < count:
        src = rng.randrange(len(texts))
        words = texts[src].split(" ")
        words[rng.randrange(len(words))] = "zebra"
        copy = " ".join(words)
        if _jaccard(copy, texts[src]) >= 0.9:
            plants.append((src, copy))
    return plants


def _run(index: MinHashIndex, pool, plants, fresh):
    for i, t in enumerate(pool):
        index.add(f"p{i}", index.signature(t))
    found = [index.query(index.signature(c)) for _, c in plants]
    false = [index.query(index.signature(t)) for t in fresh]
    return found, false


def test_recall_on_planted_near_duplicates(external):
    texts = _examples(external)
    pool, fresh = texts[:600], texts[600:]
    plants = _plant(pool, random.Random(3), 200)
    found, false = _run(MinHashIndex(), pool, plants, fresh)
    hits = sum(f is not None and f[0] == f"p{src}" for f, (src, _) in zip(found, plants, strict=True))
    recall = hits / len(plants)
    flagged_fresh = sum(f is not None for f in false)
    precision = hits / (
        hits
        + flagged_fresh
        + sum(f is not None and f[0] != f"p{s}" for f, (s, _) in zip(found, plants, strict=True))
    )
    print(
        f"\nminhash recall {recall:.3f} on {len(plants)} planted copies (J >= 0.9), "
        f"precision {precision:.3f}, "
        f"{flagged_fresh}/{len(fresh)} unrelated examples flagged"
    )
    assert recall >= 0.95
    assert precision >= 0.9
    assert all(f is None or f[1] >= 0.8 for f in found + false)  # evidence: the estimate that decided


def test_seeded_runs_are_identical(external):
    texts = _examples(external, 300)
    plants = _plant(texts, random.Random(5), 40)
    a = _run(MinHashIndex(MinHashConfig(seed=11)), texts, plants, texts[:20])
    b = _run(MinHashIndex(MinHashConfig(seed=11)), texts, plants, texts[:20])
    assert a == b

    def sig(seed):
        return MinHashIndex(MinHashConfig(seed=seed)).signature(texts[0]).hashvalues.tolist()

    assert sig(11) == sig(11) and sig(11) != sig(12)  # the seed picks the permutations


@pytest.mark.server
def test_redis_backend_gives_the_same_result(external, redis_server):
    host, port = redis_server
    texts = _examples(external, 300)
    pool, fresh = texts[:250], texts[250:]
    plants = _plant(pool, random.Random(9), 40)
    memory = _run(MinHashIndex(), pool, plants, fresh)
    shared = MinHashConfig(redis=RedisStorage(host=host, port=port, basename="t_same"))
    assert _run(MinHashIndex(shared), pool, plants, fresh) == memory


@pytest.mark.server
def test_redis_index_is_shared_between_processes(redis_server):
    host, port = redis_server
    text = "Translate the sentence into French.\nThe weather is lovely today and we will walk by the river."
    code = (
        "from selfinstruct.filters import MinHashConfig, MinHashIndex, RedisStorage\n"
        f"c = MinHashConfig(redis=RedisStorage(host='{host}', port={port}, basename='t_share'))\n"
        "i = MinHashIndex(c)\n"
        f"i.add('other-process', i.signature({text!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    here = MinHashIndex(MinHashConfig(redis=RedisStorage(host=host, port=port, basename="t_share")))
    assert here.query(here.signature(text)) == ("other-process", 1.0)
    assert (
        MinHashIndex(MinHashConfig(redis=RedisStorage(host=host, port=port, basename="t_other"))).query(
            here.signature(text)
        )
        is None
    )


def test_unreachable_redis_is_one_clear_error():
    from selfinstruct.errors import SelfInstructError

    with pytest.raises(SelfInstructError, match="cannot reach Redis at 127.0.0.1:1"):
        MinHashIndex(MinHashConfig(redis=RedisStorage(port=1)))
