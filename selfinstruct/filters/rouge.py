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
block of items from i on is probed against everything admitted at that moment (vectorized, below); items
admitted after that are compared with the later items of the block one pair at a time, and after `_DELTA`
such admits the next item starts a new block. Blocks grow while few items are admitted and shrink to about
one `_DELTA` of admits when most are, so both kinds of stream cost little per candidate.

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
  - the multiset overlap itself, for every surviving candidate.
What is left gets an exact bit-parallel LCS from `rapidfuzz.distance.LCSseq` on the token ids, then
rouge-score's F. Each text is tokenized once, when scanned, into int arrays (token ids and features).

Python costs per block, not per text or pair: a scan tokenizes its whole batch with one regex pass and numbers
its features; a probe picks every prefix with numpy sorts, then one compiled loop (`rouge_prefix`) walks the
posting lists (each feature's slots by ascending length, so the length window is two binary searches),
counts shared prefix features per admitted slot and checks the bounds and the overlap of each touched pair.

The rarity order only affects speed, never results; it is recomputed from document frequencies whenever the
number of texts has doubled. This module knows nothing of tasks or rejects: it maps keys and texts to scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq
from scipy.sparse import csr_matrix

_WORD = re.compile(r"[a-z0-9]+")
_SEP = "\x00"
# bytes.translate table: [a-z0-9] and the separator stay, every other byte becomes a space.
_KEEP = bytes(c if chr(c) in "abcdefghijklmnopqrstuvwxyz0123456789\x00" else 32 for c in range(256))
# Features: a token's k-th occurrence in a text is its own feature, (token, k), so bags become sets.
# Required shared prefix features per pair (the k above). With the compiled candidate loop, 100K realistic
# instructions take 36.6, 17.7, 14.8, 14.6 and 19.5 cpu s for K = 1, 2, 3, 4, 6 (short prefixes leave many
# pairs to check; long ones walk long posting lists of common words).
_K = 3
# Most batch items per probe; it bounds the candidates one probe returns (memory).
_CHUNK = 1024
# Admits since an item's probe that are compared with it one pair at a time, at most; past them, a new probe.
# The number used follows the share s of items admitted in the block before: a probe costs about as much
# as _PROBE_PAIRS such pairs, and sqrt(2 * _PROBE_PAIRS * s) balances the two (near-copy streams, s ~ 1%:
# 5; most items kept: 55).
_DELTA = 64
_PROBE_PAIRS = 1500
# Prefix entries newer than the cached, length-sorted postings go in fresh unsorted postings per probe; past
# this many (or an eighth of the cached ones) the cached ones are rebuilt.
_RECENT = 4096
# Admits since a probe scored one pair at a time in Python, at most; more go through one rapidfuzz cdist call.
_FEW_PAIRS = 8
# Token strings a scan keeps (its recent items and the admitted slots they met) before starting afresh.
_CACHE = 4096
# The longest partner length a window can name (level 0: any length).
_UNBOUNDED = 1 << 40
# Postings with no entries, for the cached side before it exists.
_NO_POSTINGS = (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64))
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


class _Vocab(dict):
    """Token (bytes) -> feature id; a word not seen before gets the next free feature id of its index."""

    def __init__(self, index: RougeIndex):
        super().__init__()
        self.index = index

    def __missing__(self, word: bytes) -> int:
        f = self[word] = self.index._nf
        self.index._nf += 1
        return f


