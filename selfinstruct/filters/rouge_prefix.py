"""The search steps of the ROUGE-L index, compiled: prefixes, candidates, exact LCS, best neighbour.

A pair is a candidate when it passes three exact filters (see `rouge.py`'s module doc): the length bound
need(a, b) <= min(a, b), at least min(K, need) shared prefix features, and a multiset overlap of at least
need. Done with numpy and scipy, the shared-prefix counts came from a sparse product whose every nonzero
was materialized, then every surviving pair gathered the other text's features again: both costs grew with
the square of the pool on realistic text (50K: 7 s, 200K: 50 s). Here one compiled loop per block text walks
the posting lists of its prefix features, counts per admitted text in a dense array, and checks each touched
text's bounds and overlap at once (a dense marker of the block text's features). The candidates left get an
exact bit-parallel LCS (Allison and Dix 1986; Hyyrö 2004: one row of the LCS table as bits, updated by one
add per word and token) in the same loop, best upper bound first, so only the best neighbour leaves it. A
probing text of at most 64 tokens skips the overlap: with one word of LCS state, the exact LCS costs about as
much (a step per token of the partner).

F is computed with rouge-score's float expression, in the same order (see `rouge.fmeasure`): numba does not
reassociate floats unless asked (fastmath), so every tie falls as in Python.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from selfinstruct.filters.rouge import fmeasure
from selfinstruct.filters.rouge_tokens import _grow

_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)


# rouge.fmeasure compiled: rouge-score's F, the same operations in the same order
_fm = njit(cache=True, nogil=True)(fmeasure)
# Helpers that take arrays are inlined into their caller in numba's own IR: a compiled call passing arrays
# counts references to each of them (an atomic add and subtract per array), which cost more than the
# helper's work on short texts (one probed row of a 1-token text: 180 ns, 60 ns inlined with _short_lcs).
_inline = njit(cache=True, nogil=True, inline="always")


@_inline
def _mark(s: int, foff: np.ndarray, flat: np.ndarray, mark: np.ndarray, on: bool) -> None:
    """Set (or clear) slot s's features in the per-feature marker."""
    for q in range(foff[s], foff[s + 1]):
        mark[flat[q]] = on


@_inline
def _overlap(s: int, foff: np.ndarray, flat: np.ndarray, mark: np.ndarray) -> int:
    """How many of slot s's features are marked: the multiset overlap with the marked text's tokens."""
    n = 0
    for q in range(foff[s], foff[s + 1]):
        if mark[flat[q]]:
            n += 1
    return n


@njit(cache=True, nogil=True)
def _popcount(x: np.uint64) -> int:
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    x = x + (x >> np.uint64(8))
    x = x + (x >> np.uint64(16))
    x = x + (x >> np.uint64(32))
    return int(x & np.uint64(0x7F))


@_inline
def _short_bits(s: int, foff: np.ndarray, tok: np.ndarray, bits: np.ndarray, on: bool) -> None:
    """Set (or clear back to 0) the match bits of slot s, at most 64 tokens: bits[t] holds the positions where
    token t is in s."""
    for e in range(foff[s + 1] - foff[s]):
        t = tok[foff[s] + e]
        bits[t] = bits[t] | (np.uint64(1) << np.uint64(e)) if on else np.uint64(0)


@_inline
def _short_lcs(bits: np.ndarray, x: int, foff: np.ndarray, tok: np.ndarray) -> int:
    """LCS of the pattern in `bits` (_short_bits) and slot x's tokens, bit-parallel (see _lcs) in one word."""
    v = _ONES
    for e in range(foff[x], foff[x + 1]):
        u = v & bits[tok[e]]
        v = (v + u) | (v - u)
    return _popcount(~v)


@_inline
def _pattern(s: int, foff: np.ndarray, tok: np.ndarray, pmrow: np.ndarray, pm: np.ndarray) -> np.ndarray:
    """Match bits of slot s's tokens: row pmrow[t] holds, per 64-bit word, the positions where token t is
    (pmrow is -1 for every other token). Written into `pm` (all zero) or a larger zeroed copy, returned;
    `_forget` zeroes it again."""
    m = foff[s + 1] - foff[s]
    words = (m + 63) // 64
    if pm.shape[0] < m or pm.shape[1] < words:
        pm = np.zeros((max(m, 2 * pm.shape[0]), max(words, pm.shape[1])), np.uint64)
    rows = 0
    for e in range(m):
        t = tok[foff[s] + e]
        if pmrow[t] < 0:
            pmrow[t] = rows
            rows += 1
        pm[pmrow[t], e >> 6] |= np.uint64(1) << np.uint64(e & 63)
    return pm


