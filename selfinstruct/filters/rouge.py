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
    least k of them among their (size - tau + k) rarest; so only the rarest tokens of each text are indexed,
    and a pair must meet in at least K of them;
  - the multiset overlap itself, computed with numpy for every surviving candidate.
What is left (well under one pair per query on real data) gets an exact bit-parallel LCS from
`rapidfuzz.distance.LCSseq` on the token lists, then rouge-score's F.

Python costs per batch, not per text or pair: a scan tokenizes its whole batch with one regex pass, numbers
its features and picks every prefix with numpy sorts, and counts the shared prefix features of all pairs
(chunk of the batch x every earlier slot) with one sparse matrix product (scipy), so the 2,000-text batch of
the benchmark costs about 7 µs per text in all, against about 21 µs per pair for rouge-score.

The rarity order only affects speed, never results; it is recomputed from document frequencies whenever the
index has doubled. This module knows nothing of tasks or rejects: it maps keys and texts to scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
from rapidfuzz.distance import LCSseq
from scipy.sparse import csr_matrix

_WORD = re.compile(r"[a-z0-9]+")
_SEP = "\x00"
_TOKEN_OR_SEP = re.compile(r"[a-z0-9]+|\x00")
# Features: a token's k-th occurrence in a text is its own feature, (token, k), so bags become sets.
# Required shared prefix features per pair (the k above). On 50K realistic instructions k = 1, 2, 3, 4
# touch 54M, 72M, 97M, 130M prefix pairs and leave 34M, 6.9M, 2.2M, 0.9M candidates; with the sparse
# product k = 3 takes 5.3 s there against 12.1 s for k = 2, and both take about 14 ms on the 2,000 Alpaca
# texts of the benchmark (k = 1: 24 ms, k = 4: 16 ms).
_K = 3
# Batch rows per sparse product. It bounds the pairs one product returns (memory), and within a chunk the
# product also counts the pairs (later, earlier) that are thrown away: 512 to 1024 measured fastest.
_CHUNK = 1024
# Prefix entries newer than the cached pool matrix are put in a fresh matrix per chunk; past this many (or an
# eighth of the cached ones) the cached one is rebuilt.
_RECENT = 4096
# Chunks of at most this many rows skip scipy (whose fixed cost per product outweighs a few rows' work).
_FEW = 4
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


