"""The .tpx container: every corruption is a BitstreamError (one line), never a crash or a hang."""

import json
import zlib

import pytest

from texpress.codec import bitstream
from texpress.codec.api import Codec
from texpress.errors import BitstreamError, ModelMismatchError

from .conftest import crop


@pytest.fixture(scope="module")
def tpx(codec, photos):
    return codec.compress(crop(photos[2], 150, 100, "RGBA"))


def test_header_fields(codec, tpx):
    h = bitstream.read_header(tpx)
    assert (h.width, h.height, h.mode) == (150, 100, "RGBA")
    assert (h.pad_w, h.pad_h) == (42, 28)
    assert (h.z_w, h.z_h) == (3, 2)
    assert h.fingerprint == codec.fingerprint
    assert (h.version, h.tile, h.tiles, h.passes, h.quality, h.effort) == (4, 0, 1, 1, None, 0)
    assert len(tpx) == h.overhead_bytes + h.y_bytes + h.z_bytes + h.alpha_bytes + h.escape_bytes
    json.dumps(h.to_dict())


@pytest.mark.parametrize("cut", [0, 3, 10, bitstream.HEADER_SIZE, -1, -50])
def test_truncated_files_are_refused(codec, tpx, cut):
    with pytest.raises(BitstreamError, match="truncated|bad magic"):
        codec.decompress(tpx[:cut])


def test_every_flipped_byte_is_detected(codec, tpx):
    step = max(1, len(tpx) // 200)
    for i in range(0, len(tpx), step):
        broken = bytearray(tpx)
        broken[i] ^= 0x5A
        with pytest.raises((BitstreamError, ModelMismatchError)):
            codec.decompress(bytes(broken))


def test_other_model_is_named_in_the_error(other_ckpt, tpx, codec):
    other = Codec.from_checkpoint(other_ckpt)
    with pytest.raises(ModelMismatchError) as err:
        other.decompress(tpx)
    assert codec.fingerprint in str(err.value) and other.fingerprint in str(err.value)


def test_not_a_tpx_and_trailing_bytes(codec, tpx):
    with pytest.raises(BitstreamError, match="bad magic"):
        codec.decompress(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(BitstreamError, match="trailing"):
        codec.decompress(tpx + b"x")


def forge(data: bytes, offset: int, value: int, size: int = 4) -> bytes:
    """Overwrite a header field and recompute the checksum, as a deliberate attacker would."""
    body = bytearray(data[:-4])
    body[offset: offset + size] = value.to_bytes(size, "little")
    return bytes(body) + zlib.crc32(body).to_bytes(4, "little")


def test_inconsistent_sizes_with_a_valid_checksum_are_refused(codec, tpx):
    """A crafted file (right checksum, wrong geometry) must not reach the entropy decoder."""
    with pytest.raises(BitstreamError, match="grid has 6"):
        codec.decompress(forge(tpx, 32, 64))  # tile size 64: a 3x2 grid, but one tile in the table
    with pytest.raises(BitstreamError, match="tile size"):
        codec.decompress(forge(tpx, 32, 100))
    with pytest.raises(BitstreamError, match="pixel limit"):
        codec.decompress(forge(tpx, 24, 2**32 - 1))  # width


def test_version_1_files_still_decode_and_are_checked(codec, photos):
    import numpy as np
    import torch

    from texpress.codec.api import to_tensor

    image = codec.load(crop(photos[2], 150, 100, "RGBA"))
    with torch.inference_mode():
        out = codec.model.compress(to_tensor(image.rgb))
    header = bitstream.Header(codec.fingerprint, 150, 100, "RGBA", 28, 42, 2, 3, 0, 0, 0, version=1)
    v1 = bitstream.pack_v1(header, out["strings"][0][0], out["strings"][1][0], bitstream.encode_alpha(image.alpha))
    assert bitstream.read_header(v1).version == 1
    assert np.array_equal(np.asarray(codec.decompress(v1)), np.asarray(codec.decompress(codec.encode(image))))
    body = bytearray(v1[:-4])
    body[36:38] = (7).to_bytes(2, "little")  # z_h
    with pytest.raises(BitstreamError, match="inconsistent"):
        codec.decompress(bytes(body) + zlib.crc32(body).to_bytes(4, "little"))


@pytest.mark.parametrize("version", [2, 3])
def test_version_2_and_3_files_still_decode(codec, tpx, version):
    """The same coded segments under the older headers (format 2: no quality, passes or effort; format
    3: a reserved zero byte where format 4 keeps the effort) decode to the same pixels; their effort
    reads as not recorded."""
    import numpy as np

    payload = bitstream.unpack(tpx)
    header = bitstream.Header(**{**payload.header.to_dict(), "version": version})
    old = bitstream.pack(header, payload.y_strings, payload.z_string, payload.alpha, payload.y_escapes,
                         payload.z_escapes)
    assert old[4] == version and bitstream.read_header(old).effort is None
    assert len(old) == len(tpx) - (4 if version == 2 else 0)
    assert np.array_equal(np.asarray(codec.decompress(old)), np.asarray(codec.decompress(tpx)))
    if version == 3:  # its reserved byte must stay zero
        with pytest.raises(BitstreamError, match="corrupt"):
            codec.decompress(forge(old, 43, 1, 1))


def test_version_4_records_the_effort_and_newer_versions_are_refused(codec, tpx):
    assert bitstream.read_header(forge(tpx, 43, 3, 1)).effort == 3  # any effort byte reads back
    with pytest.raises(BitstreamError, match="unsupported .tpx format version 5"):
        codec.decompress(forge(tpx, 4, 5, 1))


def test_alpha_bomb_is_refused():
    bomb = zlib.compress(b"\0" * 10_000_000)
    with pytest.raises(BitstreamError):
        bitstream.decode_alpha(bomb, 10, 10)


def test_crafted_streams_with_a_valid_checksum_never_crash_the_process(lite_ckpt, tpx, tmp_path):
    """Empty, cut or garbage y/z strings re-packed with a correct CRC: the rANS decoder must not read
    past the data (it has no bounds checks). Run in a child process so that a crash fails the test."""
    import subprocess
    import sys

    payload = bitstream.unpack(tpx)
    y, z = payload.y_string, payload.z_string
    v1 = bitstream.Header(**{**payload.header.to_dict(), "version": 1})
    variants = [(b"", b""), (y[:5], z), (y, z[:3]), (b"\xff" * len(y), b"\xff" * len(z)), (y[::-1], z[::-1]),
                (b"\xff" * 2_000_000, z), (y, b"\xff" * 50_000)]  # CompressAI's decoder segfaulted on the former
    for i, (ys, zs) in enumerate(variants):
        (tmp_path / f"{i}.tpx").write_bytes(bitstream.pack(payload.header, [ys], zs, payload.alpha, [b"\x01" * 9]))
        # format 1 with CompressAI's escape coding: all-ones words drive its bypass path hardest
        (tmp_path / f"{i}-v1.tpx").write_bytes(bitstream.pack_v1(v1, ys, zs, payload.alpha))
    script = (
        "import sys, pathlib\n"
        "from texpress.codec.api import Codec\n"
        "from texpress.errors import TexpressError\n"
        "codec = Codec.from_checkpoint(sys.argv[1])\n"
        "for p in sorted(pathlib.Path(sys.argv[2]).glob('*.tpx')) * 5:\n"
        "    try:\n"
        "        codec.decompress(p.read_bytes())\n"
        "    except TexpressError:\n"
        "        pass\n"
        "print('survived')\n"
    )
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script, str(lite_ckpt), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "survived" in proc.stdout, proc.stderr[-2000:]