@_inline
def _forget(s: int, foff: np.ndarray, tok: np.ndarray, pmrow: np.ndarray, pm: np.ndarray) -> None:
    for e in range(foff[s], foff[s + 1]):
        row = pmrow[tok[e]]
        if row >= 0:
            pm[row, :] = 0
            pmrow[tok[e]] = -1


@_inline
def _lcs(pm: np.ndarray, pmrow: np.ndarray, words: int, x: int, foff: np.ndarray, tok: np.ndarray) -> int:
    """LCS of the pattern in pm/pmrow (`words` 64-bit words, a pattern of more than 64 tokens) and slot x's
    tokens, bit-parallel: V' = (V + (V & M)) | (V & ~M), LCS = the zero bits of V."""
    vs = np.full(words, _ONES)
    for e in range(foff[x], foff[x + 1]):
        row = pmrow[tok[e]]
        if row < 0:  # no match: V & M = 0 leaves V as it is
            continue
        carry = np.uint64(0)
        for w in range(words):
            s = vs[w]
            u = s & pm[row, w]
            t = s + carry
            c1 = t < carry
            r = t + u
            carry = np.uint64(1) if (c1 or r < u) else np.uint64(0)
            vs[w] = r | (s - u)
    zeros = 0
    for w in range(words):
        zeros += _popcount(~vs[w])
    return zeros


@njit(cache=True, nogil=True)
def prefixes(
    slots: np.ndarray, plen: np.ndarray, lens: np.ndarray, foff: np.ndarray, flat: np.ndarray,
    rank: np.ndarray, shift: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(rptr, features): row r holds the plen[r] rarest features of slots[r] (rarest first), at
    features[rptr[r]:rptr[r + 1]]. `rank + shift` is non-negative and below 2**31."""
    rptr = np.zeros(len(slots) + 1, np.int64)
    for r in range(len(slots)):
        rptr[r + 1] = rptr[r] + plen[r]
    out = np.empty(rptr[-1], np.int32)
    keys = np.empty(64, np.int64)
    for r in range(len(slots)):
        p = plen[r]
        if p == 0:
            continue
        s = slots[r]
        m = lens[s]
        if m > len(keys):
            keys = np.empty(2 * m, np.int64)
        for e in range(m):
            f = flat[foff[s] + e]
            keys[e] = ((rank[f] + shift) << 32) | f
        ordered = np.sort(keys[:m])
        for e in range(p):
            out[rptr[r] + e] = ordered[e] & 0xFFFFFFFF
    return rptr, out


@njit(cache=True, nogil=True)
def _need(level: float, a: int, b: int, eps: float) -> int:
    """ceil(level * (a + b) / 2 - eps), at least 1: the same float expression `rouge.py` uses."""
    v = math.ceil(level * float(a + b) / 2.0 - eps)
    return max(1, int(v))


@njit(cache=True, nogil=True)
def _last_fit(level: float, a: int, low: int, high: int, most: int, eps: float) -> int:
    """The largest b in [low, high] with need(a, b) <= most (need grows with b), or low - 1 if none."""
    lo, hi = low - 1, high  # need(a, lo) <= most holds for lo = low - 1 by convention
    while lo < hi:
        mid = hi - (hi - lo) // 2
        if _need(level, a, mid, eps) <= most:
            lo = mid
        else:
            hi = mid - 1
    return lo


@njit(cache=True, nogil=True)
def counts(values: np.ndarray, stop: int, size: int) -> np.ndarray:
    """How often each of 0..size-1 occurs in values[:stop]. `np.bincount` first copies int32 values to int64;
    on 7.7K repeats of one text that made the rarity reorder 4x slower."""
    out = np.zeros(size, np.int64)
    for e in range(stop):
        out[values[e]] += 1
    return out


@njit(cache=True, nogil=True)
def postings(pslot: np.ndarray, pfeat: np.ndarray, lens: np.ndarray, nf: int) -> tuple[np.ndarray, ...]:
    """Prefix entries (slot, feature) as feature -> slots, each feature's slots in ascending length (so a
    probe binary-searches the lengths a partner may have): (indptr, slots, their lengths). Two counting
    sorts, by length and then stably by feature: linear, where numpy's stable argsort of a combined key took
    nearly half of 50K instructions' time."""
    n = len(pslot)
    longest = 0
    for e in range(n):
        longest = max(longest, lens[pslot[e]])
    at = np.zeros(longest + 2, np.int64)
    for e in range(n):
        at[lens[pslot[e]] + 1] += 1
    for b in range(longest + 1):
        at[b + 1] += at[b]
    by_length = np.empty(n, np.int64)
    for e in range(n):
        b = lens[pslot[e]]
        by_length[at[b]] = e
        at[b] += 1
    indptr = np.zeros(nf + 1, np.int64)
    indptr[1:] = np.cumsum(counts(pfeat, n, nf))
    fill = indptr[:nf].copy()
    slots = np.empty(n, pslot.dtype)
    lengths = np.empty(n, lens.dtype)
    for e in by_length:
        f = pfeat[e]
        slots[fill[f]] = pslot[e]
        lengths[fill[f]] = lens[pslot[e]]
        fill[f] += 1
    return indptr, slots, lengths


