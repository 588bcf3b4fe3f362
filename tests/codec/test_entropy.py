"""Entropy coding on CompressAI's rANS coder without its unchecked escape path (codec.entropy)."""

import numpy as np
import pytest
from compressai.ans import RansDecoder, RansEncoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from texpress.codec import entropy
from texpress.errors import BitstreamError


@pytest.fixture(scope="module")
def tables(codec):
    return codec.tables[1]  # the Gaussian conditional's 256 scale tables


def symbols_with_escapes(tables, n=4000, seed=0):
    """Indexes over every table and values mostly inside, some far outside, each table's range."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(tables.sizes), n)
    lo, hi = tables.offsets[idx], tables.offsets[idx] + tables.escape_slot[idx]
    sym = rng.integers(lo, hi)
    far = rng.random(n) < 0.03
    sym[far] = rng.choice([-1, 1], far.sum()) * rng.integers(1, 2**26, far.sum())  # CompressAI's encoder loops forever from 2^28
    sym[rng.random(n) < 0.01] = (hi[0] if n else 0)  # the escape slot's own value
    return sym, idx


def compressai_encode(sym, idx, t):
    return RansEncoder().encode_with_indexes(sym.tolist(), idx.tolist(), [r + [0] * 2 for r in t.cdfs],
                                             t.sizes.tolist(), t.offsets.tolist())


def test_format_2_round_trip_with_escapes(tables):
    sym, idx = symbols_with_escapes(tables)
    string, escapes = entropy.encode(sym, idx, tables)
    assert len(escapes) > 0
    assert np.array_equal(entropy.decode(string, escapes, idx, tables), sym)


def test_format_1_streams_decode_exactly_as_compressai_does(tables):
    sym, idx = symbols_with_escapes(tables)
    string = compressai_encode(sym, idx, tables)
    reference = RansDecoder().decode_with_indexes(string, idx.tolist(), [r + [0] * 2 for r in tables.cdfs],
                                                   tables.sizes.tolist(), tables.offsets.tolist())
    assert np.array_equal(reference, sym)
    assert np.array_equal(entropy.decode_checked(string, idx, tables), sym)
    assert np.array_equal(entropy.decode_v1(string, idx, tables), sym)
    plain = sym.copy()
    plain[(sym - tables.offsets[idx] < 0) | (sym - tables.offsets[idx] >= tables.escape_slot[idx])] = tables.offsets[idx][0]
    plain_string = compressai_encode(plain, idx, tables)  # no escape: the fast path alone
    assert np.array_equal(entropy.decode_v1(plain_string, idx, tables), plain)


def test_escape_counts_no_encoder_writes_and_overruns_are_refused(tables):
    idx = np.full(50, len(tables.sizes) - 1)
    with pytest.raises(BitstreamError, match="escape|overrun"):
        entropy.decode_checked(b"\xff" * 4096, idx, tables)
    with pytest.raises(BitstreamError, match="too short"):
        entropy.decode_checked(b"\x01\x02", idx, tables)
    sym, idx = symbols_with_escapes(tables, 500)
    with pytest.raises(BitstreamError, match="overrun"):
        entropy.decode_checked(compressai_encode(sym, idx, tables)[:-12], idx, tables)


def test_escape_list_must_match_the_stream(tables):
    sym, idx = symbols_with_escapes(tables, 800)
    string, escapes = entropy.encode(sym, idx, tables)
    for bad in (b"", escapes[:-1], escapes + b"\x01", b"\xff" * 6 + escapes, b"\x80" * 7):
        with pytest.raises(BitstreamError, match="escape"):
            entropy.decode(string, bad, idx, tables)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=50))
def test_varints_round_trip(values):
    blob = entropy.varint_encode(np.array(values, np.int64))
    assert entropy.varint_decode(blob, len(values)).tolist() == values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(string=st.binary(max_size=300), escapes=st.binary(max_size=20), n=st.integers(0, 400),
       ones=st.booleans(), seed=st.integers(0, 2**16))
def test_any_bytes_decode_to_symbols_or_a_bitstream_error(codec, string, escapes, n, ones, seed):
    """Whatever the bytes, decoding returns n symbols or refuses with a one-line BitstreamError; it
    never reads outside its buffers (a crash would take the test process down)."""
    tables = codec.tables[1]
    idx = np.random.default_rng(seed).integers(0, len(tables.sizes), n)
    if ones:
        string = b"\xff" * len(string)
    for decode in (lambda: entropy.decode(string, escapes, idx, tables),
                   lambda: entropy.decode_v1(string, idx, tables)):
        try:
            out = decode()
        except BitstreamError as exc:
            assert "\n" not in str(exc)
        else:
            assert out.shape == (n,)
