"""The chain: order of stages, admission only after acceptance, rejects with evidence, rouge_max, stats."""

from __future__ import annotations

from selfinstruct.filters import FilterChain, FilterConfig
from selfinstruct.schema import Instance, Task

OUT = "A long enough answer that says something specific about the question asked here, in plain words."


def task(tid: str, instruction: str, *instances: tuple[str, str], **meta) -> Task:
    inst = [Instance(input=i, output=o) for i, o in instances] or [Instance(output=OUT)]
    return Task(id=tid, instruction=instruction, instances=inst, meta=meta, provenance="generated")


SEED = task("seed", "Write a haiku about the first snow of winter.")


def test_check_instructions_against_pool_and_batch():
    chain = FilterChain()
    chain.add([SEED])
    batch = [
        task(
            "a", "Write a haiku about the first snow of winter!", raw="1. Write a haiku ..."
        ),  # the seed again
        task("b", "List five ways to save water at home."),
        task("c", "List five ways to save water at home today."),  # like b, which is kept first
        task("d", "Name three."),  # heuristics, before ROUGE
        task("e", "Explain how tides work to a child."),
    ]
    kept, rejects = chain.check_instructions(batch, round=2)
    assert [t.id for t in kept] == ["b", "e"]
    by = {r.record["id"]: r for r in rejects}
    assert by["a"].reason == "rouge_too_similar" and by["a"].stage == "rouge"
    assert by["a"].evidence == {
        "score": 1.0, "neighbour_id": "seed", "neighbour": SEED.instruction, "threshold": 0.7,
    }  # fmt: skip
    assert by["a"].raw == "1. Write a haiku ..." and by["a"].round == 2
    assert by["c"].evidence["neighbour_id"] == "b" and by["c"].evidence["score"] > 0.7
    assert by["d"].reason == "heuristics_too_short"
    # Kept tasks carry their best pool score for the audit histogram; b's best neighbour is below the floor.
    assert kept[0].meta["rouge_max"] == {"score": 0.3, "neighbour_id": None, "below": True}
    s = chain.stats.counts
    assert (s["total"], s["kept"], s["rejected"], s["rejected_rouge_too_similar"]) == (5, 2, 3, 2)
    assert set(chain.stats.timings) >= {"heuristics", "rouge"}
    # A reject never enters the pool: c's near-copy is compared with b (kept), not with c.
    kept2, rejects2 = chain.check_instructions([task("f", "List five ways to save water at home today!")])
    assert rejects2[0].evidence["neighbour_id"] == "b"


def test_rouge_alone_decides_a_batch_as_item_by_item_verdicts_do():
    """With ROUGE-L the only check after the heuristics, the chain lets the index decide the batch in one
    go (`RougeFilter.decide`); rejects, evidence and rouge_max are those of asking item by item."""
    import random

    from selfinstruct.filters.rouge_filter import RougeFilter

    rng = random.Random(3)
    words = "write list explain name the a of ten five ways to save water at home tides work child".split()
    stream: list[str] = []
    for _ in range(300):
        if stream and rng.random() < 0.7:  # a near-copy or an exact repeat of an earlier text
            ws = rng.choice(stream).split()
            for _ in range(rng.randint(0, 2)):
                ws[rng.randrange(len(ws))] = rng.choice(words)
        else:
            ws = rng.choices(words, k=rng.randint(6, 14))
        stream.append(" ".join(ws).capitalize() + ".")
    tasks = [task(str(i), text) for i, text in enumerate(stream)]
    chain = FilterChain(FilterConfig(heuristics=None))
    chain.add([SEED])
    got = [chain.check_instructions(tasks[i : i + 64], round=1) for i in range(0, len(tasks), 64)]
    rouge, want = RougeFilter(), []
    rouge.add(SEED)
    for start in range(0, len(tasks), 64):
        batch, kept, rejects = tasks[start : start + 64], [], []
        scan = rouge.scan(batch)
        for k, t in enumerate(batch):
            r, rouge_max = rouge.verdict(scan, k, t, round=1)
            if r is None:
                scan.admit(k, t.id)
                kept.append(t.model_copy(update={"meta": {"rouge_max": rouge_max}}))
            else:
                rejects.append(r)
        want.append((kept, rejects))

    def plain(results):  # a reject's time is when it was made
        return [(kept, [r.model_dump(exclude={"time"}) for r in rejects]) for kept, rejects in results]

    assert plain(got) == plain(want)
    assert 20 < sum(len(k) for k, _ in got) < 280  # both kinds of verdict occur


def test_rouge_max_is_exact_above_the_floor():
    chain = FilterChain()
    chain.add([task("p", "Summarize the main idea of the article in one sentence.")])
    kept, _ = chain.check_instructions([task("q", "Summarize the story of the novel in three sentences.")])
    m = kept[0].meta["rouge_max"]
    assert m["neighbour_id"] == "p" and 0.3 <= m["score"] <= 0.7


def test_check_instances_drops_bad_instances_then_minhash():
    chain = FilterChain()
    chain.add([SEED])
    t = task(
        "t", "Translate the sentence into French.", ("I like tea.", "J'aime le thé."), ("N/A", "Bonjour.")
    )
    all_bad = task("u", "Translate the sentence into German.", ("Hi", ""), ("Hi", "hi"))
    kept, rejects = chain.check_instances([t, all_bad], round=1)
    assert [k.id for k in kept] == ["t"] and [i.input for i in kept[0].instances] == ["I like tea."]
    reasons = [(r.record["id"], r.reason, r.evidence.get("instance")) for r in rejects]
    assert reasons == [
        ("t", "heuristics_placeholder_input", 1),
        ("u", "heuristics_empty_output", 0),
        ("u", "heuristics_output_equals_input", 1),
        ("u", "heuristics_no_instances", None),
    ]
    assert chain.stats.counts["instances_dropped"] == 3 and chain.stats.counts["rejected"] == 1
    # t is now in the MinHash index: the same example again is a near-duplicate of t.
    _, rej = chain.check_instances(
        [task("t2", "Translate the sentence into French.", ("I like tea.", "J'aime le thé."))]
    )
    assert rej[0].reason == "minhash_near_duplicate" and rej[0].evidence["neighbour_id"] == "t"
    assert rej[0].evidence["jaccard"] == 1.0 and rej[0].evidence["threshold"] == 0.8


def test_check_runs_heuristics_then_minhash_then_rouge():
    chain = FilterChain()
    chain.add([SEED])
    same = task("x", SEED.instruction)  # same instruction and instance: MinHash sees it first
    similar = task(
        "y", SEED.instruction[:-1] + " today.", ("", "An entirely different answer about other things.")
    )
    short = task("z", "Haiku.")
    kept, rejects = chain.check([same, similar, short])
    assert kept == []
    assert [r.reason for r in rejects] == [
        "minhash_near_duplicate",
        "rouge_too_similar",
        "heuristics_too_short",
    ]


def test_stages_can_be_turned_off():
    chain = FilterChain(FilterConfig(heuristics=None, minhash=None))
    kept, rejects = chain.check([task("a", "Hi."), task("b", "Hi!")])
    assert [t.id for t in kept] == ["a"] and rejects[0].reason == "rouge_too_similar"


def test_truncated_generation_is_rejected_with_its_own_reason():
    chain = FilterChain()
    kept, rejects = chain.check_instructions(
        [task("a", "Describe the water cycle in", finish_reason="length")]
    )
    assert kept == [] and rejects[0].reason == "heuristics_truncated"
