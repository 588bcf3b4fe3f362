"""The .tpx container (docs/format.md): a fixed little-endian header, the entropy-coded y and z
strings, an optional losslessly coded alpha plane, and a CRC-32 over everything before it.

Parsing checks every length and the checksum before anything is decoded, so a truncated or
corrupted file is an error, never a crash or a hang of the entropy decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass

from texpress.errors import BitstreamError

MAGIC = b"TPX\x1a"
FORMAT_VERSION = 1
MODES = ("RGB", "L", "RGBA", "LA")

# magic, version, mode, flags, fingerprint, width, height, pad_h, pad_w, z_h, z_w, len_y, len_z, len_alpha
_HEADER = struct.Struct("<4sBBH16sIIHHHHIII")
HEADER_SIZE = _HEADER.size
CRC_SIZE = 4


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
    y_bytes: int
    z_bytes: int
    alpha_bytes: int
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Payload:
    header: Header
    y_string: bytes
    z_string: bytes
    alpha: bytes  # zlib stream of the 8-bit alpha plane, empty when the image has none


def pack(header: Header, y_string: bytes, z_string: bytes, alpha: bytes = b"") -> bytes:
    head = _HEADER.pack(
        MAGIC, FORMAT_VERSION, MODES.index(header.mode), 0, bytes.fromhex(header.fingerprint),
        header.width, header.height, header.pad_h, header.pad_w, header.z_h, header.z_w,
        len(y_string), len(z_string), len(alpha),
    )
    body = head + y_string + z_string + alpha
    return body + struct.pack("<I", zlib.crc32(body))


def read_header(data: bytes) -> Header:
    """Parse and validate the header alone (lengths included, checksum not)."""
    if len(data) < HEADER_SIZE + CRC_SIZE:
        if data[:4] != MAGIC[: len(data[:4])]:
            raise BitstreamError("not a .tpx file (bad magic)")
        raise BitstreamError(f"truncated .tpx file ({len(data)} bytes, header needs {HEADER_SIZE + CRC_SIZE})")
    (magic, version, mode, _flags, fp, width, height, pad_h, pad_w, z_h, z_w, len_y, len_z,
     len_a) = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError("not a .tpx file (bad magic)")
    if version != FORMAT_VERSION:
        raise BitstreamError(f"unsupported .tpx format version {version} (this texpress reads {FORMAT_VERSION})")
    if mode >= len(MODES):
        raise BitstreamError(f"corrupt .tpx header (colour mode {mode})")
    expected = HEADER_SIZE + len_y + len_z + len_a + CRC_SIZE
    if len(data) < expected:
        raise BitstreamError(f"truncated .tpx file ({len(data)} of {expected} bytes)")
    if len(data) > expected:
        raise BitstreamError(f"corrupt .tpx file ({len(data) - expected} trailing bytes)")
    return Header(fp.hex(), width, height, MODES[mode], pad_h, pad_w, z_h, z_w, len_y, len_z, len_a, version)


def unpack(data: bytes) -> Payload:
    """Validate header, lengths and checksum, then split the payload."""
    header = read_header(data)
    body, (crc,) = data[:-CRC_SIZE], struct.unpack("<I", data[-CRC_SIZE:])
    if zlib.crc32(body) != crc:
        raise BitstreamError("corrupt .tpx file (checksum mismatch)")
    if header.width == 0 or header.height == 0:
        raise BitstreamError("corrupt .tpx header (zero image size)")
    off = HEADER_SIZE
    y = data[off: off + header.y_bytes]
    off += header.y_bytes
    z = data[off: off + header.z_bytes]
    off += header.z_bytes
    alpha = data[off: off + header.alpha_bytes]
    return Payload(header, bytes(y), bytes(z), bytes(alpha))


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
