"""ROUGE-L index vs a plain rouge-score replay: hypothesis strings, exact ties, empty texts, real files.

.venv/bin/pytest -q tests/filters/test_filters_rouge.py
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer, scoring

from selfinstruct.filters import rouge
from selfinstruct.filters.rouge import RougeIndex, fmeasure, rouge_l, tokenize
from selfinstruct.filters.rouge_tokens import LOWERS_TO_ASCII, Vocab

ROOT = Path(__file__).resolve().parents[2]

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def reference_kept(texts: list[str], threshold: float, seeds: int = 0) -> list[int]:
    """Self-Instruct's loop, straight: keep a text if its rougeL F against every kept one is <= threshold
    (the first `seeds` texts are kept unchecked)."""
    kept: list[int] = list(range(min(seeds, len(texts))))
    for i, text in enumerate(texts[len(kept) :], start=len(kept)):
        if all(SCORER.score(text, texts[j])["rougeL"].fmeasure <= threshold for j in kept):
            kept.append(i)
    return kept


def _rows(texts, threshold, step, floor, whole):
    """(kept, each item's (neighbour key, score) or None) deciding `texts` in scans of `step`, item by item
    (`best`, `admit`) or whole (`decide`, `decided`)."""
    index, kept, rows = RougeIndex(threshold, floor=floor), [], []
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        scan = index.scan(chunk)
        if whole:
            mask = scan.decide([str(start + i) for i in range(len(chunk))], threshold)
            kept += [start + i for i in np.flatnonzero(mask).tolist()]
            found = [scan.decided(i) for i in range(len(chunk))]
        else:
            found = []
            for i in range(len(chunk)):
                found.append(scan.best(i))
                if found[-1] is None or found[-1][0].score <= threshold:
                    scan.admit(i, str(start + i))
                    kept.append(start + i)
        rows += [None if f is None else (f[1], f[0].score) for f in found]
    return kept, rows


def ours_kept(texts: list[str], threshold: float, *, batch: int | None = None, floor=None) -> list[int]:
    """Our index deciding `texts` item by item, in scans of `batch` (all at once if None)."""
    return _rows(texts, threshold, batch or max(1, len(texts)), floor, whole=False)[0]


# Few distinct words, so texts collide often; punctuation, unicode (İ lowercases to i + dot, K is Kelvin),
# digits, and separators that rouge-score splits on.
WORDS = ["a", "b", "the", "cat", "Cat", "CAT!", "dog", "x1", "İ", "K", "é", "日本", "--", "...", "1", "a-b"]
texts = st.lists(st.sampled_from(WORDS), min_size=0, max_size=14).map(" ".join)
free_texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(texts, free_texts), max_size=25), st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.9, 1.0]))
def test_decisions_match_rouge_score(batch, threshold):
    assert ours_kept(batch, threshold) == reference_kept(batch, threshold)


# Long texts (past one 64-bit word of the bit-parallel LCS) over a small vocabulary: many near-ties.
long_texts = st.lists(
    st.sampled_from(["a", "b", "c", "d", "e", "f", "the", "of"]), min_size=40, max_size=140
).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(long_texts, max_size=8), st.sampled_from([0.5, 0.7, 0.9]))
def test_long_texts_match_rouge_score(batch, threshold):
    assert ours_kept(batch, threshold) == _fast_reference_kept(batch, threshold)


@settings(max_examples=100, deadline=None)
@given(st.lists(texts, min_size=1, max_size=20), st.sampled_from([0.1, 0.3, 0.5]))
def test_report_floor_keeps_decisions_and_gives_exact_best_scores(batch, floor):
    assert ours_kept(batch, 0.7, floor=floor) == reference_kept(batch, 0.7)
    index = RougeIndex(0.7, floor=floor)
    for i, text in enumerate(batch):
        scan = index.scan([text])
        best = scan.best(0)
        pool = [t for t, k in zip(index.texts, index.keys, strict=True) if k is not None]
        scores = [SCORER.score(text, t)["rougeL"].fmeasure for t in pool]
        top = max(scores, default=0.0)
        if top >= floor:
            assert best is not None and best[0].score == top
        else:
            assert best is None
        if top <= 0.7:
            scan.admit(0, str(i))


@settings(max_examples=100, deadline=None)
@given(st.lists(texts, min_size=2, max_size=25), st.integers(1, 5))
def test_batches_and_add_give_the_same_decisions(batch, step):
    assert ours_kept(batch, 0.7, batch=step) == ours_kept(batch, 0.7) == reference_kept(batch, 0.7)


@settings(max_examples=200, deadline=None)
@given(st.one_of(texts, free_texts))
def test_tokenizer_is_rouge_scores(text):
    assert tokenize(text) == SCORER._tokenizer.tokenize(text)


@settings(max_examples=200, deadline=None)
@given(texts, texts)
def test_scores_equal_rouge_score_bit_for_bit(a, b):
    assert rouge_l(a, b) == SCORER.score(a, b)["rougeL"].fmeasure


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.one_of(texts, free_texts), min_size=1, max_size=30),
    st.integers(1, 6),
    st.integers(0, 8),
    st.sampled_from([0.3, 0.7]),
    st.sampled_from([1, 2, 3, 5]),
    st.sampled_from([0, 1, 3]),
    st.sampled_from([2, 3, 64]),
)
def test_tiny_chunks_and_cached_pool_matrix_keep_decisions(
    monkeypatch, batch, step, seeds, threshold, k, limit, chunk
):
    # The real sizes (blocks of 64 to 512 rows, newer entries merged into the length-sorted postings past
    # 4096) are only reached by thousands of texts; shrunk, every scan here crosses block borders, cuts blocks
    # after 0 to 3 admits, walks both the sorted and the recent postings and merges them. Any number k of
    # required shared prefix features is exact.
    monkeypatch.setattr(rouge, "_CHUNK", chunk)
    monkeypatch.setattr(rouge, "_FIRST", chunk)
    monkeypatch.setattr(rouge, "_RECENT", 1)
    monkeypatch.setattr(rouge, "_K", k)
    monkeypatch.setattr(rouge, "_LIMIT", limit)
    index, kept = RougeIndex(threshold), []
    for i in range(min(seeds, len(batch))):  # pending adds, encoded by the first scan
        index.add(str(i), batch[i])
        kept.append(i)
    for start in range(len(kept), len(batch), step):
        chunk = batch[start : start + step]
        scan = index.scan(chunk)
        for i in range(len(chunk)):
            best = scan.best(i)
            if best is None or best[0].score <= threshold:
                scan.admit(i, str(start + i))
                kept.append(start + i)
    assert kept == reference_kept(batch, threshold, seeds)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(texts, free_texts, st.sampled_from(["", "a", "b", "ab", "\x00", "x\x00y", "x\ud800y"])),
        max_size=12,
    )
)
def test_compiled_tokens_are_rouge_scores(batch):
    """The index tokenizes a batch in one compiled pass over its joined bytes (texts side by side, single
    letters with nothing between them); each text's words are rouge-score's, and equal words share a number."""
    vocab = Vocab()
    for chunk in (batch, batch[::-1]):  # the second pass meets only known words
        tok, _, lens = vocab.encode(chunk, np.zeros(1, np.int32), np.zeros(1, np.int32), 0)
        assert sum(lens) <= len(tok)
        ends = np.cumsum(lens)
        for text, start, end in zip(chunk, ends - lens, ends, strict=True):
            assert [vocab.word(t) for t in tok[start:end]] == SCORER._tokenizer.tokenize(text)
    words = [vocab.word(t) for t in range(vocab.ntok)]
    assert len(set(words)) == len(words)


def test_only_the_named_characters_lower_to_ascii_words():
    """The compiled tokenizer lowers A-Z itself and runs `str.lower` only on texts holding LOWERS_TO_ASCII;
    every other character outside ASCII must lower to characters outside [a-z0-9]."""
    found = [
        c
        for c in map(chr, range(0x80, sys.maxunicode + 1))
        if not 0xD800 <= ord(c) < 0xE000 and re.search("[a-z0-9]", c.lower())
    ]
    assert "".join(found) == LOWERS_TO_ASCII


def test_compiled_steps_stay_in_bounds(tmp_path):
    """numba does not check array bounds: a write past an array's end corrupts memory without an error (a
    batch of one-letter texts once overran the token buffer). A fresh interpreter compiles every step with
    bounds checks and replays mixed batches (many exact repeats among them) against rouge-score, item by item
    and whole, with postings cached, merged and chained from the first entries and blocks of two items."""
    code = (
        "import random, sys\n"
        "sys.path.insert(0, 'tests/filters')\n"
        "from selfinstruct.filters import rouge\n"
        "rouge._RECENT, rouge._FIRST = 1, 2\n"
        "from test_filters_rouge import WORDS, _rows, ours_kept, reference_kept\n"
        "rng = random.Random(7)\n"
        "for n in range(80):\n"
        "    if n % 2:  # one-letter texts: more tokens than bytes / 2\n"
        "        batch = rng.choices(['a', 'b', '1', 'x', ''], k=rng.randint(1, 40))\n"
        "    else:\n"
        "        batch = [' '.join(rng.choices(WORDS + ['x' * rng.randint(1, 9)], k=rng.randint(0, 90)))"
        " for _ in range(rng.randint(1, 12))]\n"
        "    step = rng.randint(1, 5)\n"
        "    for t in (0.0, 0.5, 0.7):\n"
        "        want = reference_kept(batch, t)\n"
        "        assert ours_kept(batch, t, batch=step) == want, (batch, t)\n"
        "        assert _rows(batch, t, step, None, whole=True)[0] == want, (batch, t)\n"
        "batch = [' '.join(WORDS * 4)] * 400  # copies hold more tokens than the batch's own bytes / 2\n"
        "assert ours_kept(batch, 0.7) == _rows(batch, 0.7, 400, None, True)[0] == [0]\n"
        "print('ok')\n"
    )
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


# Texts that repeat, exactly or with the same tokens ("the cat sat" and "The cat, sat!" score 1.0).
REPEATS = [
    "the cat sat",
    "The cat, sat!",
    "the cat sat down",
    "a dog",
    "A dog.",
    "the dog sat",
    "sat cat",
    "",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(REPEATS), min_size=1, max_size=30),
    st.lists(st.booleans(), min_size=30, max_size=30),
    st.integers(1, 8),
    st.sampled_from([0.5, 0.7, 1.0]),
)
# a kept repeat's first slot scored 1.0 against an earlier text: that earlier one is the best
@example(["the cat sat", "The cat, sat!", "The cat, sat!"], [True] * 30, 1, 1.0)
# a rejected text (F 0.6 with the first) and its repeat, which scores more (0.727) with a text admitted between
@example(["a b c", "a b c x y z w", "x y z w", "a b c x y z w"], [True] * 30, 1, 0.5)
def test_exact_repeats_find_rouge_scores_best_neighbour(stream, asked, step, threshold):
    """An exact repeat starts from what its text's first slot found (rouge_prefix.probe): admitted, rejected,
    decided in an earlier scan or block, or never asked about (a caller skips items another filter rejects).
    Each asked item's evidence is rouge-score's best admitted neighbour, ties to the earliest."""
    index, admitted = RougeIndex(threshold), []
    for start in range(0, len(stream), step):
        scan = index.scan(stream[start : start + step])
        for i, text in enumerate(stream[start : start + step], start):
            if not asked[i]:
                continue
            scores = [(SCORER.score(text, stream[j])["rougeL"].fmeasure, -j) for j in admitted]
            top, j = max(scores, default=(-1.0, 0))
            best = scan.best(i - start)
            if top >= threshold:
                assert best is not None and (best[1], best[0].score) == (str(-j), top), (i, best, top, -j)
            else:
                assert best is None, (i, best)
            if top <= threshold:
                scan.admit(i - start, str(i))
                admitted.append(i)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.one_of(st.sampled_from(REPEATS), texts), min_size=1, max_size=40),
    st.integers(1, 12),
    st.sampled_from([0.0, 0.5, 0.7, 1.0]),
    st.sampled_from([None, 0.3]),
    st.sampled_from([1, 3]),
    st.sampled_from([0, 1, 3]),
    st.sampled_from([2, 5, 1024]),
)
def test_whole_scan_decisions_are_item_by_item_ones(
    monkeypatch, stream, step, threshold, floor, k, limit, chunk
):
    """`RougeScan.decide` (the chain, when ROUGE-L alone decides) keeps, admits and reports exactly what
    asking item by item does, across block cuts (tiny blocks and admit limits) and exact repeats."""
    monkeypatch.setattr(rouge, "_CHUNK", chunk)
    monkeypatch.setattr(rouge, "_FIRST", min(chunk, 3))
    monkeypatch.setattr(rouge, "_K", k)
    monkeypatch.setattr(rouge, "_LIMIT", limit)
    whole = _rows(stream, threshold, step, floor, whole=True)
    assert whole == _rows(stream, threshold, step, floor, whole=False)
    assert whole[0] == reference_kept(stream, threshold)


def test_a_kept_reference_to_a_probes_arguments_does_not_break_the_next_scan(monkeypatch):
    """Something may hold a compiled step's arguments after the call: in CI, after numba's first compile of
    `probe`, garbage waiting for the cyclic collector held its view of the alive flags (a traceback, a
    debugger or a profiler can too). The index's arrays must still grow: a bytearray with a live numpy view
    of it cannot (BufferError)."""
    from selfinstruct.filters import rouge_prefix

    held, real = [], rouge_prefix.probe
    monkeypatch.setattr(rouge_prefix, "probe", lambda *args: (held.append(args), real(*args))[1])
    index = RougeIndex(0.7)
    index.add("seed", "Write a haiku about the first snow of winter.")
    for n in range(3):
        scan = index.scan([f"List {n} ways to save water at home.", "Write a haiku about the first snow."])
        assert scan.decide([f"a{n}", f"b{n}"], 0.7).tolist() == [n == 0, False]
    assert held


def test_a_whole_scan_is_decided_once():
    index = RougeIndex(0.7)
    scan = index.scan(["a b", "c d"])
    scan.best(0)
    with pytest.raises(RuntimeError):
        scan.decide(["0", "1"], 0.7)
    scan = index.scan(["e f"])
    assert scan.decide(["2"], 0.7).tolist() == [True]
    with pytest.raises(RuntimeError):
        scan.decide(["2"], 0.7)


def test_texts_holding_the_batch_separator_tokenize_alone():
    # Texts are cut by their offsets and byte counts, never by a separator character: NUL is just a non-word byte.
    batch = ["copy this text\x00now", "copy this text now", "\x00", "now copy this text"]  # 1, 3: F 1, 0.75
    assert ours_kept(batch, 0.7) == reference_kept(batch, 0.7) == [0, 2]
    index = RougeIndex(0.7)
    index.add("a", "alpha\x00beta gamma")
    assert index.top("alpha beta gamma").score == 1.0


def _pair(lcs: int, a: int, b: int) -> tuple[str, str]:
    shared = [f"s{i}" for i in range(lcs)]
    return " ".join(shared + [f"x{i}" for i in range(a - lcs)]), " ".join(
        shared + [f"y{i}" for i in range(b - lcs)]
    )


def test_ties_fall_as_rouge_scores_floats_fall():
    # All three pairs have F = 0.7 exactly in rationals; rouge-score's float expression lands above, on, and
    # below 0.7, and with the rule `> 0.7` only the first is rejected.
    for (lcs, a, b), rejected in [((7, 7, 13), True), ((7, 10, 10), False), ((21, 23, 37), False)]:
        first, second = _pair(lcs, a, b)
        ref = SCORER.score(second, first)["rougeL"].fmeasure
        assert fmeasure(lcs, b, a) == ref == rouge_l(second, first)
        assert (ref > 0.7) is rejected
        assert (
            ours_kept([first, second], 0.7)
            == reference_kept([first, second], 0.7)
            == ([0] if rejected else [0, 1])
        )


def test_texts_that_tokenize_to_nothing_score_zero():
    empty = ["!!!", "日本語", "   ", "—"]
    assert all(tokenize(t) == [] for t in empty)
    assert ours_kept(empty + empty, 0.0) == list(range(8))  # F = 0 is not > 0
    assert ours_kept(["a", "a"], 0.0) == [0]


def test_evidence_names_the_best_admitted_neighbour():
    index = RougeIndex(0.7)
    index.add("p1", "Write a short poem about the sea and the sky.")
    index.add("p2", "Write a short poem about the sea.")
    scan = index.scan(["Write a short poem about the sea!", "Write a short poem about the sea!"])
    hit, key, text = scan.best(0)
    assert (key, text, hit.score) == ("p2", "Write a short poem about the sea.", 1.0)
    assert scan.best(1)[1] == "p2"  # item 0 not admitted: it is no one's neighbour
    scan.admit(0, "b0")
    assert scan.best(1)[1] == "p2"  # equal scores: the earliest admitted wins


def test_report_floor_finds_exact_lower_scores():
    index = RougeIndex(0.7, floor=0.3)
    index.add("p", "classify the sentiment of this tweet")
    hit = index.top("classify the topic of this news article please")
    assert (
        hit is not None
        and hit.score
        == SCORER.score(
            "classify the topic of this news article please", "classify the sentiment of this tweet"
        )["rougeL"].fmeasure
    )
    assert RougeIndex(0.7).top("classify the topic of this news article please") is None


def _fast_reference_kept(texts: list[str], threshold: float) -> list[int]:
    """The same replay, skipping a pair only when an exact upper bound computed with rouge-score's own
    float F (from the shared-token count, which bounds the LCS) is already <= threshold."""
    toks = [SCORER._tokenizer.tokenize(t) for t in texts]
    bags = [Counter(t) for t in toks]
    kept: list[int] = []
    for i, t in enumerate(toks):
        ok = True
        for j in kept:
            u = toks[j]
            if not t or not u:
                continue
            shared = sum((bags[i] & bags[j]).values())
            if scoring.fmeasure(shared / len(u), shared / len(t)) <= threshold:
                continue
            if rouge_scorer._score_lcs(t, u).fmeasure > threshold:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


def test_external_files_replay(external):
    """Real instructions (Alpaca, role-play, GSM8K), shuffled, plus lightly edited copies of some of them."""
    names = [
        "stanford_alpaca_pr152_alpaca_5000.json",
        "gpteacher_roleplay_deduped.json",
        "gsm8k_train_alpaca_format.json",
    ]
    take = [1400, 1000, 300]
    rng = random.Random(7)
    texts = []
    for name, n in zip(names, take, strict=True):
        records = json.loads((external / name).read_text(encoding="utf-8"))
        texts += [r["instruction"] for r in rng.sample(records, n)]
    for t in rng.sample(texts, 300):  # near-copies: one word replaced, so some are rejected and some not
        words = t.split()
        words[rng.randrange(len(words))] = "banana"
        texts.append(" ".join(words))
    rng.shuffle(texts)
    ours = ours_kept(texts, 0.7)
    assert ours == _fast_reference_kept(texts, 0.7)
    assert 50 < len(texts) - len(ours) < 400  # the check exercised both outcomes
    assert ours_kept(texts, 0.7, batch=97) == ours


def test_near_duplicate_heavy_stream_matches_rouge_score(external, monkeypatch):
    """A stream like a small model's: a long shared prefix with short tails, small edits of earlier texts,
    exact repeats, a few fresh instructions; nearly everything is rejected (issue 12)."""
    records = json.loads((external / "stanford_alpaca_pr152_alpaca_5000.json").read_text(encoding="utf-8"))
    real = [r["instruction"] for r in records]
    rng = random.Random(12)
    prefix = " ".join(t for t in rng.sample(real, 4)).split()
    vocab = sorted({w for t in real[:500] for w in t.split()})
    stream: list[str] = []
    while len(stream) < 400:
        u = rng.random()
        if u < 0.45 or not stream:
            stream.append(" ".join(prefix + rng.choice(real).split()[: rng.randint(1, 6)]))
        elif u < 0.8:
            words = rng.choice(stream).split()
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(words))
                if rng.random() < 0.5:
                    words[at] = rng.choice(vocab)
                else:
                    words.insert(at, rng.choice(vocab))
            stream.append(" ".join(words))
        elif u < 0.95:
            stream.append(rng.choice(stream))
        else:
            stream.append(rng.choice(real))
    ref = reference_kept(stream, 0.7)
    assert 10 < len(ref) < 100  # mostly rejects, some kept
    assert ours_kept(stream, 0.7) == ref
    assert ours_kept(stream, 0.7, batch=37) == ref
    with monkeypatch.context() as m:  # every admit cuts its block: the next item is probed afresh
        m.setattr(rouge, "_LIMIT", 0)
        assert ours_kept(stream, 0.7) == ref
    # the whole batch decided by the index (the chain when ROUGE-L alone decides), in scans of 37
    whole, rows = _rows(stream, 0.7, 37, None, whole=True)
    assert whole == ref
    # the evidence is rouge-score's best admitted neighbour, exactly, both ways
    index, kept = RougeIndex(0.7), set(ref)
    scan = index.scan(stream)
    for i, text in enumerate(stream):
        best = scan.best(i)
        admitted = [j for j in ref if j < i]
        top = max((SCORER.score(text, stream[j])["rougeL"].fmeasure for j in admitted), default=0.0)
        assert (best is None) == (top < 0.7) and (best is None or best[0].score == top)
        assert (rows[i] is None) == (top < 0.7) and (rows[i] is None or rows[i][1] == top)
        if i in kept:
            scan.admit(i, str(i))


def _pair_sharing(rng: random.Random, shared: list[str], a: int, b: int, tag: str) -> tuple[str, str]:
    """Texts of a and b tokens whose only common tokens are `shared` (in order in the first text, shuffled
    a little in the second, so the LCS can fall below the multiset overlap), the rest unique to each."""

    def spread(seq: list[str], n: int, side: str) -> str:
        out = list(seq)
        for k in range(n - len(seq)):
            out.insert(rng.randrange(len(out) + 1), f"{tag}{side}{k}")
        return " ".join(out)

    other = list(shared)
    if len(other) > 2 and rng.random() < 0.5:
        i = rng.randrange(len(other) - 1)
        other[i], other[i + 1] = other[i + 1], other[i]
    return spread(shared, a, "p"), spread(other, b, "q")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 12)), max_size=120),
    st.integers(0, 120),
    st.integers(0, 6),
)
def test_merged_postings_are_rebuilt_ones(entries, cut, more):
    """Newer prefix entries merged into the cached postings give exactly the arrays a rebuild gives (same
    runs, same order within a run, new features included)."""
    from selfinstruct.filters.rouge_prefix import merged, postings

    lens = np.arange(41, dtype=np.int64) % 7  # slot -> length: equal lengths, so ties
    pslot = np.array([s for s, _ in entries], np.int32)
    pfeat = np.array([f for _, f in entries], np.int32)
    cut = min(cut, len(entries))
    old_nf = int(pfeat[:cut].max(initial=-1)) + 1
    nf = max(old_nf, int(pfeat.max(initial=-1)) + 1) + more
    old = postings(pslot[:cut], pfeat[:cut], lens, old_nf)
    got = merged(*old, pslot, pfeat, lens, len(entries), nf)
    for want, have in zip(postings(pslot, pfeat, lens, nf), got, strict=True):
        assert want.dtype == have.dtype
        assert want.tolist() == have.tolist()


def test_prefix_filter_edges_match_rouge_score():
    """The prefix filter (rarest features indexed, partner lengths windowed, a probe's prefix shortened per
    partner length) at its edges: pairs whose LCS is exactly the need, one short of it or one past it, at
    the smallest and largest partner lengths the bound allows and one past them; repeated tokens (a word's
    k-th occurrence is its own feature); texts of 1 to 3 tokens; texts of 150 to 250 tokens. The shared
    words are made the commonest of the corpus by filler texts, so they sort last in the rarity order and
    the pairs meet only where the lemma says they must."""
    rng = random.Random(12)
    common = ["the", "of", "a", "to", "is", "and"]
    texts = [" ".join(rng.choices(common, k=rng.randint(40, 60))) for _ in range(30)]
    for threshold in (0.5, 0.7, 0.9):
        index = RougeIndex(threshold)
        for a in [1, 2, 3, 4, 5, 7, 10, 13, 20, 37, 150, 250]:
            lo, hi = index._windows(a)
            for b in {
                max(1, int(lo[a]) - 1),
                int(lo[a]),
                a,
                int(min(hi[a], 4 * a)),
                int(min(hi[a], 4 * a)) + 1,
            }:
                need = index._need(a, b)
                for lcs in {need - 1, need, need + 1}:
                    if 0 < lcs <= min(a, b):
                        shared = rng.choices(common[:2] if lcs > 3 else common, k=lcs)  # repeats
                        texts += _pair_sharing(rng, shared, a, b, f"t{len(texts)}x")
    rng.shuffle(texts)
    for threshold in (0.5, 0.7, 0.9):
        assert ours_kept(texts, threshold) == _fast_reference_kept(texts, threshold)
        assert ours_kept(texts, threshold, batch=7) == _fast_reference_kept(texts, threshold)
