"""The candidate step of the ROUGE-L index, compiled: which (block text, admitted text) pairs can reach a level.

A pair is a candidate when it passes three exact filters (see `rouge.py`'s module doc): the length bound
need(a, b) <= min(a, b), at least min(K, need) shared prefix features, and a multiset overlap of at least
need. Done with numpy and scipy, the shared-prefix counts came from a sparse product whose every nonzero
was materialized, then every surviving pair gathered the other text's features again: both costs grew with
the square of the pool on realistic text (50K: 7 s, 200K: 50 s). Here one compiled loop per block text walks
the posting lists of its prefix features, counts per admitted text in a dense array, and checks each touched
text's bounds and overlap at once (a dense marker of the block text's features), so nothing is
materialized but the candidates.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


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


def postings(pslot: np.ndarray, pfeat: np.ndarray, lens: np.ndarray, nf: int) -> tuple[np.ndarray, ...]:
    """Prefix entries (slot, feature) as feature -> slots, each feature's slots in ascending length (so a
    probe binary-searches the lengths a partner may have): (indptr, slots, their lengths)."""
    ln = lens[pslot]
    order = np.argsort(pfeat.astype(np.int64) * (int(ln.max(initial=0)) + 1) + ln, kind="stable")
    indptr = np.zeros(nf + 1, np.int64)
    np.cumsum(np.bincount(pfeat, minlength=nf), out=indptr[1:])
    return indptr, pslot[order], ln[order]


@njit(cache=True, nogil=True)
def candidates(
    lo: int,
    rptr: np.ndarray,
    rfeat: np.ndarray,
    iptr: np.ndarray,
    islot: np.ndarray,
    ilen: np.ndarray,
    jptr: np.ndarray,
    jslot: np.ndarray,
    lens: np.ndarray,
    flat: np.ndarray,
    foff: np.ndarray,
    bmin: np.ndarray,
    bmax: np.ndarray,
    level: float,
    k: int,
    eps: float,
    mark: np.ndarray,
    count: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(block slot y, admitted slot x < y, need) of every pair passing the three filters.

        Row r (slot lo + r) has prefix features rfeat[rptr[r]:rptr[r + 1]]. The admitted prefixes are two
        posting structures, feature -> slots: iptr/islot (each feature's slots in ascending length ilen) and
        jptr/jslot (unordered, the few recent ones); a slot's prefix lies wholly in one of them. A partner of
        a length-a text has a length in [bmin[a], bmax[a]] (the length bound); the features of a row come in rarity
    order (its prefix positions). `mark` (bool per feature) and
        `count` (int32 per slot) are all zero on entry and on exit.
    """
    cap = 1024
    ys = np.empty(cap, np.int64)
    xs = np.empty(cap, np.int64)
    needs = np.empty(cap, np.int64)
    n = 0
    touched = np.empty(1024, np.int64)
    for r in range(len(rptr) - 1):
        y = lo + r
        a = lens[y]
        low, high = bmin[a], bmax[a]
        nt = 0
        for q in range(rptr[r], rptr[r + 1]):
            f = rfeat[q]
            # y's feature at prefix position j only matters to partners whose own need leaves it in y's
            # shortened prefix a - need + k (the lemma holds per pair): need(a, b) <= a - j + k - 1, which
            # caps b (need grows with b); the cap only falls as j grows.
            j = q - rptr[r]
            if _need(level, a, high, eps) > a - j + k - 1:
                high = _last_fit(level, a, low, high, a - j + k - 1, eps)
            if high < low:
                break
            for part in range(2):
                if part == 0:
                    if f + 1 >= len(iptr):
                        continue
                    start = iptr[f] + np.searchsorted(ilen[iptr[f] : iptr[f + 1]], low)
                    stop = iptr[f] + np.searchsorted(ilen[iptr[f] : iptr[f + 1]], high, side="right")
                    slots = islot
                else:
                    if f + 1 >= len(jptr):
                        continue
                    start, stop = jptr[f], jptr[f + 1]
                    slots = jslot
                for e in range(start, stop):
                    x = slots[e]
                    if x >= y:
                        continue
                    if part == 1:
                        b = lens[x]
                        if b < low or b > high:
                            continue
                    if count[x] == 0:
                        if nt == len(touched):
                            grown = np.empty(2 * nt, np.int64)
                            grown[:nt] = touched
                            touched = grown
                        touched[nt] = x
                        nt += 1
                    count[x] += 1
        if nt == 0:
            continue
        for q in range(foff[y], foff[y + 1]):
            mark[flat[q]] = True
        for t in range(nt):
            x = touched[t]
            c = count[x]
            count[x] = 0
            b = lens[x]
            nd = _need(level, a, b, eps)
            if nd > min(a, b) or c < min(k, nd):
                continue
            overlap = 0
            for q in range(foff[x], foff[x + 1]):
                if mark[flat[q]]:
                    overlap += 1
            if overlap < nd:
                continue
            if n == cap:
                cap *= 2
                ys2 = np.empty(cap, np.int64)
                xs2 = np.empty(cap, np.int64)
                nd2 = np.empty(cap, np.int64)
                ys2[:n] = ys
                xs2[:n] = xs
                nd2[:n] = needs
                ys, xs, needs = ys2, xs2, nd2
            ys[n] = y
            xs[n] = x
            needs[n] = nd
            n += 1
        for q in range(foff[y], foff[y + 1]):
            mark[flat[q]] = False
    return ys[:n], xs[:n], needs[:n]
