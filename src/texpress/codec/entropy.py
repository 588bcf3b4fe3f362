"""Bounds-safe rANS coding of the latents on CompressAI's coder (docs/format.md, "Entropy coding").

CompressAI's C++ decoder has no bounds checks. It reads one 32-bit word per symbol at most, except
in its escape ("bypass") path: a symbol decoded as the last slot of its table is followed by a
count of 4-bit groups that the stream itself sets, so a crafted stream can make it read any
distance past the end of its buffer. Here the decoder never takes that path:

- Every table is passed with one extra column and its size plus one, so the escape slot is an
  ordinary symbol (the decoder's bypass sentinel becomes the unreachable slot after it). Each symbol
  then reads at most one word, and zero padding of 4 bytes per symbol (plus the 8-byte state)
  bounds every read, whatever the bytes.
- Format 2 codes an out-of-range value as that escape slot and stores the value itself in a side
  list of zigzag varints, so the decoder only substitutes values it has fully parsed.
- Format 1 streams (CompressAI's own bypass coding) decode the same fast way when they contain no
  escape; when they do, a checked pure-Python decoder of CompressAI's exact algorithm takes over,
  refusing reads past the end and escape counts no encoder can produce.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
from compressai.ans import RansDecoder, RansEncoder

from texpress.errors import BitstreamError

PRECISION = 16
RANS_L = 1 << 31
BYPASS_BITS = 4
BYPASS_MAX = (1 << BYPASS_BITS) - 1
MAX_BYPASS_GROUPS = 8  # 32-bit raw values: CompressAI's encoder never writes more groups
VARINT_MAX_BYTES = 5  # zigzag of an int32


@dataclass(frozen=True)
class Tables:
    """One entropy model's CDF tables, ready for the coder.

    cdfs_ext has one extra column and is passed with sizes_ext = sizes + 1 (see the module doc); its
    rows stop there, since CompressAI's coder converts every row it is given on each call."""

    cdfs: list[list[int]]  # rows as CompressAI built them (for the checked format-1 decoder)
    cdfs_ext: list[list[int]]
    sizes: np.ndarray  # int64, CompressAI's cdf lengths
    offsets: np.ndarray  # int64

    @classmethod
    def from_entropy_model(cls, model) -> "Tables":
        cdf = model._quantized_cdf.cpu().numpy().astype(np.int64)
        sizes = model._cdf_length.reshape(-1).cpu().numpy().astype(np.int64)
        offsets = model._offset.reshape(-1).cpu().numpy().astype(np.int64)
        ext = np.concatenate([cdf, np.full((cdf.shape[0], 1), 1 << PRECISION, np.int64)], axis=1)
        rows = [row[: int(n)].tolist() for row, n in zip(cdf, sizes)]
        # each row only as far as the coder reads it (sizes + 1 entries), not padded to the widest
        return cls(rows, [row[: int(n) + 1].tolist() for row, n in zip(ext, sizes)], sizes, offsets)

    @property
    def escape_slot(self) -> np.ndarray:
        return self.sizes - 2


def encode(symbols: np.ndarray, indexes: np.ndarray, tables: Tables) -> tuple[bytes, bytes]:
    """Symbols (ints) to (rANS string, escape list) in format 2: no bypass coding."""
    symbols = np.asarray(symbols, np.int64).reshape(-1)
    indexes = np.asarray(indexes, np.int64).reshape(-1)
    offsets, slot = tables.offsets[indexes], tables.escape_slot[indexes]
    values = symbols - offsets
    escaped = (values < 0) | (values >= slot)
    coded = np.where(escaped, slot + offsets, symbols)
    string = RansEncoder().encode_with_indexes(coded.tolist(), *used_tables(indexes, tables))
    return string, varint_encode(symbols[escaped])


def used_tables(indexes: np.ndarray, tables: Tables) -> tuple[list[int], list[list[int]], list[int], list[int]]:
    """(indexes into the used rows, those rows of cdfs_ext, their sizes + 1, their offsets).

    The coder reads a symbol's table by its index alone, so handing it only the rows a stream uses,
    renumbered, codes and decodes exactly the same symbols and bytes; it saves converting the unused
    rows (most of a 256-row Gaussian table) to C++ vectors on every call."""
    indexes = np.asarray(indexes, np.int64).reshape(-1)
    present = np.bincount(indexes, minlength=len(tables.cdfs_ext)) > 0
    used = np.flatnonzero(present)
    local = (np.cumsum(present) - 1)[indexes]
    return (local.tolist(), [tables.cdfs_ext[k] for k in used.tolist()], (tables.sizes[used] + 1).tolist(),
            tables.offsets[used].tolist())


def _decode_no_bypass(string: bytes, indexes: np.ndarray, tables: Tables) -> np.ndarray:
    """CompressAI's decoder with the escape path unreachable: reads stay inside the padding."""
    padded = string + bytes(4 * len(indexes) + 8)
    out = RansDecoder().decode_with_indexes(padded, *used_tables(indexes, tables))
    return np.asarray(out, np.int64)


