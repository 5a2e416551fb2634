"""Tokens and features of the ROUGE-L index, compiled: rouge-score's tokenizer over one byte buffer per batch.

In Python, tokenizing a batch cost more than every comparison on a near-duplicate stream (issue 12: one word
object and one dict lookup per token, then a sort to number repeats). Here one compiled pass walks the bytes,
finds the runs of [a-z0-9], looks each word up in a hash table that keeps its bytes (so a hash collision is
resolved by comparing them, never by guessing), and numbers repeats with a per-token counter.

The buffer holds each text lowercased by Python when it is not ASCII (`str.lower` is rouge-score's first
step, and lowering "İ" or the Kelvin sign yields ASCII letters) and as it is when it is (lowering ASCII is
A-Z to a-z, done here); every character left outside ASCII becomes "?", which is not in [a-z0-9]. Texts are
cut by their end offsets, never by a separator character, so any text, NUL bytes included, tokenizes alone.

Ids: a word gets a token number (dense, in order of first sight) and a feature id, and the k-th repeat of a
token within one text (k >= 1) is a feature of its own, so a text's features form a set whose overlap with
another's is the multiset overlap of their tokens. Token numbers and feature ids never change once given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# byte -> itself for [a-z0-9], its lowercase for [A-Z], 0 for every other byte
_CLASS = np.zeros(256, np.uint8)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789":
    _CLASS[_c] = _c
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _CLASS[_c] = _c + 32


def _larger(a: np.ndarray, size: int) -> np.ndarray:
    """A copy of `a` with room for at least `size` elements (twice its length if that is more)."""
    out = np.zeros(max(size, 2 * len(a)), a.dtype)
    out[: len(a)] = a
    return out


class Vocab:
    """Words and repeats seen so far; the arrays belong to the compiled `_encode`, which grows them."""

    def __init__(self) -> None:
        self.cells = np.full(1 << 10, -1, np.int64)  # open addressing: token number per cell, -1 empty
        self.hash = np.zeros(1 << 9, np.uint64)  # per token: its hash
        self.off = np.zeros((1 << 9) + 1, np.int64)  # per token: its bytes are data[off[t]:off[t + 1]]
        self.data = np.zeros(1 << 12, np.uint8)
        self.feature = np.zeros(1 << 9, np.int32)  # per token: the feature id of its first occurrence
        self.ntok = 0
        self.rkeys = np.full(1 << 10, -1, np.int64)  # (token << 32 | k) per cell, -1 empty
        self.rvals = np.zeros(1 << 10, np.int32)  # its feature id
        self.nrep = 0
        self.nf = 0  # feature ids in use
        self.count = np.zeros(1 << 9, np.int32)  # scratch: occurrences per token (zero between calls)

    def encode(
        self, texts: Sequence[str], tok: np.ndarray, feat: np.ndarray, at: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The texts' token numbers and feature ids, in text order, written into tok/feat (int32) from
        position `at` on: (tok, feat, token count per text), the arrays grown (copied) when they could be too
        short. Writing in place spares a copy of every token and the page faults of fresh arrays."""
        pieces = [t if t.isascii() else t.lower().encode("ascii", "replace").decode() for t in texts]
        buf = np.frombuffer("".join(pieces).encode(), np.uint8)
        ends = np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)))
        # a token takes a byte and ends at a non-word byte or at its text's end
        most = at + len(buf) // 2 + len(texts) + 1
        if len(tok) < most:
            tok, feat = _larger(tok, most), _larger(feat, most)
        out = _encode(
            buf, ends, _CLASS, self.cells, self.hash, self.off, self.data, self.feature, self.ntok,
            self.rkeys, self.rvals, self.nrep, self.nf, self.count, tok, feat, at,
        )  # fmt: skip
        lens = out[0]
        (self.cells, self.hash, self.off, self.data, self.feature, self.ntok) = out[1:7]
        (self.rkeys, self.rvals, self.nrep, self.nf, self.count) = out[7:]
        return tok, feat, lens

    def word(self, token: int) -> str:
        """Token number -> the word (for tests and debugging)."""
        return self.data[self.off[token] : self.off[token + 1]].tobytes().decode("ascii")


@njit(cache=True, nogil=True)
def _grow_i64(a: np.ndarray, size: int) -> np.ndarray:
    if size <= len(a):
        return a
    out = np.zeros(max(size, 2 * len(a)), np.int64)
    out[: len(a)] = a
    return out


@njit(cache=True, nogil=True)
def _grow_i32(a: np.ndarray, size: int) -> np.ndarray:
    if size <= len(a):
        return a
    out = np.zeros(max(size, 2 * len(a)), np.int32)
    out[: len(a)] = a
    return out


@njit(cache=True, nogil=True)
def _grow_u8(a: np.ndarray, size: int) -> np.ndarray:
    if size <= len(a):
        return a
    out = np.zeros(max(size, 2 * len(a)), np.uint8)
    out[: len(a)] = a
    return out


@njit(cache=True, nogil=True)
def _grow_u64(a: np.ndarray, size: int) -> np.ndarray:
    if size <= len(a):
        return a
    out = np.zeros(max(size, 2 * len(a)), np.uint64)
    out[: len(a)] = a
    return out


@njit(cache=True, nogil=True)
def _cell(h: np.uint64, mask: int) -> int:
    """Cell of a hash in a table of mask + 1 cells (Fibonacci hashing: the top bits of h * golden)."""
    return int((h * _GOLDEN) >> np.uint64(32)) & mask