def _grown(arr: np.ndarray, size: int) -> np.ndarray:
    """`arr`, or a copy at least twice as long when it cannot hold `size` elements (amortized appends)."""
    if size <= len(arr):
        return arr
    out = np.zeros(max(size, 2 * len(arr)), arr.dtype)
    out[: len(arr)] = arr
    return out


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenated aranges [starts[i], starts[i] + lens[i]): gathers variable-length rows in one call."""
    seg = np.cumsum(lens)
    return np.arange(seg[-1] if len(seg) else 0) + np.repeat(starts - (seg - lens), lens)


class RougeIndex:
    """Instructions in the pool, searchable for ROUGE-L neighbours scoring at least `level`.

    `level` is the decision threshold, or a lower report floor. `add` admits a text; `scan` scores a batch
    against the pool and against its own earlier items, and its `admit` admits the batch items kept.

    Every text scanned or added gets a permanent slot; a slot is *alive* once admitted. Batch items are
    indexed while scanned (later items must see them), stay invisible to other scans unless admitted, and
    are dropped from the prefix index at the next reorder.

    Everything per slot lives in flat numpy arrays, and a scan works on its whole batch at once: one pass
    to tokenize and number features, one sort to pick every prefix, and per chunk of rows one sparse
    product (prefix features of the chunk x prefix features of every earlier slot) that counts the shared
    prefix features of all pairs at once. Only pairs that pass every bound reach Python.
    """

    def __init__(self, threshold: float = 0.7, *, floor: float | None = None):
        self.level = threshold if floor is None else min(threshold, floor)
        self.keys: list[str | None] = []  # per slot: key once admitted
        self.texts: list[str] = []  # per slot
        self._alive = bytearray()  # per slot: 1 once admitted
        self._lens = np.zeros(1024, np.int64)  # per slot: token count
        # features of slot s are _flat[_foff[s]:_foff[s + 1]]; a token's k-th occurrence in a text is its
        # own feature, so a text's features are a set and their overlap is the multiset overlap of tokens
        self._foff = np.zeros(1025, np.int64)
        self._flat = np.zeros(1 << 14, np.int32)
        # token -> feature id of its first occurrence; id 0 is the separator _sync joins texts with
        self._vocab: dict[str, int] = {_SEP: 0}
        self._repeat: dict[tuple[int, int], int] = {}  # (first-occurrence feature, k >= 1) -> feature id
        self._nf = 1  # feature ids in use
        self._rank = np.zeros(1024, np.int64)  # feature id -> position in the rarity order (rare first)
        self._next_new_rank = -1  # features first seen after ordering count as rarer than all others
        self._ordered_for = 0  # number of slots the order was computed from
        # prefix entries (slot, feature), in slot order: admitted slots, then slots scanned since
        self._pslot = np.zeros(1 << 14, np.int32)
        self._pfeat = np.zeros(1 << 14, np.int32)
        self._np = 0
        self._synced = 0  # slots whose features and prefixes are in the arrays above
        # The prefix entries [0, _big_np) as a feature x slot matrix, built once and reused by later scans
        # (rebuilding it per scan would cost the whole pool each time); newer entries go in per chunk.
        self._big: csr_matrix | None = None
        self._big_np = 0
        self._tau: dict[int, int | None] = {}
        self._open: RougeScan | None = None  # the latest scan; earlier ones can no longer admit

    # ------------------------------------------------------------------------------------------------------
    # public

    def add(self, key: str, text: str) -> None:
        """Admit one text (a seed, a resumed task, or a candidate the caller accepted)."""
        self._close()
        # Only the Python side now: adds come one at a time (seeds, resumed tasks), and the numpy side is
        # cheap per batch but not per text, so the next scan encodes and indexes all pending adds at once.
        self.texts.append(text)
        self.keys.append(None)
        self._alive.append(0)
        self._alive_at(len(self.texts) - 1, key)

    def scan(self, texts: Sequence[str]) -> RougeScan:
        """Score each text against the pool and against every earlier text of the batch.

        Nothing is admitted: admit the items you keep with the returned scan's `admit`, in order, before the
        next `add` or `scan` (which close this scan).
        """
        self._close()
        base, n = len(self.texts), len(texts)
        self.texts += texts
        self.keys += [None] * n
        self._alive += bytes(n)
        self._sync()
        # One shared empty tuple per item until it has a hit: thousands of empty lists cost GC passes.
        hits: list[Sequence[Hit]] = [()] * n
        for lo in range(0, n, _CHUNK):
            self._probe(base, base + lo, base + min(n, lo + _CHUNK), hits)
        for h in hits:
            if len(h) > 1:
                h.sort(key=lambda x: (-x.score, x.other))
        self._open = RougeScan(self, hits, base)
        return self._open

    def top(self, text: str) -> Hit | None:
        """The best-scoring pool neighbour at or above `level`, if any (ties: the earliest slot)."""
        hits = self.scan([text]).hits[0]
        return hits[0] if hits else None

    # ------------------------------------------------------------------------------------------------------
    # encoding and storage

    def _sync(self) -> None:
        """Number the features of the slots stored since the last sync, and index their prefixes."""
        base, end = self._synced, len(self.texts)
        if base == end:
            return
        n, texts = end - base, self.texts[base:end]
        # Tokenize the whole batch in one pass: lowercase it joined by a separator outside [a-z0-9] (str.lower
        # is context-free but for final sigma, which yields no [a-z0-9] either way), find the tokens and the
        # separators; a batch whose texts contain the separator themselves goes text by text.
        joined = _SEP.join(texts).lower()
        if joined.count(_SEP) == n - 1:
            words = _TOKEN_OR_SEP.findall(joined)
        else:
            words = list(chain.from_iterable(tokenize(t) + [_SEP] for t in texts))[:-1]
        nf0, vocab = self._nf, self._vocab
        new = [w for w in dict.fromkeys(words) if w not in vocab]
        if new:
            vocab.update(zip(new, range(nf0, nf0 + len(new)), strict=True))
            self._nf += len(new)
        tid = np.fromiter(map(vocab.__getitem__, words), np.int64, len(words))
        cut = np.flatnonzero(tid == 0)
        lens = np.diff(cut, prepend=-1, append=len(tid)) - 1
        tid = tid[tid != 0]
        total = len(tid)
        # Number repeated tokens within each text: sort by (text, token); the k-th of a run is occurrence k.
        owner = np.repeat(np.arange(n, dtype=np.int64), lens)
        order = np.argsort(owner * max(self._nf, 1) + tid, kind="stable")
        feats = tid[order]
        run = np.ones(total, np.bool_)
        run[1:] = (feats[1:] != feats[:-1]) | (owner[1:] != owner[:-1])  # owner is sorted already
        at = np.arange(total)
        occ = at - np.maximum.accumulate(np.where(run, at, 0))
        again = np.flatnonzero(occ)
        if len(again):
            repeat, nf = self._repeat, self._nf
            ids = []
            for key in zip(feats[again].tolist(), occ[again].tolist(), strict=True):
                f = repeat.get(key)
                if f is None:
                    f = repeat[key] = nf
                    nf += 1
                ids.append(f)
            feats[again] = ids
            self._nf = nf
        # Sorting by text kept each text's features together, so the offsets are those of the tokens.
        if self._nf > nf0:
            self._rank = _grown(self._rank, self._nf)
            fresh = self._nf - nf0
            self._rank[nf0 : self._nf] = self._next_new_rank - np.arange(fresh)
            self._next_new_rank -= fresh
        self._lens = _grown(self._lens, end)
        self._foff = _grown(self._foff, end + 1)
        start = int(self._foff[base])
        self._flat = _grown(self._flat, start + total)
        self._lens[base:end] = lens
        self._foff[base + 1 : end + 1] = start + np.cumsum(lens)
        self._flat[start : start + total] = feats
        self._synced = end
        self._post(base)

    def _post(self, base: int) -> None:
        """Index the prefixes of slots base.. (reordering first once the data has doubled)."""
        total = len(self.texts)
        if not self._ordered_for or total >= 2 * max(self._ordered_for, 32):
            self._reorder(base)
        slots, feats = self._prefixes(np.arange(base, total))
        end = self._np + len(slots)
        self._pslot = _grown(self._pslot, end)
        self._pfeat = _grown(self._pfeat, end)
        self._pslot[self._np : end] = slots
        self._pfeat[self._np : end] = feats
        self._np = end

    def _reorder(self, base: int) -> None:
        """Rarity order from document frequencies over every slot; re-index the admitted slots below base."""
        nf = self._nf
        df = np.bincount(self._flat[: self._foff[len(self.texts)]], minlength=nf)
        order = np.lexsort((np.arange(nf), df))
        self._rank[order] = np.arange(nf)
        self._next_new_rank = -1
        self._ordered_for = len(self.texts)
        self._big, self._big_np = None, 0
        alive = np.flatnonzero(np.frombuffer(self._alive, np.uint8, base))
        slots, feats = self._prefixes(alive)
        self._np = len(slots)
        self._pslot = _grown(self._pslot, self._np)
        self._pfeat = _grown(self._pfeat, self._np)
        self._pslot[: self._np] = slots
        self._pfeat[: self._np] = feats

    def _prefixes(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, feature) for the rarest features of each slot (ascending slots), slot-major."""
        lens = self._lens[slots]
        feats = self._flat[_ranges(self._foff[slots], lens)]
        if not len(feats):
            return feats, feats
        owner = np.repeat(slots, lens)
        # Sort by (slot, rank) with one int64 key; a text's features are distinct, so ranks never tie.
        rank = self._rank[feats]
        low = rank.min()
        order = np.argsort(owner * (rank.max() - low + 1) + (rank - low))
        # Sorted position i belongs to owner[i] (owners ascend); keep the first prefix_len of each.
        start = np.cumsum(lens) - lens
        keep = order[np.arange(len(feats)) < np.repeat(start + self._prefix_len(lens), lens)]
        return owner[keep], feats[keep]

    def _tau_row(self, lens: np.ndarray) -> np.ndarray:
        """_tau_min of each length, 0 where None."""
        uniq, inv = np.unique(lens, return_inverse=True)
        return np.asarray([self._tau_min(a) or 0 for a in uniq.tolist()], np.int64)[inv]

    def _prefix_len(self, lens: np.ndarray) -> np.ndarray:
        """How many of its rarest features a text of each length indexes (0: no partner can reach level)."""
        tau = self._tau_row(lens)
        return np.where(tau > 0, np.minimum(lens, lens - tau + _K), 0)

    def _alive_at(self, slot: int, key: str) -> None:
        self._alive[slot] = 1
        self.keys[slot] = key

    def _close(self) -> None:
        if self._open is not None:
            self._open.closed = True
            self._open = None

    # ------------------------------------------------------------------------------------------------------
    # bounds

    def _tau_min(self, a: int) -> int | None:
        """Least overlap any feasible partner of a length-a text needs; None if none can reach the level."""
        if a not in self._tau:
            tau = None
            for b in range(1, a + 1):  # need grows with b: the first feasible b gives the least need
                nd = max(1, math.ceil(self.level * (a + b) / 2 - _EPS))
                if nd <= b:
                    tau = nd
                    break
            self._tau[a] = tau
        return self._tau[a]

    # ------------------------------------------------------------------------------------------------------
    # search

    def _matrix(self, start: int, stop: int, slots: int) -> csr_matrix:
        """Prefix entries start..stop-1 as a feature x slot matrix (slots columns)."""
        ps, pf = self._pslot[start:stop], self._pfeat[start:stop]
        return csr_matrix((np.ones(stop - start, np.int32), (pf, ps)), shape=(self._nf, slots))

    @staticmethod
    def _shared(chunk: csr_matrix, earlier: csr_matrix, least: np.ndarray) -> tuple[np.ndarray, ...]:
        """(chunk row, slot, shared prefix features) of the pairs sharing at least least[row]."""
        shared = chunk @ earlier
        hit = np.flatnonzero(shared.data >= np.repeat(least, np.diff(shared.indptr)))
        row = np.searchsorted(shared.indptr, hit, side="right") - 1
        return row, shared.indices[hit].astype(np.int64), shared.data[hit]

    def _shared_few(
        self, lo: int, hi: int, first: int, end: int, least: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """What the sparse products give, for a few rows: each row's prefix features looked up directly in
        the cached matrix and among the newer entries (scipy's fixed cost per product dominates there)."""
        rows, xs, counts = [], [], []
        recent_slot, recent_feat = self._pslot[self._big_np : end], self._pfeat[self._big_np : end]
        big = self._big
        for r in range(hi - lo):
            j0, j1 = np.searchsorted(self._pslot[first:end], np.array([lo + r, lo + r + 1], np.int32))
            feats = self._pfeat[first + j0 : first + j1]
            found = [recent_slot[np.isin(recent_feat, feats)]]
            if big is not None:
                feats = feats[feats < big.shape[0]]
                starts = big.indptr[feats]
                found.append(big.indices[_ranges(starts, big.indptr[feats + 1] - starts)])
            x, count = np.unique(np.concatenate(found), return_counts=True)
            ok = count >= least[r]
            rows.append(np.full(int(ok.sum()), r, np.int64))
            xs.append(x[ok].astype(np.int64))
            counts.append(count[ok])
        return np.concatenate(rows), np.concatenate(xs), np.concatenate(counts)

    def _probe(self, base: int, lo: int, hi: int, hits: list[Sequence[Hit]]) -> None:
        """Hits of slots lo..hi-1 (of the batch starting at base) among admitted slots and earlier batch
        slots, scoring >= level; appended to hits[slot - base]."""
        ps = self._pslot[: self._np]
        first, end = np.searchsorted(ps, np.array([lo, hi], ps.dtype)).tolist()  # same dtype: no copy of ps
        if first == end:
            return
        # Shared prefix features of every (chunk slot, earlier slot) pair: sparse products, one with the
        # cached matrix of older entries, one with the entries since.
        nf = self._nf
        if first - self._big_np > max(_RECENT, self._big_np // 8):
            self._big = self._matrix(0, first, lo)
            self._big_np = first
        # Cheapest cut first, on the raw counts: every partner of a length-a text needs at least
        # min(K, tau_min(a)) shared prefix features; most pairs share one.
        least = np.minimum(_K, np.maximum(1, self._tau_row(self._lens[lo:hi])))
        if hi - lo <= _FEW:
            parts = [self._shared_few(lo, hi, first, end, least)]
        else:
            indptr = np.zeros(hi - lo + 1, np.int64)
            np.cumsum(np.bincount(ps[first:end] - lo, minlength=hi - lo), out=indptr[1:])
            ones = np.ones(end - first, np.int32)
            chunk = csr_matrix((ones, self._pfeat[first:end], indptr), shape=(hi - lo, nf))
            parts = [self._shared(chunk, self._matrix(self._big_np, end, hi), least)]
            if self._big is not None:
                if self._big.shape[0] < nf:
                    self._big.resize((nf, self._big.shape[1]))
                parts.append(self._shared(chunk, self._big, least))
        y, x, count = (np.concatenate(v) for v in zip(*parts, strict=True))
        y += lo
        alive = np.frombuffer(self._alive, np.uint8, hi)
        ok = (x < y) & ((x >= base) | (alive[x] == 1))
        y, x, count = y[ok], x[ok], count[ok]
        # Length bound, then the prefix count each pair's need requires (both exact, see the module doc).
        a, b = self._lens[y], self._lens[x]
        need = np.maximum(1, np.ceil(self.level * (a + b) / 2 - _EPS)).astype(np.int64)
        ok = (need <= np.minimum(a, b)) & (count >= np.minimum(_K, need))
        if not ok.any():
            return
        y, x, a, b, need = y[ok], x[ok], a[ok], b[ok], need[ok]
        # Multiset overlap (shared features) bounds the LCS: look each feature of x up among y's features.
        flat, foff = self._flat, self._foff
        mine = np.repeat(np.arange(lo, hi, dtype=np.int64), self._lens[lo:hi]) * nf
        mine = np.sort(mine + flat[foff[lo] : foff[hi]])
        probe = np.repeat(y * nf, b) + flat[_ranges(foff[x], b)]
        at = np.minimum(np.searchsorted(mine, probe), len(mine) - 1)
        overlap = np.add.reduceat(mine[at] == probe, np.cumsum(b) - b, dtype=np.int64)
        keep = overlap >= need
        # The few pairs left get their token lists again (cheaper than keeping one list per slot).
        texts, level = self.texts, self.level
        for s, t, na, nb, nd in zip(
            y[keep].tolist(), x[keep].tolist(), a[keep].tolist(), b[keep].tolist(), need[keep].tolist(),
            strict=True,
        ):  # fmt: skip
            mine_t, other_t = tokenize(texts[s]), tokenize(texts[t])
            lcs = int(LCSseq.similarity(mine_t, other_t, score_cutoff=nd))
            if lcs >= nd:
                # target = the candidate, prediction = the pool text (Alpaca's order)
                f = fmeasure(lcs, na, nb)
                if f >= level:
                    if not hits[s - base]:
                        hits[s - base] = []
                    hits[s - base].append(Hit(t, f))


class RougeScan:
    """Scores of one batch, computed once; decisions follow which batch items the caller admits, in order.

    `hits[i]` lists item i's neighbours scoring >= level, best first: admitted slots (< base) and earlier
    items of this batch (slot base + j), whether admitted or not; `best` picks among the admitted ones.
    """

    def __init__(self, index: RougeIndex, hits: list[Sequence[Hit]], base: int):
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