def decode(string: bytes, escapes: bytes, indexes: np.ndarray, tables: Tables) -> np.ndarray:
    """Format 2: decode, then put the escaped values from the side list in their places."""
    indexes = np.asarray(indexes, np.int64).reshape(-1)
    out = _decode_no_bypass(string, indexes, tables)
    escaped = out - tables.offsets[indexes] == tables.escape_slot[indexes]
    out[escaped] = varint_decode(escapes, int(escaped.sum()))
    return out


def decode_v1(string: bytes, indexes: np.ndarray, tables: Tables) -> np.ndarray:
    """Format 1 (CompressAI's bypass coding): the fast path when the stream has no escape, which
    then decodes exactly as CompressAI would; else the checked decoder."""
    indexes = np.asarray(indexes, np.int64).reshape(-1)
    out = _decode_no_bypass(string, indexes, tables)
    if not np.any(out - tables.offsets[indexes] == tables.escape_slot[indexes]):
        return out
    return decode_checked(string, indexes, tables)


def decode_checked(string: bytes, indexes: np.ndarray, tables: Tables) -> np.ndarray:
    """CompressAI's rANS decode_with_indexes, bypass path included, with every read bounds-checked."""
    words = np.frombuffer(string + bytes(-len(string) % 4), "<u4").tolist()
    if len(words) < 2:
        raise BitstreamError("corrupt .tpx file (entropy-coded string too short)")
    state = [words[0] | (words[1] << 32), 2]  # rANS state, next word

    def renormalise(x: int) -> int:
        if x < RANS_L:
            if state[1] >= len(words):
                raise BitstreamError("corrupt .tpx file (entropy-coded string overrun)")
            x = (x << 32) | words[state[1]]
            state[1] += 1
        return x

    def get_bits() -> int:
        x = state[0]
        state[0] = renormalise(x >> BYPASS_BITS)
        return x & BYPASS_MAX

    cdfs, slots, offsets = tables.cdfs, tables.escape_slot.tolist(), tables.offsets.tolist()
    mask, m64 = (1 << PRECISION) - 1, (1 << 64) - 1
    out = [0] * len(indexes)
    for i, idx in enumerate(indexes.tolist()):
        cdf, x = cdfs[idx], state[0]
        cum = x & mask
        s = bisect_right(cdf, cum) - 1
        state[0] = renormalise(((cdf[s + 1] - cdf[s]) * (x >> PRECISION) + cum - cdf[s]) & m64)
        value = s
        if s == slots[idx]:
            val = get_bits()
            groups = val
            while val == BYPASS_MAX:
                val = get_bits()
                groups += val
                if groups > MAX_BYPASS_GROUPS:
                    raise BitstreamError("corrupt .tpx file (escape longer than 32 bits)")
            if groups > MAX_BYPASS_GROUPS:
                raise BitstreamError("corrupt .tpx file (escape longer than 32 bits)")
            raw = 0
            for j in range(groups):
                raw |= get_bits() << (BYPASS_BITS * j)
            if raw >= 1 << 31:
                raise BitstreamError("corrupt .tpx file (escape value out of range)")
            value = -(raw >> 1) - 1 if raw & 1 else (raw >> 1) + s
        out[i] = value + offsets[idx]
    return np.asarray(out, np.int64)


def varint_encode(values: np.ndarray) -> bytes:
    """int32 values as zigzag LEB128 varints, vectorised."""
    v = np.asarray(values, np.int64)
    if v.size == 0:
        return b""
    if v.min() < -(1 << 31) or v.max() >= 1 << 31:
        raise ValueError("escape value outside int32")
    u = ((v << 1) ^ (v >> 63)).astype(np.uint64)
    lengths = np.maximum(1, (np.floor(np.log2(np.maximum(u, 1).astype(np.float64))).astype(np.int64) // 7) + 1)
    k = np.arange(VARINT_MAX_BYTES)
    groups = ((u[:, None] >> (7 * k).astype(np.uint64)) & np.uint64(0x7F)).astype(np.uint8)
    groups |= np.where(k[None, :] < lengths[:, None] - 1, 0x80, 0).astype(np.uint8)
    return groups[k[None, :] < lengths[:, None]].tobytes()


def varint_decode(blob: bytes, count: int) -> np.ndarray:
    """Exactly `count` zigzag varints of at most 5 bytes filling `blob`, else a BitstreamError."""
    b = np.frombuffer(blob, np.uint8)
    ends = np.flatnonzero(b < 0x80)
    if len(ends) != count or (count and ends[-1] != len(b) - 1) or (not count and len(b)):
        raise BitstreamError(f"corrupt .tpx file (escape list does not match the stream: {count} expected)")
    if not count:
        return np.zeros(0, np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > VARINT_MAX_BYTES:
        raise BitstreamError("corrupt .tpx file (escape value too long)")
    u = np.zeros(count, np.int64)
    for k in range(VARINT_MAX_BYTES):
        sel = lengths > k
        u[sel] |= (b[starts[sel] + k].astype(np.int64) & 0x7F) << (7 * k)
    if u.max() >= 1 << 32:
        raise BitstreamError("corrupt .tpx file (escape value out of range)")
    return (u >> 1) ^ -(u & 1)