@njit(cache=True, nogil=True)
def _rcell(key: int, mask: int) -> int:
    return int((np.uint64(key) * _GOLDEN) >> np.uint64(32)) & mask


# Bytes per chunk: tables are grown between chunks, never inside the hot loop (an array reassigned in a
# compiled loop costs reference counting on every turn: 4x slower on bench/filters.py's near-copy stream).
_CHUNK = 1 << 13


@njit(cache=True, nogil=True)
def _rehash(cells: np.ndarray, thash: np.ndarray, ntok: int, size: int) -> np.ndarray:
    """`cells` with at least `size` cells, every token placed again (a power of two)."""
    if size <= len(cells):
        return cells
    m = len(cells)
    while m < size:
        m *= 2
    cells = np.full(m, -1, np.int64)
    mask = m - 1
    for u in range(ntok):
        c = _cell(thash[u], mask)
        while cells[c] >= 0:
            c = (c + 1) & mask
        cells[c] = u
    return cells


@njit(cache=True, nogil=True)
def _rrehash(rkeys: np.ndarray, rvals: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    if size <= len(rkeys):
        return rkeys, rvals
    m = len(rkeys)
    while m < size:
        m *= 2
    keys, vals = np.full(m, -1, np.int64), np.zeros(m, np.int32)
    mask = m - 1
    for e in range(len(rkeys)):
        if rkeys[e] >= 0:
            c = _rcell(rkeys[e], mask)
            while keys[c] >= 0:
                c = (c + 1) & mask
            keys[c] = rkeys[e]
            vals[c] = rvals[e]
    return keys, vals


@njit(cache=True, nogil=True)
def _encode(
    buf, ends, cls, cells, thash, toff, data, tfeat, ntok, rkeys, rvals, nrep, nf, count, tok, feat, at
):  # noqa: ANN001, E501
    """Tokens and features of the texts ending at `ends` in `buf` into tok/feat from `at` (long enough),
    growing the tables it is given (module doc)."""
    n_texts = len(ends)
    lens = np.zeros(n_texts, np.int64)
    n, i = at, 0
    while i < n_texts:
        start = ends[i - 1] if i else 0
        j = i + 1
        while j < n_texts and ends[j] - start <= _CHUNK:
            j += 1
        room = (ends[j - 1] - start) // 2 + (j - i) + 1  # its tokens, so its new words or repeats, at most
        thash = _grow_u64(thash, ntok + room)
        toff = _grow_i64(toff, ntok + room + 1)
        tfeat = _grow_i32(tfeat, ntok + room)
        count = _grow_i32(count, ntok + room)
        data = _grow_u8(data, toff[ntok] + 2 * room)
        cells = _rehash(cells, thash, ntok, 2 * (ntok + room))
        rkeys, rvals = _rrehash(rkeys, rvals, 2 * (nrep + room))
        n, ntok, nrep, nf = _chunk(
            buf, ends, i, j, cls, cells, thash, toff, data, tfeat, ntok, rkeys, rvals, nrep, nf, count, tok,
            feat, lens, n,
        )  # fmt: skip
        i = j
    return lens, cells, thash, toff, data, tfeat, ntok, rkeys, rvals, nrep, nf, count


@njit(cache=True, nogil=True)
def _chunk(
    buf,
    ends,
    i0,
    i1,
    cls,
    cells,
    thash,
    toff,
    data,
    tfeat,
    ntok,
    rkeys,
    rvals,
    nrep,
    nf,
    count,
    tok,
    feat,
    lens,
    n,
):  # noqa: ANN001, E501
    """Texts i0..i1-1 into tok/feat/lens from position n; the tables have room for all their words."""
    cmask = len(cells) - 1
    rmask = len(rkeys) - 1
    for i in range(i0, i1):
        p = ends[i - 1] if i else 0
        end = ends[i]
        first = n
        while p < end:
            if cls[buf[p]] == 0:
                p += 1
                continue
            q = p
            h = _FNV_OFFSET
            while q < end and cls[buf[q]] != 0:
                h = (h ^ np.uint64(cls[buf[q]])) * _FNV_PRIME
                q += 1
            # find the word: equal hash, then equal bytes
            c = _cell(h, cmask)
            t = -1
            while cells[c] >= 0:
                u = cells[c]
                if thash[u] == h and toff[u + 1] - toff[u] == q - p:
                    base = toff[u]
                    same = True
                    for e in range(q - p):
                        if data[base + e] != cls[buf[p + e]]:
                            same = False
                            break
                    if same:
                        t = u
                        break
                c = (c + 1) & cmask
            if t < 0:  # a new word
                t = ntok
                ntok += 1
                base = toff[t]
                for e in range(q - p):
                    data[base + e] = cls[buf[p + e]]
                toff[t + 1] = base + q - p
                thash[t] = h
                tfeat[t] = nf
                nf += 1
                cells[c] = t
            tok[n] = t
            n += 1
            p = q
        # features: a token's k-th repeat in this text is (token, k), looked up or given the next id
        for e in range(first, n):
            t = tok[e]
            k = count[t]
            count[t] = k + 1
            if k == 0:
                feat[e] = tfeat[t]
                continue
            key = (np.int64(t) << 32) | k
            c = _rcell(key, rmask)
            while rkeys[c] >= 0 and rkeys[c] != key:
                c = (c + 1) & rmask
            if rkeys[c] < 0:
                rkeys[c] = key
                rvals[c] = nf
                nf += 1
                nrep += 1
            feat[e] = rvals[c]
        for e in range(first, n):
            count[tok[e]] = 0
        lens[i] = n - first
    return n, ntok, nrep, nf