class RougeIndex:
    """Instructions in the pool, searchable for ROUGE-L neighbours scoring at least `level`.

    `level` is the decision threshold, or a lower report floor. `add` admits a text; `scan` takes a batch,
    and its `best(i)` / `admit(i, key)`, called in item order, decide the batch one item at a time.

    Every text scanned or added gets a permanent slot; a slot is *alive* once admitted. Only alive slots
    are in the prefix index, so a rejected text is never anyone's candidate.
    """

    def __init__(self, threshold: float = 0.7, *, floor: float | None = None):
        self.level = threshold if floor is None else min(threshold, floor)
        self.keys: list[str | None] = []  # per slot: key once admitted
        self.texts: list[str] = []  # per slot
        self._alive = bytearray()  # per slot: 1 once admitted
        self._log: list[int] = []  # admitted slots, in the order they were admitted
        self._lens = np.zeros(1024, np.int64)  # per slot: token count
        # tokens of slot s (ids, in text order) are _tok[_foff[s]:_foff[s + 1]], its features _flat[same];
        # a token's k-th occurrence in a text is its own feature, so a text's features are a set and their
        # overlap is the multiset overlap of tokens
        self._foff = np.zeros(1025, np.int64)
        self._tok = np.zeros(1 << 14, np.int32)
        self._flat = np.zeros(1 << 14, np.int32)
        # token -> feature id of its first occurrence (its token id); id 0 is the separator _sync joins with
        self._vocab = _Vocab(self)
        self._vocab[_SEP.encode()] = 0
        self._repeat: dict[tuple[int, int], int] = {}  # (first-occurrence feature, k >= 1) -> feature id
        self._nf = 1  # feature ids in use
        self._rank = np.zeros(1024, np.int64)  # feature id -> position in the rarity order (rare first)
        self._next_new_rank = -1  # features first seen after ordering count as rarer than all others
        self._ordered_for = 0  # number of slots the order was computed from
        # prefix entries (slot, feature) of the admitted slots _log[:_indexed]
        self._pslot = np.zeros(1 << 14, np.int32)
        self._pfeat = np.zeros(1 << 14, np.int32)
        self._np = 0
        self._indexed = 0
        self._synced = 0  # slots whose tokens and features are in the arrays above
        # The prefix entries [0, _big_np) as a feature x slot matrix, built once and reused by later probes
        # (rebuilding it per probe would cost the whole pool each time); newer entries go in per probe.
        self._big: tuple[np.ndarray, ...] | None = None  # rouge_prefix.postings
        self._big_np = 0
        self._tau: dict[int, int | None] = {}
        self._mark = np.zeros(
            1024, np.bool_
        )  # per feature: in the block text being checked (all False between)
        self._count = np.zeros(1024, np.int32)
        self._bmin = self._bmax = np.zeros(
            0, np.int64
        )  # _windows  # per slot: shared prefix features (all 0 between probes)
        self._open: RougeScan | None = None  # the latest scan; earlier ones can no longer decide

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
        """A batch to decide: for each item in order, `best(i)` (its best admitted neighbour) and, if kept,
        `admit(i, key)`, before the next `add` or `scan` (which close this scan). Tokenizes the batch now;
        every comparison waits until an item is asked about."""
        self._close()
        base, n = len(self.texts), len(texts)
        self.texts += texts
        self.keys += [None] * n
        self._alive += bytes(n)
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
        """Tokenize the slots stored since the last sync and number their features, 64K texts at a time
        (the word list of one pass costs about 60 bytes per token)."""
        while self._synced < len(self.texts):
            self._encode(self._synced, min(len(self.texts), self._synced + (1 << 16)))

    def _encode(self, base: int, end: int) -> None:
        n, texts = end - base, self.texts[base:end]
        # Tokenize the whole batch in one pass: lowercase it joined by a separator outside [a-z0-9] (str.lower
        # is context-free but for final sigma, which yields no [a-z0-9] either way); every character left
        # outside ASCII cannot be in [a-z0-9], so it becomes "?", then every byte outside [a-z0-9] a space,
        # and the words are the runs between spaces. A batch whose texts hold the separator goes text by text.
        joined = f" {_SEP} ".join(texts).lower()
        if joined.count(_SEP) == n - 1:
            words = joined.encode("ascii", "replace").translate(_KEEP).split()
        else:
            words = [w.encode() for t in texts for w in [*tokenize(t), _SEP]][:-1]
        nf0 = self._nf
        tid = np.fromiter(map(self._vocab.__getitem__, words), np.int64, len(words))  # new words get new ids
        cut = np.flatnonzero(tid == 0)
        lens = np.diff(cut, prepend=-1, append=len(tid)) - 1
        tid = tid[tid != 0]
        total = len(tid)
        # Number repeated tokens within each text: sort by (text, token); the k-th of a run is occurrence k.
        width = max(self._nf, 1)
        key = np.sort(np.repeat(np.arange(n, dtype=np.int64) * width, lens) + tid)
        feats = key % width
        run = np.ones(total, np.bool_)
        run[1:] = key[1:] != key[:-1]
        at = np.arange(total)
        occ = at - np.maximum.accumulate(np.where(run, at, 0))
        again = np.flatnonzero(occ)
        if len(again):
            # (token, k) -> its feature id, looked up once per distinct pair
            stride = int(occ.max()) + 1
            pairs, inverse = np.unique(feats[again] * stride + occ[again], return_inverse=True)
            repeat, ids = self._repeat, []
            for pair in pairs.tolist():
                k = divmod(pair, stride)
                if k not in repeat:
                    repeat[k] = self._nf
                    self._nf += 1
                ids.append(repeat[k])
            feats[again] = np.asarray(ids, np.int64)[inverse.ravel()]
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
        self._tok = _grown(self._tok, start + total)
        self._lens[base:end] = lens
        self._foff[base + 1 : end + 1] = start + np.cumsum(lens)
        self._flat[start : start + total] = feats
        self._tok[start : start + total] = tid
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
        self._pslot = _grown(self._pslot, end)
        self._pfeat = _grown(self._pfeat, end)
        self._pslot[self._np : end] = slots
        self._pfeat[self._np : end] = feats
        self._np = end

    def _reorder(self) -> None:
        """Rarity order from document frequencies over every text; re-index every admitted slot."""
        nf = self._nf
        df = np.bincount(self._flat[: self._foff[self._synced]], minlength=nf)
        order = np.lexsort((np.arange(nf), df))
        self._rank[order] = np.arange(nf)
        self._next_new_rank = -1
        self._ordered_for = self._synced
        self._big, self._big_np = None, 0
        slots, feats = self._prefixes(np.sort(np.asarray(self._log, np.int64)))
        self._indexed = len(self._log)
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

    def _tokens(self, slot: int) -> str | list[int]:
        return self._seq(self._tok[self._foff[slot] : self._foff[slot + 1]])

    def _seq(self, ids: np.ndarray) -> str | list[int]:
        """Token ids as rapidfuzz compares them fastest: one character per token (ids shifted past the
        surrogates, which a str cannot decode from UTF-32), or a list once the ids outgrow Unicode."""
        if self._nf >= 0x110000 - 0x800:
            return ids.tolist()
        return np.where(ids >= 0xD800, ids + 0x800, ids).astype("<u4").tobytes().decode("utf-32-le")

    def _alive_at(self, slot: int, key: str) -> None:
        self._alive[slot] = 1
        self.keys[slot] = key
        self._log.append(slot)

    def _close(self) -> None:
        if self._open is not None:
            self._open.closed = True
            self._open = None

    # ------------------------------------------------------------------------------------------------------
    # bounds

    def _windows(self, longest: int) -> tuple[np.ndarray, np.ndarray]:
        """Per length a up to `longest`: the least and the most length a partner may have (the length bound
        need(a, b) <= min(a, b); need grows with b). A length no partner fits gets the empty window [1, 0]."""
        if len(self._bmin) <= longest:
            size = max(2 * longest, 64)
            bmin, bmax = np.ones(size, np.int64), np.zeros(size, np.int64)
            for a in range(1, size):
                tau = self._tau_min(a)
                if tau is None:
                    continue
                bmin[a] = next(b for b in range(1, a + 1) if self._need(a, b) <= b)
                # need > a past this bound (need >= level * (a + b) / 2 - eps); bisect for the last b within
                top = _UNBOUNDED if self.level <= 0 else min(_UNBOUNDED, int(2 * (a + 1) / self.level) + 2)
                lo_, hi_ = a, top
                while lo_ < hi_:
                    mid = hi_ - (hi_ - lo_) // 2
                    lo_, hi_ = (mid, hi_) if self._need(a, mid) <= a else (lo_, mid - 1)
                bmax[a] = lo_
            self._bmin, self._bmax = bmin, bmax
        return self._bmin, self._bmax

    def _need(self, a: int, b: int) -> int:
        return max(1, math.ceil(self.level * (a + b) / 2 - _EPS))

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

    def _score(self, slot: int, others: Sequence[int], tokens: dict[int, str | list[int]]) -> list[Hit]:
        """Hits of `slot` among a few admitted `others` (length bound, then exact LCS, in one rapidfuzz call);
        `tokens` caches token lists by slot. A handful of others go one pair at a time (numpy's and
        cdist's fixed costs outweigh a few pairs: near-copy streams, where few are admitted)."""
        lens, level = self._lens, self.level
        a = int(lens[slot])
        if len(others) <= _FEW_PAIRS:
            out, mine = [], None
            for t in others:
                b = int(lens[t])
                nd = self._need(a, b)
                if nd > min(a, b):
                    continue
                if mine is None:
                    mine = tokens[slot] if slot in tokens else self._tokens(slot)
                lcs = int(LCSseq.similarity(mine, self._cached(t, tokens), score_cutoff=nd))
                if lcs >= nd and (f := fmeasure(lcs, a, b)) >= level:
                    out.append(Hit(t, f))
            return out
        x = np.asarray(others, np.int64)
        b = lens[x]
        need = np.maximum(1, np.ceil(level * (a + b) / 2 - _EPS)).astype(np.int64)
        ok = need <= np.minimum(a, b)
        if not ok.any():
            return []
        x, b, need = x[ok].tolist(), b[ok].tolist(), need[ok]
        # the cache may have been cleared since this item's probe (a later, shorter block)
        mine = tokens[slot] if slot in tokens else self._tokens(slot)
        seqs = [self._cached(t, tokens) for t in x]
        lcs = process.cdist([mine], seqs, scorer=LCSseq.similarity, dtype=np.int64, workers=1)[0]
        out = []
        for i in np.flatnonzero(lcs >= need).tolist():
            if (f := fmeasure(int(lcs[i]), a, b[i])) >= level:
                out.append(Hit(x[i], f))
        return out

    def _cached(self, t: int, tokens: dict[int, str | list[int]]) -> str | list[int]:
        """Slot t's tokens from the scan's cache, computed and kept there on a miss."""
        other = tokens.get(t)
        if other is None:
            other = tokens[t] = self._tokens(t)
        return other

    def _matrix(self, start: int, stop: int) -> csr_matrix:
        """Prefix entries start..stop-1 as a feature x slot matrix."""
        ps, pf = self._pslot[start:stop], self._pfeat[start:stop]
        return csr_matrix((np.ones(stop - start, np.int32), (pf, ps)), shape=(self._nf, len(self.texts)))

    def _probe(self, lo: int, hi: int, tokens: dict[int, str | list[int]]) -> list[Sequence[Hit]]:
        """Hits of slots lo..hi-1 scoring >= level among the slots admitted now (earlier slots only);
        `tokens` caches token lists by slot."""
        # numba loads here, not at import: vLLM's CPU workers re-import the parent's __main__ and then scan
        # every loaded module, which fails on llvmlite's FFI objects; a script that imports selfinstruct
        # before it starts an engine must not load numba (tests/filters/test_rouge_import.py).
        from selfinstruct.filters.rouge_prefix import candidates, postings

        self._index_admitted()
        hits: list[Sequence[Hit]] = [()] * (hi - lo)  # one shared empty tuple until a row has a hit
        if not self._np:
            return hits
        cslot, cfeat = self._prefixes(np.arange(lo, hi))
        if not len(cslot):
            return hits
        if self._np - self._big_np > max(_RECENT, self._big_np // 8):
            self._big = postings(self._pslot[: self._np], self._pfeat[: self._np], self._lens, self._nf)
            self._big_np = self._np
        recent = self._matrix(self._big_np, self._np)
        big = self._big if self._big is not None else _NO_POSTINGS
        bmin, bmax = self._windows(int(self._lens[lo:hi].max()))
        if len(self._mark) < self._nf:
            self._mark = np.zeros(max(self._nf, 2 * len(self._mark)), np.bool_)
        if len(self._count) < len(self.texts):
            self._count = np.zeros(max(len(self.texts), 2 * len(self._count)), np.int32)
        rptr = np.zeros(hi - lo + 1, np.int64)
        np.cumsum(np.bincount(cslot - lo, minlength=hi - lo), out=rptr[1:])
        # Length bound, shared prefix features, multiset overlap: all exact (module doc), in one compiled pass.
        y, x, need = candidates(
            lo, rptr, cfeat, *big, recent.indptr, recent.indices, self._lens, self._flat, self._foff, bmin,
            bmax, float(self.level), _K, _EPS, self._mark, self._count,
        )  # fmt: skip
        # The few pairs left: exact LCS on the token ids.
        level, lens = self.level, self._lens
        for s, t, na, nb, nd in zip(
            y.tolist(), x.tolist(), lens[y].tolist(), lens[x].tolist(), need.tolist(), strict=True
        ):
            other = tokens.get(t)
            if other is None:
                other = tokens[t] = self._tokens(t)
            lcs = int(LCSseq.similarity(tokens[s], other, score_cutoff=nd))
            if lcs >= nd:
                # target = the candidate, prediction = the pool text (Alpaca's order)
                f = fmeasure(lcs, na, nb)
                if f >= level:
                    if not hits[s - lo]:
                        hits[s - lo] = []
                    hits[s - lo].append(Hit(t, f))
        return hits


class RougeScan:
    """One batch, decided item by item in order: `best(i)`, then `admit(i, key)` if the caller keeps item i.

    Item i is compared with the pool and the items admitted before it, never with a rejected one; the work
    happens when it is asked about (module doc: blocks probed against the admitted slots, later admits one
    pair at a time).
    """

    def __init__(self, index: RougeIndex, base: int, n: int):
        self.index, self.base, self.n = index, base, n
        self.closed = False
        self._hits: list[Sequence[Hit]] = [()] * n  # per item: hits among the slots admitted at its probe
        self._seen = [-1] * n  # per item: len(index._log) at its probe; -1 before
        self._lo = 0  # the current block's first item
        self._at = 0  # len(index._log) when the current block was probed
        self._size = min(n, _CHUNK)  # the next block's size
        self._limit = min(8, _DELTA)  # admits since a probe compared one pair at a time
        self._tokens: dict[int, str | list[int]] = {}  # token lists of the current block's slots, by slot

    def best(self, i: int) -> tuple[Hit, str, str] | None:
        """Item i's best neighbour among the pool and the batch items admitted so far: (hit, key, text)."""
        if self.closed:
            raise RuntimeError("this scan was closed by a later add or scan")
        ix = self.index
        seen = self._seen[i]
        if seen < 0 or len(ix._log) - seen > self._limit:
            self._block(i, again=seen >= 0)
            seen = self._seen[i]
        found, slot = self._hits[i], self.base + i
        if len(ix._log) > seen:
            delta = [s for s in ix._log[seen:] if s < slot]
            if delta:
                found = [*found, *ix._score(slot, delta, self._tokens)]
        if not found:
            return None
        h = min(found, key=lambda x: (-x.score, x.other))
        return h, ix.keys[h.other], ix.texts[h.other]

    def admit(self, i: int, key: str) -> None:
        """Admit batch item i into the index (only the chain calls this, after accepting the task)."""
        slot = self.base + i
        if self.closed or self.index._alive[slot]:
            raise RuntimeError("this scan was closed by a later add or scan, or item i was already admitted")
        self.index._alive_at(slot, key)

    def _block(self, i: int, again: bool) -> None:
        """Probe items i.. against the slots admitted now. A block cut short by too many admits is followed by
        one about as long as it lasted; one that ran out is followed by one twice as long."""
        ix = self.index
        if i > self._lo:
            share = (len(ix._log) - self._at) / (i - self._lo)
            self._limit = min(_DELTA, round(math.sqrt(2 * _PROBE_PAIRS * share)))
            self._size = max(1, i - self._lo) if again else min(_CHUNK, 2 * self._size)
        self._lo, hi = i, min(self.n, i + self._size)
        lo, hi = self.base + i, self.base + hi
        # Token strings of the block's items, and of the admitted slots they meet (at most about _CACHE).
        flat = ix._seq(ix._tok[ix._foff[lo] : ix._foff[hi]])
        ends = (ix._foff[lo + 1 : hi + 1] - ix._foff[lo]).tolist()
        if len(self._tokens) > _CACHE:
            self._tokens = {}
        for slot, start, end in zip(range(lo, hi), [0, *ends[:-1]], ends, strict=True):
            self._tokens[slot] = flat[start:end]
        self._hits[i : hi - self.base] = ix._probe(lo, hi, self._tokens)
        hi -= self.base
        self._at = len(ix._log)
        self._seen[i:hi] = [self._at] * (hi - i)
