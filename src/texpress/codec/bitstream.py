"""The .tpx container (docs/format.md): a fixed little-endian header, the entropy-coded y and z
strings, an optional losslessly coded alpha plane, and a CRC-32 over everything before it.

Parsing checks every length and the checksum before anything is decoded, so a truncated or
corrupted file is an error, never a crash or a hang of the entropy decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass, field

from texpress.errors import BitstreamError

MAGIC = b"TPX\x1a"
FORMAT_VERSION = 4  # what this texpress writes, for every model and effort; it reads 1 to 4
READ_VERSIONS = (1, 2, 3, 4)
NO_QUALITY = 0xFFFF  # versions 3 and 4: the quality field of a single-rate model
MAX_PASSES = 32  # 2 x codec.config.MAX_CHANNEL_GROUPS: a channel-groups model codes two passes per group
MODES = ("RGB", "L", "RGBA", "LA")

# version 1: magic, version, mode, flags, fingerprint, width, height, pad_h, pad_w, z_h, z_w, len_y, len_z, len_alpha
_HEADER = struct.Struct("<4sBBH16sIIHHHHIII")
HEADER_SIZE = _HEADER.size
# version 2: magic, version, mode, flags, fingerprint, width, height, tile, tile count; then a table of
# segment lengths (z, z escapes, per tile y and y escapes, alpha)
_HEADER_V2 = struct.Struct("<4sBBH16sIIII")
HEADER_V2_SIZE = _HEADER_V2.size
# version 3: version 2's fields, then the quality in hundredths (NO_QUALITY: a single-rate model), the
# coding passes of y per tile (1: hyperprior, 2: checkerboard anchors then non-anchors, 2 x groups:
# channel groups, each anchors then non-anchors; codec.passes) and a zero
# byte; the segment table has z, z escapes, per tile and pass y and y escapes, alpha
_HEADER_V3 = struct.Struct("<4sBBH16sIIIIHBB")
HEADER_V3_SIZE = _HEADER_V3.size
# version 4: version 3's layout, its last byte the encode effort the file was made at (codec.refine)
HEADER_SIZES = {1: HEADER_SIZE, 2: HEADER_V2_SIZE, 3: HEADER_V3_SIZE, 4: HEADER_V3_SIZE}
CRC_SIZE = 4
PAD = 64


@dataclass(frozen=True)
class Header:
    fingerprint: str  # 32 hex digits, see checkpoint.fingerprint
    width: int
    height: int
    mode: str
    pad_h: int  # rows of padding added below the image before coding
    pad_w: int  # columns of padding added to the right
    z_h: int
    z_w: int
    y_bytes: int  # all y strings together
    z_bytes: int
    alpha_bytes: int
    version: int = FORMAT_VERSION
    tile: int = 0  # tile side in pixels, 0 = one piece (version 2)
    tiles: int = 1
    escape_bytes: int = 0  # the escape lists together (version 2)
    quality: float | None = None  # a variable-rate model's quality, 0-100 (versions 3 and 4)
    passes: int = 1  # coding passes of y per tile (versions 3 and 4)
    effort: int | None = None  # the encode effort (version 4; None: an older file, which does not record it)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def overhead_bytes(self) -> int:
        """Header, segment table and checksum."""
        if self.version == 1:
            return HEADER_SIZE + CRC_SIZE
        if self.version == 2:
            return HEADER_V2_SIZE + 4 * (3 + 2 * self.tiles) + CRC_SIZE
        return HEADER_V3_SIZE + 4 * (3 + 2 * self.tiles * self.passes) + CRC_SIZE  # versions 3 and 4


@dataclass(frozen=True)
class Payload:
    header: Header
    y_strings: list[bytes]  # one per tile and pass (version 1: one)
    z_string: bytes
    alpha: bytes  # zlib stream of the 8-bit alpha plane, empty when the image has none
    y_escapes: list[bytes] = field(default_factory=list)  # version 2: one per tile
    z_escapes: bytes = b""

    @property
    def y_string(self) -> bytes:
        return b"".join(self.y_strings)


def _padding(size: int) -> int:
    return (-size) % PAD


def pack(header: Header, y_strings: list[bytes], z_string: bytes, alpha: bytes = b"",
         y_escapes: list[bytes] | None = None, z_escapes: bytes = b"") -> bytes:
    """The header's version (4, or 2 or 3 for the old-format tests) from its fingerprint, size, mode,
    tile, quality, passes and effort, plus the coded segments (y: tile by tile, pass by pass)."""
    y_escapes = y_escapes if y_escapes is not None else [b""] * len(y_strings)
    segments = [z_string, z_escapes]
    for y, e in zip(y_strings, y_escapes, strict=True):
        segments += [y, e]
    segments.append(alpha)
    fields = (MODES.index(header.mode), 0, bytes.fromhex(header.fingerprint), header.width, header.height, header.tile)
    if header.version in (3, 4):
        quality = NO_QUALITY if header.quality is None else int(round(header.quality * 100))
        last = (header.effort or 0) if header.version == 4 else 0
        head = _HEADER_V3.pack(MAGIC, header.version, *fields, len(y_strings) // header.passes, quality,
                               header.passes, last)
    else:
        head = _HEADER_V2.pack(MAGIC, 2, *fields, len(y_strings))
    table = struct.pack(f"<{len(segments)}I", *map(len, segments))
    body = b"".join([head, table, *segments])
    return body + struct.pack("<I", zlib.crc32(body))


def pack_v1(header: Header, y_string: bytes, z_string: bytes, alpha: bytes = b"") -> bytes:
    """The version-1 layout (kept to test that old files still decode)."""
    head = _HEADER.pack(
        MAGIC, 1, MODES.index(header.mode), 0, bytes.fromhex(header.fingerprint),
        header.width, header.height, header.pad_h, header.pad_w, header.z_h, header.z_w,
        len(y_string), len(z_string), len(alpha),
    )
    body = head + y_string + z_string + alpha
    return body + struct.pack("<I", zlib.crc32(body))


def _check_length(data: bytes, expected: int) -> None:
    if len(data) < expected:
        raise BitstreamError(f"truncated .tpx file ({len(data)} of {expected} bytes)")
    if len(data) > expected:
        raise BitstreamError(f"corrupt .tpx file ({len(data) - expected} trailing bytes)")


def _check_start(data: bytes) -> int:
    if len(data) < 5 or data[:4] != MAGIC:
        if data[:4] != MAGIC[: len(data[:4])]:
            raise BitstreamError("not a .tpx file (bad magic)")
        raise BitstreamError(f"truncated .tpx file ({len(data)} bytes)")
    version = data[4]
    if version not in READ_VERSIONS:
        raise BitstreamError(f"unsupported .tpx format version {version} (this texpress reads 1 to 4)")
    size = HEADER_SIZES[version]
    if len(data) < size + CRC_SIZE:
        raise BitstreamError(f"truncated .tpx file ({len(data)} bytes, header needs {size + CRC_SIZE})")
    return version


def read_header(data: bytes) -> Header:
    """Parse and validate the header alone (lengths included, checksum not)."""
    return _parse(data)[0]


def _parse(data: bytes) -> tuple[Header, list[int]]:
    version = _check_start(data)
    if version == 1:
        (_, _, mode, _flags, fp, width, height, pad_h, pad_w, z_h, z_w, len_y, len_z,
         len_a) = _HEADER.unpack_from(data)
        if mode >= len(MODES):
            raise BitstreamError(f"corrupt .tpx header (colour mode {mode})")
        _check_length(data, HEADER_SIZE + len_y + len_z + len_a + CRC_SIZE)
        header = Header(fp.hex(), width, height, MODES[mode], pad_h, pad_w, z_h, z_w, len_y, len_z, len_a, 1)
        return header, [len_y, len_z, len_a]
    quality, passes, effort = NO_QUALITY, 1, None
    if version == 2:
        _, _, mode, flags, fp, width, height, tile, tiles = _HEADER_V2.unpack_from(data)
        head_size = HEADER_V2_SIZE
    else:
        _, _, mode, flags, fp, width, height, tile, tiles, quality, passes, last = _HEADER_V3.unpack_from(data)
        head_size = HEADER_V3_SIZE
        zero = last if version == 3 else 0  # version 3's reserved byte is version 4's effort
        effort = last if version == 4 else None
        if not 1 <= passes <= MAX_PASSES or zero or (quality != NO_QUALITY and quality > 10000):
            raise BitstreamError(f"corrupt .tpx header ({passes} passes, quality field {quality})")
    if mode >= len(MODES) or flags:
        raise BitstreamError(f"corrupt .tpx header (colour mode {mode}, flags {flags})")
    n_segments = 3 + 2 * tiles * passes
    table_end = head_size + 4 * n_segments
    if table_end + CRC_SIZE > len(data):  # checked before the table is read: no allocation from it
        raise BitstreamError(f"truncated .tpx file ({len(data)} bytes, the tile table needs {table_end + CRC_SIZE})")
    lengths = list(struct.unpack_from(f"<{n_segments}I", data, head_size))
    _check_length(data, table_end + sum(lengths) + CRC_SIZE)
    pad_h, pad_w = _padding(height), _padding(width)
    header = Header(fp.hex(), width, height, MODES[mode], pad_h, pad_w, (height + pad_h) // PAD,
                    (width + pad_w) // PAD, sum(lengths[2:-1:2]), lengths[0], lengths[-1], version, tile, tiles,
                    lengths[1] + sum(lengths[3:-1:2]), None if quality == NO_QUALITY else quality / 100, passes,
                    effort)
    return header, lengths


def unpack(data: bytes) -> Payload:
    """Validate header, lengths and checksum, then split the payload."""
    header, lengths = _parse(data)
    body, (crc,) = data[:-CRC_SIZE], struct.unpack("<I", data[-CRC_SIZE:])
    if zlib.crc32(body) != crc:
        raise BitstreamError("corrupt .tpx file (checksum mismatch)")
    if header.width == 0 or header.height == 0:
        raise BitstreamError("corrupt .tpx header (zero image size)")
    off = HEADER_SIZES[header.version]
    off += 4 * len(lengths) if header.version > 1 else 0
    segments = []
    for n in lengths:
        segments.append(bytes(data[off: off + n]))
        off += n
    if header.version == 1:
        y, z, alpha = segments
        return Payload(header, [y], z, alpha)
    return Payload(header, segments[2:-1:2], segments[0], segments[-1], segments[3:-1:2], segments[1])


def encode_alpha(alpha) -> bytes:
    return zlib.compress(alpha.tobytes(), 9)


def decode_alpha(blob: bytes, width: int, height: int) -> bytes:
    """Inflate at most width*height bytes, so a crafted stream cannot balloon memory."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob, width * height)
    except zlib.error:
        raise BitstreamError("corrupt .tpx file (alpha plane)") from None
    if len(raw) != width * height or inflater.unconsumed_tail:
        raise BitstreamError("corrupt .tpx file (alpha plane size)")
    return raw
