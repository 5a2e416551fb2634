"""ROUGE-L novelty index: rouge-score's exact keep/reject decisions, at a cost that follows what is kept.

Decisions are those of `rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)`: a candidate is
too similar when its F-measure against some pool instruction is `> threshold`. To get the same answer on
every input we (1) tokenize with rouge-score's rules (lowercase, runs of [a-z0-9]), (2) compute the F of a
pair with the very float expression `_score_lcs` uses, so ties fall the same way (LCS 7 of lengths 7 and 13
is 0.7 in rationals but 0.7000000000000001 in rouge-score's floats, a reject; 7 of 10 and 10 is 0.7, a keep),
and (3) only ever skip a pair with a bound that is exact.

A candidate is compared with the admitted texts only (the pool, and the items of its own batch admitted
before it), never with a rejected one: on a stream where most candidates are near-copies of each other, most
are rejected, and comparing them with each other was quadratic in the batch (issue 12: 3.3M tokenizations
for 7.7K candidates, 34 kept). So a scan decides nothing up front. When the caller asks about item i, the
block of items from i on is probed against everything admitted at that moment (below), and each item keeps
its best neighbour. An item admitted inside the block is then compared with the block's later items
directly (`reverse`: length bound, overlap, LCS), which replaces their best where it scores more; after
`_LIMIT` such admits the block is cut and the next item starts a new one, as long as the cut one lasted (a
block that runs out is followed by one twice as long). Near-copy streams, with few admits, get long blocks;
streams that keep most items get short ones.

A probe never scores most pairs. With lengths a and b, F = 2*LCS/(a+b), so a pair can only reach a level t
if LCS >= need(a, b) = ceil(t*(a+b)/2). Three exact filters, cheapest first:
  - length: need(a, b) <= min(a, b) (for t = 0.7: shorter/longer >= 0.538);
  - prefix filtering (Chaudhuri et al. 2006; Bayardo et al., "Scaling up all pairs similarity search", 2007;
    Xiao et al., PPJoin, 2008): LCS <= the multiset overlap o of the two token bags, and in one fixed total
    order of features, a text's first (size - o + k) features hold at least k of the o shared ones (at most
    size - o of its features are unshared), and the shared ones held by each side are the first of the
    shared in that order; so two prefixes of (size - o + k) share at least min(k, o). Each admitted text
    indexes its first (b - tau_min(b) + K) features, tau_min(b) being the least need any partner of a
    length-b text has; a probing text of length a looks at its j-th feature only for partners with
    need(a, b) <= a - j + K - 1 (its prefix for that partner, a bound on b since need grows with b), and
    a pair must meet in at least min(K, need) prefix features;
  - the multiset overlap itself, for every surviving candidate (of a probing text over 64 tokens: for a shorter
    one the exact LCS below costs about as much, and replaces it).
What is left gets an exact bit-parallel LCS on the token numbers, best upper bound first, then rouge-score's F.

Python costs per block, not per token or pair: a scan tokenizes its whole batch in one compiled pass
(`rouge_tokens`) into int arrays, once per text; a probe is one compiled call (`rouge_prefix`) that picks each
text's prefix, walks the posting lists (each feature's slots by ascending length, so the length window is two
binary searches), counts shared prefix features per admitted slot, checks the bounds and the overlap of each
touched pair and scores what is left.

An exact repeat of an earlier text (a small model's commonest output) copies that text's tokens and starts
from its decided best neighbour: an admitted original is itself the best at 1.0 (unless it had an equal
earlier one), and a rejected one leaves only the texts admitted after it to compare.

The rarity order only affects speed, never results; it is recomputed from document frequencies whenever the
number of texts has doubled. This module knows nothing of tasks or rejects: it maps keys and texts to scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from rapidfuzz.distance import LCSseq

if TYPE_CHECKING:
    from selfinstruct.filters.rouge_tokens import Vocab

_WORD = re.compile(r"[a-z0-9]+")
# Required shared prefix features per pair (the k above). With the compiled candidate loop, 100K realistic
# instructions take 36.6, 17.7, 14.8, 14.6 and 19.5 cpu s for K = 1, 2, 3, 4, 6 (short prefixes leave many
# pairs to check; long ones walk long posting lists of common words).
_K = 3
# Most batch items per probe; it bounds the work a block costs when admits cut it short. A scan's first block
# is _FIRST items: each admit inside a block is compared with all its later items, and a stream's first items
# are the likeliest to be kept. On bench/filters.py's near-copy streams (part d), _CHUNK = 512 and _FIRST = 64
# took 26 and 18 ms (8-word templates; one 10-word template) where 1,024 and 1,024 took 30 and 20 ms, and
# 8,192 and 8,192 took 40 and 27 ms.
_CHUNK = 512
_FIRST = 64
# Admits within a block compared with its later items directly, at most; the next one cuts the block. On a
# stream that keeps every item, each admit costs about a compiled call and the block's later items, and each
# block a probe: 2,000 real instructions (all kept) take 22.8, 18.7, 18.2 and 19.3 ms for 8, 16, 32 and 64.
_LIMIT = 32
# Prefix entries newer than the cached, length-sorted postings are chained per feature as they come; past
# _RECENT of them, or 1/_SHARE of the cached ones, they are merged into the cached ones. Chains are walked entry
# by entry in memory order of arrival: 500K realistic instructions took 141, 120 and 167 cpu s for a share of 8,
# 32 and 128 (two runs side by side per pair) when the cached ones were rebuilt; with the merge, 200K take 9.0
# and 9.6 s for 32 and 128.
_RECENT = 4096
_SHARE = 32
# The longest partner length a window can name (level 0: any length).
_UNBOUNDED = 1 << 40
# Postings with no entries, for the cached side before it exists.
_NO_POSTINGS = (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64))
# _windows per (level, _K), shared by the indexes of a process (never written once made); about 0.2 ms each.
_WINDOWS: dict[tuple[float, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
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


class Hit(NamedTuple):
    """A scored neighbour: `other` is a pool slot, or `pool size at scan time + j` for batch item j."""

    other: int
    score: float


def grown(arr: np.ndarray, size: int, fill: int = 0) -> np.ndarray:
    """`arr`, or a copy at least twice as long when it cannot hold `size` elements (amortized appends); the new
    elements are `fill`. Zeros come from calloc, so pages never written are never mapped."""
    if size <= len(arr):
        return arr
    n = max(size, 2 * len(arr))
    out = np.zeros(n, arr.dtype) if fill == 0 else np.full(n, fill, arr.dtype)
    out[: len(arr)] = arr
    return out


class RougeIndex:
    """Instructions in the pool, searchable for ROUGE-L neighbours scoring at least `level`.

    `level` is the decision threshold, or a lower report floor. `add` admits a text; `scan` takes a batch,
    and its `best(i)` / `admit(i, key)`, called in item order, decide the batch one item at a time, or its
    `decide` the whole batch, for a caller that keeps exactly what scores at most the threshold.

    Every text scanned or added gets a permanent slot; a slot is *alive* once admitted. Only alive slots
    are in the prefix index, so a rejected text is never anyone's candidate.
    """

    def __init__(self, threshold: float = 0.7, *, floor: float | None = None):
        self.level = threshold if floor is None else min(threshold, floor)
        self.keys: list[str | None] = []  # per slot: key once admitted
        self.texts: list[str] = []  # per slot
        # per slot: 1 once admitted; a numpy array, not a bytearray, which cannot grow while anything holds a
        # view of it (in CI, garbage waiting for the cyclic collector held a probe's view)
        self._alive = np.zeros(1024, np.uint8)
        self._log: list[int] = []  # admitted slots, in the order they were admitted
        self._last_alive = -1  # the latest admitted slot
        self._lens = np.zeros(1024, np.int64)  # per slot: token count
        # tokens of slot s (token numbers, in text order) are _tok[_foff[s]:_foff[s + 1]], its features
        # _flat[same]; a token's k-th occurrence in a text is its own feature, so a text's features are a
        # set and their overlap is the multiset overlap of tokens
        self._foff = np.zeros(1025, np.int64)
        self._tok = np.zeros(1 << 14, np.int32)
        self._flat = np.zeros(1 << 14, np.int32)
        # numba loads with the index, not at import (see _probe)
        from selfinstruct.filters.rouge_tokens import Vocab

        self._vocab: Vocab = Vocab()
        self._seen: dict[str, int] = {}  # text -> its first slot
        self._same = np.full(1024, -1, np.int64)  # per slot: the first slot with its text, if earlier, or -1
        # per slot, once its scan has decided it: its best neighbour (-1 if none reaches the level; -2 while not
        # known) and score, so an exact repeat starts from them (rouge_prefix.probe)
        self._dbest = np.full(1024, -2, np.int64)
        self._dscore = np.zeros(1024)
        self._rank = np.zeros(1024, np.int64)  # feature id -> position in the rarity order (rare first)
        self._next_new_rank = -1  # features first seen after ordering count as rarer than all others
        self._ordered_for = 0  # number of slots the order was computed from
        # prefix entries (slot, feature) of the admitted slots _log[:_indexed]
        self._pslot = np.zeros(1 << 14, np.int32)
        self._pfeat = np.zeros(1 << 14, np.int32)
        self._np = 0
        self._indexed = 0
        self._synced = 0  # slots whose tokens and features are in the arrays above
        # The prefix entries [0, _big_np) as feature -> slots postings, built once and reused by later probes
        # (rebuilding them per probe would cost the whole pool each time); newer entries are chained per
        # feature as they come (rouge_prefix.link): entries [_big_np, _linked).
        self._big: tuple[np.ndarray, ...] | None = None  # rouge_prefix.postings
        self._big_np = 0
        self._jhead = np.full(1024, -1, np.int64)  # per feature: its latest recent entry, -1 if none
        self._jnext = np.zeros(1 << 14, np.int64)  # per entry: the feature's entry before it, -1 if none
        self._linked = 0
        self._bmin = self._bmax = self._plen = np.zeros(0, np.int64)  # per length: _windows
        # scratch of the compiled steps, all False / 0 / -1 between calls
        self._mark = np.zeros(1024, np.bool_)  # per feature
        self._count = np.zeros(1024, np.int32)  # per slot
        self._pmrow = np.full(1024, -1, np.int32)  # per token
        self._bits = np.zeros(1024, np.uint64)  # per token
        self._open: RougeScan | None = None  # the latest scan; earlier ones can no longer decide

    # ------------------------------------------------------------------------------------------------------
    # public

    def add(self, key: str, text: str) -> None:
        """Admit one text (a seed, a resumed task, or a candidate the caller accepted)."""
        self._close()
        # Only the Python side now: adds come one at a time (seeds, resumed tasks), and the compiled side is
        # cheap per batch but not per text, so the next scan encodes and indexes all pending adds at once.
        self.texts.append(text)
        self.keys.append(None)
        self._alive = grown(self._alive, len(self.texts))
        self._alive_at(len(self.texts) - 1, key)

    def scan(self, texts: Sequence[str]) -> RougeScan:
        """A batch to decide: for each item in order, `best(i)` (its best admitted neighbour) and, if kept,
        `admit(i, key)`, before the next `add` or `scan` (which close this scan). Tokenizes the batch now;
        every comparison waits until an item is asked about."""
        self._close()
        base, n = len(self.texts), len(texts)
        self.texts += texts
        self.keys += [None] * n
        self._alive = grown(self._alive, len(self.texts))
        self._sync()
        self._open = RougeScan(self, base, n)
        return self._open

    def top(self, text: str) -> Hit | None:
        """The best-scoring pool neighbour at or above `level`, if any (ties: the earliest slot)."""
        best = self.scan([text]).best(0)
        return best[0] if best else None

    # ------------------------------------------------------------------------------------------------------
    # encoding and storage

    def _sync(self) -> None:
        """Tokenize the slots stored since the last sync and number their features, 64K texts at a time."""
        while self._synced < len(self.texts):
            self._encode(self._synced, min(len(self.texts), self._synced + (1 << 16)))

    def _encode(self, base: int, end: int) -> None:
        nf0, start = self._vocab.nf, int(self._foff[base])
        texts, slots = self.texts[base:end], np.arange(base, end)
        same = np.fromiter(map(self._seen.setdefault, texts, range(base, end)), np.int64, end - base)
        same[same == slots] = -1
        # a repeat of an earlier text of this batch copies its tokens
        local = np.where(same >= base, same - base, -1)
        self._tok, self._flat, lens = self._vocab.encode(texts, self._tok, self._flat, start, local)
        nf = self._vocab.nf
        if nf > nf0:
            self._rank = grown(self._rank, nf)
            self._rank[nf0:nf] = self._next_new_rank - np.arange(nf - nf0)
            self._next_new_rank -= nf - nf0
            self._mark = grown(self._mark, nf)
        self._pmrow = grown(self._pmrow, self._vocab.ntok, -1)
        self._bits = grown(self._bits, self._vocab.ntok)
        self._count = grown(self._count, end)
        self._lens = grown(self._lens, end)
        self._foff = grown(self._foff, end + 1)
        self._same = grown(self._same, end, -1)
        self._dbest = grown(self._dbest, end, -2)
        self._dscore = grown(self._dscore, end)
        self._lens[base:end] = lens
        self._same[base:end] = same
        self._foff[base + 1 : end + 1] = start + np.cumsum(lens)
        self._synced = end

    def _index_admitted(self) -> None:
        """Put the prefixes of the slots admitted since the last probe into the prefix index (recomputing
        the rarity order, and so every prefix, once the number of texts has doubled)."""
        if not self._ordered_for or self._synced >= 2 * max(self._ordered_for, 32):
            self._reorder()
            return
        if self._indexed == len(self._log):
            return
        slots, feats = self._prefixes(np.sort(np.asarray(self._log[self._indexed :], np.int64)))
        self._indexed = len(self._log)
        end = self._np + len(slots)
        self._pslot = grown(self._pslot, end)
        self._pfeat = grown(self._pfeat, end)
        self._pslot[self._np : end] = slots
        self._pfeat[self._np : end] = feats
        self._np = end

    def _reorder(self) -> None:
        """Rarity order from document frequencies over every text; re-index every admitted slot."""
        from selfinstruct.filters.rouge_prefix import counts

        nf = self._vocab.nf
        df = counts(self._flat, int(self._foff[self._synced]), nf)
        order = np.argsort(df, kind="stable")  # ties: the older feature first
        self._rank[order] = np.arange(nf)
        self._next_new_rank = -1
        self._ordered_for = self._synced
        self._big, self._big_np, self._linked = None, 0, 0
        self._jhead.fill(-1)
        slots, feats = self._prefixes(np.sort(np.asarray(self._log, np.int64)))
        self._indexed = len(self._log)
        self._np = len(slots)
        self._pslot = grown(self._pslot, self._np)
        self._pfeat = grown(self._pfeat, self._np)
        self._pslot[: self._np] = slots
        self._pfeat[: self._np] = feats

    def _prefixes(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, feature) for the rarest features of each slot (ascending slots), slot-major."""
        rptr, feats = self._row_prefixes(slots)
        return np.repeat(slots, np.diff(rptr)), feats

    def _row_prefixes(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row r's prefix (the rarest features of slots[r], rarest first) is feats[rptr[r]:rptr[r + 1]]."""
        from selfinstruct.filters.rouge_prefix import prefixes

        lens = self._lens[slots]
        self._windows(int(lens.max(initial=0)))
        shift = -(self._next_new_rank + 1)  # the rarest rank in use, moved to 0
        return prefixes(slots, self._plen[lens], self._lens, self._foff, self._flat, self._rank, shift)

    def _alive_at(self, slot: int, key: str) -> None:
        self._alive[slot] = 1
        self.keys[slot] = key
        self._log.append(slot)
        self._last_alive = max(self._last_alive, slot)

    def _close(self) -> None:
        if self._open is not None:
            self._open.finish()
            self._open.closed = True
            self._open = None

    # ------------------------------------------------------------------------------------------------------
    # bounds

    def _windows(self, longest: int) -> tuple[np.ndarray, np.ndarray]:
        """Per length a up to `longest`: the least and the most length a partner may have (the length bound
        need(a, b) <= min(a, b); need grows with b), and how many of its rarest features a text indexes and
        probes with (0: no partner can reach the level). A length no partner fits gets the window [1, 0]."""
        if len(self._bmin) <= longest:  # another index at this level may have them
            self._bmin, self._bmax, self._plen = _WINDOWS.get(
                (self.level, _K), (self._bmin, self._bmax, self._plen)
            )
        if len(self._bmin) <= longest:
            size, known = max(2 * longest, 2 * len(self._bmin), 64), len(self._bmin)
            bmin, bmax, plen = np.ones(size, np.int64), np.zeros(size, np.int64), np.zeros(size, np.int64)
            bmin[:known], bmax[:known], plen[:known] = self._bmin, self._bmax, self._plen
            for a in range(max(1, known), size):
                # need(a, b) <= b is monotone in b and first holds near b* = level * a / (2 - level): start
                # two below, where need exceeds b by at least 1
                b = max(1, int(self.level * a / (2 - self.level)) - 2)
                while b <= a and self._need(a, b) > b:
                    b += 1
                if b > a:  # no partner can reach the level
                    continue
                bmin[a] = b  # the least partner length, and need(a, b) the least overlap any partner needs
                plen[a] = min(a, a - self._need(a, b) + _K)
                # the most: need(a, b) <= a up to about b = 2 * a / level - a; start two past it, step down
                if self.level <= 0:
                    bmax[a] = _UNBOUNDED
                    continue
                b = min(_UNBOUNDED, int(2 * a / self.level - a) + 2)
                while self._need(a, b) > a:
                    b -= 1
                bmax[a] = b
            self._bmin, self._bmax, self._plen = _WINDOWS[self.level, _K] = bmin, bmax, plen
        return self._bmin, self._bmax

    def _need(self, a: int, b: int) -> int:
        return max(1, math.ceil(self.level * (a + b) / 2 - _EPS))

    # ------------------------------------------------------------------------------------------------------
    # search

    def _probe(self, lo: int, hi: int, best: np.ndarray, score: np.ndarray) -> None:
        """The best neighbour scoring >= level of each slot lo..hi-1 among the slots admitted now (earlier
        slots only) into best/score (-1 and -1.0 where none)."""
        # numba loads here, not at import: vLLM's CPU workers re-import the parent's __main__ and then scan
        # every loaded module, which fails on llvmlite's FFI objects; a script that imports selfinstruct
        # before it starts an engine must not load numba (tests/filters/test_rouge_import.py).
        from selfinstruct.filters.rouge_prefix import link, merged, postings, probe

        self._index_admitted()
        best[:], score[:] = -1, -1.0
        if not self._np:
            return
        self._windows(int(self._lens[lo:hi].max()))
        if self._np - self._big_np > max(_RECENT, self._big_np // _SHARE):
            if self._big is None:
                self._big = postings(
                    self._pslot[: self._np], self._pfeat[: self._np], self._lens, self._vocab.nf
                )
            else:
                self._big = merged(*self._big, self._pslot, self._pfeat, self._lens, self._np, self._vocab.nf)
            self._big_np = self._linked = self._np
            self._jhead.fill(-1)
        self._jhead = grown(self._jhead, self._vocab.nf, -1)
        self._jnext = grown(self._jnext, self._np)
        link(self._jhead, self._jnext, self._pfeat, self._linked, self._np)
        self._linked = self._np
        big = self._big if self._big is not None else _NO_POSTINGS
        # Length bound, shared prefix features, multiset overlap, exact LCS: one compiled pass (module doc).
        shift = -(self._next_new_rank + 1)  # the rarest rank in use, moved to 0
        probe(
            lo, hi, self._plen, self._rank, shift, *big, self._jhead, self._jnext, self._pslot, self._lens,
            self._flat, self._foff, self._tok, self._bmin, self._bmax, float(self.level), _K, _EPS, self._mark,
            self._count, self._pmrow, self._bits, self._same, self._alive, self._last_alive,
            self._dbest, self._dscore, best, score,
        )  # fmt: skip

    def _reverse(self, x: int, lo: int, hi: int, base: int, best: np.ndarray, score: np.ndarray) -> None:
        """Slot x, just admitted, against the probed slots lo..hi-1 (rows y - base of best/score)."""
        from selfinstruct.filters.rouge_prefix import reverse

        self._windows(int(self._lens[x]))  # probes cover their texts' lengths; an admit never probed may not
        reverse(
            x, lo, hi, base, self._lens, self._flat, self._foff, self._tok, self._bmin, self._bmax,
            float(self.level), _EPS, self._mark, self._pmrow, self._bits, best, score,
        )  # fmt: skip


class RougeScan:
    """One batch, decided item by item in order: `best(i)`, then `admit(i, key)` if the caller keeps item i.

    Item i is compared with the pool and the items admitted before it, never with a rejected one; the work
    happens when it is asked about (module doc: blocks probed against the admitted slots, admits inside a
    block compared with its later items).
    """

    def __init__(self, index: RougeIndex, base: int, n: int):
        self.index, self.base, self.n = index, base, n
        self.closed = False
        self._best = np.full(n, -1, np.int64)  # per item: its best admitted neighbour so far, -1 if none
        self._score = np.full(n, -1.0)  # its score
        self._lo = self._hi = 0  # the current block: items lo..hi-1
        self._admits = 0  # items admitted within the current block
        self._cut = False  # the current block had too many admits; the next item starts a new one
        self._size = min(n, _FIRST)  # the next block's size
        self._asked = -1  # the latest item asked about

    def best(self, i: int) -> tuple[Hit, str, str] | None:
        """Item i's best neighbour among the pool and the batch items admitted so far: (hit, key, text)."""
        if self.closed:
            raise RuntimeError("this scan was closed by a later add or scan")
        if self._cut or not self._lo <= i < self._hi:
            self._block(i)
        self._asked = i
        return self.decided(i)

    def decided(self, i: int) -> tuple[Hit, str, str] | None:
        """Item i's best neighbour as `best(i)` or `decide` left it, without probing: (hit, key, text)."""
        other = self._best.item(i)
        if other < 0:
            return None
        ix = self.index
        return Hit(other, self._score.item(i)), ix.keys[other], ix.texts[other]

    def admit(self, i: int, key: str) -> None:
        """Admit batch item i into the index (only the chain calls this, after accepting the task)."""
        ix, slot = self.index, self.base + i
        if self.closed or ix._alive[slot]:
            raise RuntimeError("this scan was closed by a later add or scan, or item i was already admitted")
        ix._alive_at(slot, key)
        if self._cut or i + 1 >= self._hi:
            return
        self._admits += 1
        if self._admits > _LIMIT:
            self._cut = True
            return
        base = self.base
        ix._reverse(slot, base + max(i + 1, self._lo), base + self._hi, base, self._best, self._score)

    def decide(self, keys: Sequence[str], threshold: float) -> np.ndarray:
        """Decide the whole batch for a caller that keeps exactly the items whose best neighbour scores
        `<= threshold`: admit each such item i (key `keys[i]`) in order and return the kept mask. The same
        decisions and `decided(i)` rows as `best` then `admit` item by item, with Python per block and per
        admit instead of per item (most items of a near-copy stream are rejects)."""
        if self.closed or self._asked >= 0:
            raise RuntimeError("decide takes a whole scan: this one was closed or has been asked about")
        kept = np.zeros(self.n, np.bool_)
        i = 0
        while i < self.n:
            if self._cut or not self._lo <= i < self._hi:
                self._block(i)
            ok = self._score[i : self._hi] <= threshold  # -1 where no neighbour reaches the level
            j = int(ok.argmax())
            if not ok[j]:  # the rest of the block is rejected
                self._asked, i = self._hi - 1, self._hi
                continue
            i += j
            self._asked = i
            self.admit(i, keys[i])
            kept[i] = True
            i += 1
        return kept

    def finish(self) -> None:
        """Record the current block's decided items in the index (their rows are final: every admit before
        them has been compared with them), for exact repeats to start from."""
        lo, upto = self._lo, self._asked + 1
        if upto > lo:
            self.index._dbest[self.base + lo : self.base + upto] = self._best[lo:upto]
            self.index._dscore[self.base + lo : self.base + upto] = self._score[lo:upto]

    def _block(self, i: int) -> None:
        """Probe items i.. against the slots admitted now. A block cut short by too many admits is followed by
        one as long as it lasted; one that ran out is followed by one twice as long."""
        self.finish()
        if self._hi > self._lo:
            self._size = max(1, i - self._lo) if self._cut else min(_CHUNK, 2 * self._size)
        self._lo, self._hi = i, min(self.n, i + self._size)
        self._admits, self._cut = 0, False
        lo, hi = self.base + i, self.base + self._hi
        self.index._probe(lo, hi, self._best[i : self._hi], self._score[i : self._hi])
