"""ROUGE-L novelty index: rouge-score's exact keep/reject decisions, hundreds to thousands of times faster.

Decisions are those of `rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)`: a candidate is
too similar when its F-measure against some pool instruction is `> threshold`. To get the same answer on
every input we (1) tokenize with rouge-score's rules (lowercase, runs of [a-z0-9]), (2) compute the F of a
pair with the very float expression `_score_lcs` uses, so ties fall the same way (LCS 7 of lengths 7 and 13
is 0.7 in rationals but 0.7000000000000001 in rouge-score's floats, a reject; 7 of 10 and 10 is 0.7, a keep),
and (3) only ever skip a pair with a bound that is exact.

Speed comes from never scoring most pairs. With lengths a and b, F = 2*LCS/(a+b), so a pair can only reach a
level t if LCS >= need(a, b) = ceil(t*(a+b)/2). Three exact filters, cheapest first:
  - length: need(a, b) <= min(a, b) (for t = 0.7: shorter/longer >= 0.538);
  - prefix filtering (Chaudhuri et al. 2006; Bayardo et al., "Scaling up all pairs similarity search", 2007):
    LCS <= the multiset overlap of the two token bags, and two bags that overlap in tau elements share at
    least k of them among their (size - tau + k) rarest; so only the rarest tokens of each text are indexed
    and probed, and a pair must meet in at least K of them;
  - the multiset overlap itself, computed with numpy for every surviving candidate.
What is left (well under one pair per query on real data) gets an exact bit-parallel LCS from
`rapidfuzz.distance.LCSseq` on the token lists, then rouge-score's F.

The rarity order only affects speed, never results; it is recomputed from document frequencies whenever the
index has doubled. This module knows nothing of tasks or rejects: it maps keys and texts to scores.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
from rapidfuzz.distance import LCSseq

_WORD = re.compile(r"[a-z0-9]+")
# Features: a token's k-th occurrence in a text is its own feature, (token, k), so bags become sets.
# Required shared prefix features per pair (the k above). On 50K realistic instructions k = 1, 2, 3, 4
# probe 54M, 72M, 97M, 130M posting entries and leave 34M, 6.9M, 2.2M, 0.9M candidates: 3 is fastest,
# also for short texts alone (tried: k = 1 or 2 below 16 or 32 tokens was slower on Alpaca).
_K = 3


# Probes touching at most this many posting entries are filtered in plain Python, larger ones with numpy.
_SMALL = 64
# need() of a pair whose lengths alone rule it out.
_FAR = 1 << 40
# F is computed in floats; a pair is pruned only if its exact rational F is below the level by this margin.
_EPS = 1e-7


def tokenize(text: str) -> list[str]:
    """rouge-score's DefaultTokenizer without stemmer: lowercase, non-[a-z0-9] to spaces, split.

    `text.lower()` runs first, as in rouge-score, so "İ" (which lowercases to "i" plus a combining dot) yields
    "i" and the Kelvin sign yields "k"; keeping the maximal [a-z0-9] runs of the lowered text is the same as
    replacing everything else with spaces and splitting.
    """
    return _WORD.findall(text.lower())


def fmeasure(lcs: int, n_target: int, n_prediction: int) -> float:
    """`rouge_scorer._score_lcs`'s F, written as it writes it so every tie rounds the same way."""
    if not n_target or not n_prediction:
        return 0.0
    precision = lcs / n_prediction
    recall = lcs / n_target
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F of two texts (symmetric), for evidence and tests; the index never calls this per pair."""
    ta, tb = tokenize(a), tokenize(b)
    return fmeasure(int(LCSseq.similarity(ta, tb)), len(ta), len(tb))


@dataclass(frozen=True)
class Hit:
    """A scored neighbour: `other` is a pool slot, or `pool size at scan time + j` for batch item j."""

    other: int
    score: float


@dataclass
class _Doc:
    tokens: list[str]
    fids: list[int]  # one feature id per token occurrence (the k-th "the" is its own feature)
    prefix: list[int] | None = None  # its rarest features, under the index's current order


class RougeIndex:
    """Instructions in the pool, searchable for ROUGE-L neighbours scoring at least `level`.

    `level` is the decision threshold, or a lower report floor. `add` admits a text; `scan` scores a batch
    against the pool and against its own earlier items, and its `admit` admits the batch items kept.

    Every text scanned or added gets a permanent slot; a slot is *alive* once admitted. Batch items are
    indexed while scanned (later items must see them), stay invisible to other scans unless admitted, and
    are dropped from the postings at the next rebuild.
    """

    def __init__(self, threshold: float = 0.7, *, floor: float | None = None):
        self.threshold = threshold
        self.level = threshold if floor is None else min(threshold, floor)
        self.keys: list[str | None] = []  # per slot: key once admitted
        self.texts: list[str] = []  # per slot
        self._docs: list[_Doc] = []  # per slot
        self._alive = bytearray()  # per slot: 1 once admitted
        # numpy copies of lengths and features, filled lazily up to _ready slots (for large probes only):
        # features of slot s are flat[offsets[s]:offsets[s+1]]
        self._lens = np.zeros(1023, np.int64)
        self._offsets = np.zeros(1024, np.int64)
        self._flat = np.zeros(1 << 14, np.int32)
        self._ready = 0
        self._fid: dict[object, int] = {}  # token (k-th occurrence: (token, k)) -> dense feature id
        self._rank: list[int] = []  # feature id -> position in the rarity order (rare first)
        self._next_new_rank = -1  # features first seen after ordering count as rarer than all others
        self._ordered_for = 0  # number of slots the order was computed from
        self._postings: dict[int, array] = {}  # feature id -> slots having it in their prefix, ascending
        self._mark = np.zeros(1024, np.bool_)  # scratch: the probing text's features
        self._tau: dict[int, int | None] = {}
        self._rows: dict[int, tuple[np.ndarray, np.ndarray, int] | None] = {}
        self._admitted = 0
        self._open: RougeScan | None = None  # the latest scan; earlier ones can no longer admit

    def __len__(self) -> int:
        return self._admitted

    # ------------------------------------------------------------------------------------------------------
    # public

    def add(self, key: str, text: str) -> None:
        """Admit one text (a seed, a resumed task, or a candidate the caller accepted)."""
        self._close()
        doc = self._encode(text)
        self._maybe_reorder([doc])
        doc.prefix = self._prefix(doc.fids)
        self._alive_at(self._push(doc, text), key)

    def scan(self, texts: Sequence[str]) -> RougeScan:
        """Score each text against the pool and against every earlier text of the batch.

        Nothing is admitted: admit the items you keep with the returned scan's `admit`, in order, before the
        next `add` or `scan` (which close this scan).
        """
        self._close()
        docs = [self._encode(t) for t in texts]
        self._maybe_reorder(docs)
        base = len(self._docs)
        hits = []
        for doc, text in zip(docs, texts, strict=True):
            doc.prefix = self._prefix(doc.fids)
            hits.append(self._probe(doc, base))
            self._push(doc, text)
        self._open = RougeScan(self, hits, base)
        return self._open

    def top(self, text: str) -> Hit | None:
        """The best-scoring pool neighbour at or above `level`, if any (ties: the earliest slot)."""
        hits = self.scan([text]).hits[0]
        return hits[0] if hits else None

    # ------------------------------------------------------------------------------------------------------
    # encoding and storage

    def _encode(self, text: str) -> _Doc:
        tokens = tokenize(text)
        if len(set(tokens)) == len(tokens):
            keys: list = tokens
        else:
            seen: dict[str, int] = {}
            keys = []
            for w in tokens:
                k = seen[w] = seen.get(w, 0) + 1
                keys.append(w if k == 1 else (w, k))
        get = self._fid.get
        fids = [get(k) for k in keys]
        if None in fids:
            for j, f in enumerate(fids):
                if f is None:
                    fids[j] = self._fid[keys[j]] = len(self._rank)
                    self._rank.append(self._next_new_rank)
                    self._next_new_rank -= 1
        return _Doc(tokens, fids)

    def _push(self, doc: _Doc, text: str) -> int:
        """Store a text at the next slot and post its prefix; returns the slot."""
        s = len(self._docs)
        self._docs.append(doc)
        self.texts.append(text)
        self.keys.append(None)
        self._alive.append(0)
        postings = self._postings
        for f in doc.prefix:
            p = postings.get(f)
            if p is None:
                p = postings[f] = array("i")
            p.append(s)
        return s

    def _materialize(self) -> None:
        """Bring the numpy copies of lengths and features up to every slot (arrays grow by doubling)."""
        done, docs = self._ready, self._docs
        if done == len(docs):
            return
        new = docs[done:]
        lens = np.fromiter((len(d.fids) for d in new), np.int64, len(new))
        start, total = self._offsets[done], int(lens.sum())
        while len(docs) + 1 > len(self._offsets):
            self._lens = np.concatenate([self._lens, np.zeros(len(self._offsets), np.int64)])
            self._offsets = np.concatenate([self._offsets, np.zeros(len(self._offsets), np.int64)])
        while start + total > len(self._flat):
            self._flat = np.concatenate([self._flat, np.zeros(max(len(self._flat), 1024), np.int32)])
        self._lens[done : len(docs)] = lens
        self._offsets[done + 1 : len(docs) + 1] = start + np.cumsum(lens)
        self._flat[start : start + total] = np.fromiter(
            chain.from_iterable(d.fids for d in new), np.int32, total
        )
        self._ready = len(docs)

    def _alive_at(self, slot: int, key: str) -> None:
        self._alive[slot] = 1
        self.keys[slot] = key
        self._admitted += 1

    def _close(self) -> None:
        if self._open is not None:
            self._open.closed = True
            self._open = None

    # ------------------------------------------------------------------------------------------------------
    # bounds

    def _need(self, a: int, b: int) -> int:
        """Least LCS lengths a, b need to score >= level (exact rational F, minus a float margin)."""
        return max(1, math.ceil(self.level * (a + b) / 2 - _EPS))

    def _row(self, a: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        """For a text of length a, by partner length b: need (_FAR where b cannot reach the level) and the
        shared prefix features required, plus the row's last index (longer partners map to it). None when the
        feasible lengths are too many to tabulate (levels near 0); _probe then computes need directly."""
        if a not in self._rows:
            # need(a, b) <= a  <=>  b <= 2 * (a + eps) / level - a
            hi = math.floor(2 * (a + _EPS) / self.level - a) + 1 if self.level > 0 else math.inf
            if hi > 8192:
                self._rows[a] = None
            else:
                need = np.full(hi + 2, _FAR, np.int64)
                for b in range(1, hi + 1):
                    if self._need(a, b) <= min(a, b):
                        need[b] = self._need(a, b)
                self._rows[a] = (need, np.minimum(_K, need), hi + 1)
        return self._rows[a]

    def _tau_min(self, a: int) -> int | None:
        """Least overlap any feasible partner of a length-a text needs; None if none can reach the level."""
        if a not in self._tau:
            tau = None
            for b in range(1, a + 1):  # need grows with b: the first feasible b gives the least need
                nd = self._need(a, b)
                if nd <= b:
                    tau = nd
                    break
            self._tau[a] = tau
        return self._tau[a]

    def _prefix(self, fids: list[int]) -> list[int]:
        a = len(fids)
        tau = self._tau_min(a)
        if tau is None:
            return []
        return sorted(fids, key=self._rank.__getitem__)[: min(a, a - tau + _K)]

    def _maybe_reorder(self, extra: list[_Doc]) -> None:
        """Recompute the rarity order from document frequencies once the data doubled; rebuild postings
        from the admitted slots only."""
        total = len(self._docs) + len(extra)
        if self._ordered_for and total < 2 * max(self._ordered_for, 32):
            return
        every = chain.from_iterable(d.fids for d in chain(self._docs, extra))
        df = np.bincount(np.fromiter(every, np.int32), minlength=len(self._rank))
        order = np.lexsort((np.arange(len(df)), df))
        rank = np.empty(len(df), np.int64)
        rank[order] = np.arange(len(df))
        self._rank[:] = rank.tolist()
        self._next_new_rank = -1
        self._ordered_for = total
        self._postings = {}
        for s in np.flatnonzero(np.frombuffer(self._alive, np.uint8)).tolist():
            doc = self._docs[s]
            doc.prefix = self._prefix(doc.fids)
            for f in doc.prefix:
                self._postings.setdefault(f, array("i")).append(s)

    # ------------------------------------------------------------------------------------------------------
    # search

    def _probe(self, doc: _Doc, base: int) -> list[Hit]:
        """Admitted slots, and slots >= base (this batch), scoring >= level against `doc`; best first."""
        lists = [p for p in map(self._postings.get, doc.prefix) if p]
        if not lists:
            return []
        a = len(doc.tokens)
        if sum(map(len, lists)) <= _SMALL:
            return self._verify(doc, self._filter_small(doc, lists, base))
        self._materialize()
        cand, count = np.unique(np.frombuffer(b"".join(lists), np.int32), return_counts=True)
        b = self._lens[cand]
        row = self._row(a)
        if row is not None:
            at = np.minimum(b, row[2])
            need = row[0][at]
            ok = (need < _FAR) & (count >= row[1][at])
        else:
            need = np.maximum(1, np.ceil(self.level * (a + b) / 2 - _EPS)).astype(np.int64)
            ok = (need <= np.minimum(a, b)) & (count >= np.minimum(_K, need))
        ok &= (cand >= base) | (np.frombuffer(self._alive, np.uint8)[cand] == 1)
        cand, b, need = cand[ok], b[ok], need[ok]
        if not len(cand):
            return []
        # Multiset overlap of each candidate with doc (the number of shared features): an upper bound on LCS.
        seg = np.zeros(len(cand) + 1, np.int64)
        np.cumsum(b, out=seg[1:])
        vals = self._flat[np.arange(seg[-1]) + np.repeat(self._offsets[cand] - seg[:-1], b)]
        if len(self._mark) < len(self._rank):
            self._mark = np.zeros(2 * len(self._rank), np.bool_)
        self._mark[doc.fids] = True
        overlap = np.add.reduceat(self._mark[vals], seg[:-1], dtype=np.int64)
        self._mark[doc.fids] = False
        keep = overlap >= need
        return self._verify(doc, zip(cand[keep].tolist(), b[keep].tolist(), need[keep].tolist(), strict=True))

    def _filter_small(self, doc: _Doc, lists: list[array], base: int) -> list[tuple[int, int, int]]:
        """The same filters as _probe's numpy ones, in plain Python: cheaper for a few postings."""
        a, docs, alive, out = len(doc.tokens), self._docs, self._alive, []
        row = self._row(a)
        mine = None
        least = min(_K, self._tau_min(a))  # the least shared prefix count any partner may require
        for s, count in Counter(chain.from_iterable(lists)).items():
            if count < least:
                continue
            b = len(docs[s].tokens)
            if row is not None:
                need = int(row[0][min(b, row[2])])
                if need >= _FAR:
                    continue
            else:
                need = self._need(a, b)
                if need > min(a, b):
                    continue
            if count < min(_K, need) or (s < base and not alive[s]):
                continue
            if mine is None:
                mine = set(doc.fids)
            if len(mine.intersection(docs[s].fids)) >= need:
                out.append((s, b, need))
        return out

    def _verify(self, doc: _Doc, found) -> list[Hit]:
        """Exact LCS and rouge-score's F for the candidates that passed every bound."""
        a, hits = len(doc.tokens), []
        for s, nb, nd in found:
            lcs = int(LCSseq.similarity(doc.tokens, self._docs[s].tokens, score_cutoff=nd))
            if lcs >= nd:
                f = fmeasure(
                    lcs, a, nb
                )  # target = the candidate, prediction = the pool text (Alpaca's order)
                if f >= self.level:
                    hits.append(Hit(s, f))
        hits.sort(key=lambda h: (-h.score, h.other))
        return hits


class RougeScan:
    """Scores of one batch, computed once; decisions follow which batch items the caller admits, in order.

    `hits[i]` lists item i's neighbours scoring >= level, best first: admitted slots (< base) and earlier
    items of this batch (slot base + j), whether admitted or not; `best` picks among the admitted ones.
    """

    def __init__(self, index: RougeIndex, hits: list[list[Hit]], base: int):
        self.index, self.hits, self.base = index, hits, base
        self.closed = False

    def best(self, i: int) -> tuple[Hit, str, str] | None:
        """Item i's best neighbour among the pool and the batch items admitted so far: (hit, key, text)."""
        alive, keys, texts = self.index._alive, self.index.keys, self.index.texts
        for h in self.hits[i]:
            if alive[h.other]:
                return h, keys[h.other], texts[h.other]
        return None

    def admit(self, i: int, key: str) -> None:
        """Admit batch item i into the index (only the chain calls this, after accepting the task)."""
        slot = self.base + i
        if self.closed or self.index._alive[slot]:
            raise RuntimeError("this scan was closed by a later add or scan, or item i was already admitted")
        self.index._alive_at(slot, key)