@njit(cache=True, nogil=True)
def merged(
    iptr: np.ndarray, islot: np.ndarray, ilen: np.ndarray, pslot: np.ndarray, pfeat: np.ndarray,
    lens: np.ndarray, stop: int, nf: int,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """`postings` of the entries [0, stop), from those of [0, len(islot)) and the entries after them: the new
    entries are sorted by (feature, length) and merged into their features' runs, older entries first among
    equal lengths (the order `postings`' stable sorts give); the runs in between move as whole blocks. Copying
    blocks costs a few times less than `postings`' scattered writes, which took 14% of 200K instructions."""
    start, old = len(islot), len(iptr) - 1
    m = stop - start
    keys = np.empty(m, np.int64)
    for e in range(m):
        keys[e] = (np.int64(pfeat[start + e]) << 32) | lens[pslot[start + e]]
    order = np.argsort(keys, kind="mergesort") + start  # stable: equal keys keep entry order
    indptr = np.zeros(nf + 1, np.int64)
    indptr[1 : old + 1] = np.diff(iptr)
    for e in range(start, stop):
        indptr[pfeat[e] + 1] += 1
    indptr = np.cumsum(indptr)
    slots = np.empty(stop, islot.dtype)
    lengths = np.empty(stop, ilen.dtype)
    src = dst = 0  # next old entry to copy, next place to write
    e = 0
    while e < m:
        f = pfeat[order[e]]
        run, end = (iptr[f], iptr[f + 1]) if f < old else (start, start)
        slots[dst : dst + run - src] = islot[src:run]  # the runs of features before f
        lengths[dst : dst + run - src] = ilen[src:run]
        dst += run - src
        while run < end or (e < m and pfeat[order[e]] == f):
            x = pslot[order[e]] if e < m and pfeat[order[e]] == f else -1
            if x < 0 or (run < end and ilen[run] <= lens[x]):
                slots[dst], lengths[dst] = islot[run], ilen[run]
                run += 1
            else:
                slots[dst], lengths[dst] = x, lens[x]
                e += 1
            dst += 1
        src = run
    slots[dst:] = islot[src:]
    lengths[dst:] = ilen[src:]
    return indptr, slots, lengths


@njit(cache=True, nogil=True)
def link(jhead: np.ndarray, jnext: np.ndarray, pfeat: np.ndarray, start: int, stop: int) -> None:
    """Chain prefix entries start..stop-1 onto their features' recent lists (entry e of feature f: jhead[f],
    then jnext[e] down to -1); adding entries costs their number, never the number of features."""
    for e in range(start, stop):
        f = pfeat[e]
        jnext[e] = jhead[f]
        jhead[f] = e


@njit(cache=True, nogil=True)
def probe(
    lo: int,
    hi: int,
    plen: np.ndarray,
    rank: np.ndarray,
    shift: int,
    iptr: np.ndarray,
    islot: np.ndarray,
    ilen: np.ndarray,
    jhead: np.ndarray,
    jnext: np.ndarray,
    pslot: np.ndarray,
    lens: np.ndarray,
    flat: np.ndarray,
    foff: np.ndarray,
    tok: np.ndarray,
    bmin: np.ndarray,
    bmax: np.ndarray,
    level: float,
    k: int,
    eps: float,
    mark: np.ndarray,
    count: np.ndarray,
    pmrow: np.ndarray,
    bits: np.ndarray,
    same: np.ndarray,
    alive: np.ndarray,
    last_alive: int,
    dbest: np.ndarray,
    dscore: np.ndarray,
    best: np.ndarray,
    score: np.ndarray,
) -> None:
    """Row r (slot lo + r): its best admitted slot x < lo + r scoring >= level into best[r] and score[r]
    (ties: the smallest x; -1 and -1.0 if none). Every admitted slot is below lo; the latest is last_alive.

    A row probes with its plen[a] rarest features (`rank + shift`, non-negative and below 2**31: position in
    the rarity order), rarest first; or, when the posting lists of all its features are short (few admitted
    texts, as on a near-copy stream), with all its features in any order, which skips the sort and is just as
    exact (they hold its prefix, so a pair shares at least as many; whether the lists are short is judged by
    the cached ones). The admitted prefixes are in two posting structures, feature -> slots: iptr/islot
    (each feature's slots in ascending length ilen) and the recent entries, chained per feature (jhead[f],
    then jnext[e], entry e being slot pslot[e]); a slot's prefix lies wholly in one of them. A partner of a
    length-a text has a length in [bmin[a], bmax[a]] (the length bound). `mark` (bool per feature), `count`
    (int32 per slot), `pmrow` (-1 per token) and `bits` (0 per token) are left as they were found.

    A row whose text repeats slot s = same[y] exactly starts from what s found: a row of this block copies its
    result (same admitted slots); an admitted s scores 1.0, so it is the best unless s's own best (dbest[s],
    dscore[s], known once s was decided) scored 1.0 and is earlier; a rejected s leaves only the slots admitted
    after it to compare, none when last_alive < s.
    """
    touched = np.empty(1024, np.int64)
    cand = np.empty(64, np.int64)
    upper = np.empty(64, np.float64)
    keys = np.empty(256, np.int64)
    pm = np.zeros((256, 4), np.uint64)
    order = np.empty(0, np.int64)
    for r in range(hi - lo):
        best[r] = -1
        score[r] = -1.0
        y = lo + r
        a = lens[y]
        low, high = bmin[a], bmax[a]
        p = plen[a]
        if p == 0:
            continue
        after = -1  # only admitted slots x > after are compared
        s = same[y]
        if s >= lo:
            best[r], score[r] = best[s - lo], score[s - lo]
            continue
        if s >= 0 and dbest[s] >= -1:
            if alive[s]:
                if dbest[s] < 0 or dscore[s] < 1.0:
                    best[r], score[r] = s, 1.0
                else:
                    best[r], score[r] = dbest[s], dscore[s]
                continue
            best[r], score[r] = dbest[s], dscore[s]
            if last_alive < s:
                continue
            after = s
        # All its features when their posting lists are short, else its sorted prefix.
        if a > len(keys):
            keys = np.empty(2 * a, np.int64)
        entries = 0
        whole = True
        for q in range(a):
            f = flat[foff[y] + q]
            keys[q] = f
            if f + 1 < len(iptr):
                entries += iptr[f + 1] - iptr[f]
        if entries > 4 * a + 64:
            whole = False
            for q in range(a):
                f = keys[q]
                keys[q] = ((rank[f] + shift) << 32) | f
            keys[:a].sort()
        else:
            p = a
        nt = 0
        for j in range(p):
            f = keys[j] & 0xFFFFFFFF
            # y's feature at prefix position j only matters to partners whose own need leaves it in y's
            # shortened prefix a - need + k (the lemma holds per pair): need(a, b) <= a - j + k - 1, which
            # caps b (need grows with b); the cap only falls as j grows.
            if not whole and _need(level, a, high, eps) > a - j + k - 1:
                high = _last_fit(level, a, low, high, a - j + k - 1, eps)
            if high < low:
                break
            # the cached postings, then the recent chain; each admitted slot x < y in the window is touched
            start, stop = 0, 0
            if f + 1 < len(iptr):
                start, stop = iptr[f], iptr[f + 1]
                if stop - start > 16:  # a long list: its length window by binary search
                    start = iptr[f] + np.searchsorted(ilen[iptr[f] : iptr[f + 1]], low)
                    stop = iptr[f] + np.searchsorted(ilen[iptr[f] : iptr[f + 1]], high, side="right")
            # Each entry is written to `touched` and kept only on its slot's first touch: no branch on
            # that (on a near-copy stream a quarter of the entries are first touches, in no pattern a branch
            # predictor could follow).
            if nt + stop - start > len(touched):
                touched = _grow(touched, nt + stop - start)
            for e in range(start, stop):
                x = islot[e]
                b = ilen[e]
                if x <= after or b < low or b > high:
                    continue
                touched[nt] = x
                nt += count[x] == 0
                count[x] += 1
            chain = jhead[f] if f < len(jhead) else -1
            while chain >= 0:
                x = pslot[chain]
                chain = jnext[chain]
                b = lens[x]
                if x <= after or b < low or b > high:
                    continue
                if nt == len(touched):
                    touched = _grow(touched, nt + 1)
                touched[nt] = x
                nt += count[x] == 0
                count[x] += 1
        if nt == 0:
            continue
        # need grows with b, so no partner needs fewer shared features than the shortest one: a slot touched
        # fewer times is dropped before its length is read (most touched slots of a large pool are)
        fewest = min(k, _need(level, a, low, eps))
        # Up to 64 tokens the LCS state is one 64-bit word, so an exact LCS costs about what the overlap bound
        # would (a step per token of x): such a text's candidates get no overlap, only the count bound.
        short = a <= 64
        if not short:
            _mark(y, foff, flat, mark, True)
        nc, first = 0, -1
        for t in range(nt):
            x = touched[t]
            c = count[x]
            count[x] = 0
            if c < fewest:
                continue
            b = lens[x]
            nd = _need(level, a, b, eps)
            # probing with all its features, c is exactly how many of x's indexed ones y holds, and x has
            # b - plen[b] others: the overlap is at most their sum
            most = min(a, b, c + b - plen[b]) if whole else min(a, b)
            if nd > most or c < min(k, nd):
                continue
            if not short:
                most = _overlap(x, foff, flat, mark)
                if most < nd:
                    continue
            if nc == len(cand):
                cand, upper = _grow(cand, nc + 1), _grow(upper, nc + 1)
            cand[nc] = x
            upper[nc] = _fm(most, a, b)  # LCS <= most, and F grows with LCS
            if first < 0 or upper[nc] > upper[first]:
                first = nc
            nc += 1
        if not short:
            _mark(y, foff, flat, mark, False)
        if nc == 0:
            continue
        # Exact LCS, best upper bound first (a long text's candidates sorted; a short text's best one swapped to
        # the front, the rest as found): a candidate whose bound cannot beat the best so far is skipped, so the
        # order changes the work, never the result.
        words = (a + 63) // 64
        top, top_x = score[r], best[r]
        if short:
            _short_bits(y, foff, tok, bits, True)
            cand[0], cand[first] = cand[first], cand[0]
            upper[0], upper[first] = upper[first], upper[0]
        else:
            pm = _pattern(y, foff, tok, pmrow, pm)
            order = np.argsort(-upper[:nc])
        for step in range(nc):
            e = step if short else order[step]
            x = cand[e]
            if upper[e] < top or (upper[e] == top and x > top_x):
                continue
            lcs = _short_lcs(bits, x, foff, tok) if short else _lcs(pm, pmrow, words, x, foff, tok)
            f = _fm(lcs, a, lens[x])
            if f >= level and (f > top or (f == top and x < top_x)):
                top, top_x = f, x
        if short:
            _short_bits(y, foff, tok, bits, False)
        else:
            _forget(y, foff, tok, pmrow, pm)
        best[r] = top_x
        score[r] = top


@njit(cache=True, nogil=True)
def reverse(
    x: int,
    y0: int,
    y1: int,
    base: int,
    lens: np.ndarray,
    flat: np.ndarray,
    foff: np.ndarray,
    tok: np.ndarray,
    bmin: np.ndarray,
    bmax: np.ndarray,
    level: float,
    eps: float,
    mark: np.ndarray,
    pmrow: np.ndarray,
    bits: np.ndarray,
    best: np.ndarray,
    score: np.ndarray,
) -> None:
    """A newly admitted slot x against the probed slots y0..y1-1 (all after x): where x scores >= level and
    more than slot y's best so far (best[y - base], score[y - base]), x becomes it. x is the latest admitted
    slot, so on a tie the earlier neighbour stays. The length bound and the multiset overlap go first."""
    b = lens[x]
    low, high = bmin[b], bmax[b]  # need is symmetric in a and b, so is the window
    if low > high:
        return
    _mark(x, foff, flat, mark, True)
    short, words = b <= 64, (b + 63) // 64
    pm = np.zeros((0 if short else b, words), np.uint64)
    built = False
    for y in range(y0, y1):
        a = lens[y]
        if a < low or a > high:
            continue
        nd = _need(level, a, b, eps)
        if nd > min(a, b):
            continue
        overlap = _overlap(y, foff, flat, mark)
        if overlap < nd:
            continue
        now = score[y - base]
        if _fm(overlap, a, b) <= now:
            continue
        if not built:
            if short:
                _short_bits(x, foff, tok, bits, True)
            else:
                pm = _pattern(x, foff, tok, pmrow, pm)
            built = True
        lcs = _short_lcs(bits, y, foff, tok) if short else _lcs(pm, pmrow, words, y, foff, tok)
        f = _fm(lcs, a, b)
        if f >= level and f > now:
            best[y - base] = x
            score[y - base] = f
    _mark(x, foff, flat, mark, False)
    if built and short:
        _short_bits(x, foff, tok, bits, False)
    elif built:
        _forget(x, foff, tok, pmrow, pm)
