"""The .xz container around LZMA2 blocks, as liblzma's multi-threaded encoder writes it.

Pure functions, no I/O. They reproduce the bytes of ``xz -T2 --block-size=B -6``
(``lzma_stream_encoder_mt``, liblzma 5.4.x), which do not depend on the
number of threads. The rules, all checked against ``xz`` 5.4.1:

- one stream: the 12-byte stream header (CRC64 check), the blocks, the index,
  the 12-byte stream footer; an empty input has no block at all;
- the input is cut into blocks of exactly ``B`` bytes, the last one shorter
  (never empty); every block is compressed on its own, from a fresh LZMA2
  encoder (preset 6: dictionary 8 MiB even for blocks smaller than that);
- a block header records the compressed and the uncompressed size. Its size
  is reserved *before* compressing, for the largest values the block could
  have (``block_buffer_bound(B)`` and ``B``), so the header of a short or
  well-compressed block keeps zero padding up to that reserved size;
- when header, LZMA2 data, padding and check would not fit in
  ``block_buffer_bound(B)`` bytes (incompressible data in large blocks), the
  block is written with LZMA2 *uncompressed* chunks instead, with a 4 KiB
  dictionary in its header (``lzma_block_uncomp_encode``);
- after each block's data: zero padding to a multiple of four, then the
  CRC64 of the block's uncompressed bytes (little-endian);
- index: indicator ``00``, the record count, (unpadded size, uncompressed
  size) per block, zero padding to four, CRC32.

The LZMA2 data and the CRC64 of a block come from Python's ``lzma`` (a
single-block ``.xz`` of the block's bytes, which :func:`split_single_block`
takes apart): liblzma computes both, so there is no CRC64 in Python here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from hats.errors import HatsError

STREAM_MAGIC = b"\xfd7zXZ\x00"
FOOTER_MAGIC = b"YZ"
CHECK_CRC64 = 0x04
CHECK_SIZE = 8
STREAM_FLAGS = bytes((0x00, CHECK_CRC64))
STREAM_HEADER_SIZE = 12
LZMA2_ID = 0x21
LZMA2_CHUNK_MAX = 1 << 16
LZMA2_HEADER_UNCOMPRESSED = 3
DICT_SIZE_MIN = 4096
VLI_BYTES_MAX = 9
CHECK_SIZE_MAX = 64
# liblzma's HEADERS_BOUND: the largest block header plus the largest check.
HEADERS_BOUND = (1 + 1 + 2 * VLI_BYTES_MAX + 3 + 4 + CHECK_SIZE_MAX + 3) & ~3
BLOCK_HEADER_SIZE_MAX = 1024


class XzFormatError(HatsError):
    """Bytes that should be an .xz stream or block are not valid."""


def encode_vli(value: int) -> bytes:
    """xz's variable-length integer: 7 bits a byte, low bits first."""
    if value < 0 or value >= 1 << 63:
        raise ValueError(f"{value} is out of the xz integer range")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_vli(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one integer at ``pos``; return it and the position after it."""
    value = 0
    for i in range(VLI_BYTES_MAX):
        if pos + i >= len(data):
            raise XzFormatError("truncated integer")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise XzFormatError("integer is not in its shortest form")
            return value, pos + i + 1
    raise XzFormatError("integer is too long")


def lzma2_dict_props(dict_size: int) -> int:
    """The LZMA2 properties byte: the smallest size ``2^n`` or ``3*2^(n-1)`` >= dict."""
    wanted = max(dict_size, DICT_SIZE_MIN)
    for props in range(40):
        if (2 | (props & 1)) << (props // 2 + 11) >= wanted:
            return props
    return 40


def lzma2_bound(size: int) -> int:
    """Bytes of ``size`` bytes stored as LZMA2 uncompressed chunks (with the end marker)."""
    chunks = (size + LZMA2_CHUNK_MAX - 1) // LZMA2_CHUNK_MAX
    return size + chunks * LZMA2_HEADER_UNCOMPRESSED + 1


def block_buffer_bound(size: int) -> int:
    """liblzma's ``lzma_block_buffer_bound``: the most a block of ``size`` bytes may take."""
    return HEADERS_BOUND + ((lzma2_bound(size) + 3) & ~3)


def block_header_size(compressed_size: int, uncompressed_size: int) -> int:
    """Size of a header recording both sizes and one LZMA2 filter, padded to four."""
    size = 1 + 1 + 4 + len(encode_vli(compressed_size)) + len(encode_vli(uncompressed_size))
    size += 3  # filter id, properties size, properties byte
    return (size + 3) & ~3


def block_header(
    header_size: int, compressed_size: int, uncompressed_size: int, props: int
) -> bytes:
    """A block header of exactly ``header_size`` bytes (zero-padded), CRC32 last."""
    body = bytearray((header_size // 4 - 1, 0x40 | 0x80))
    body += encode_vli(compressed_size)
    body += encode_vli(uncompressed_size)
    body += bytes((LZMA2_ID, 1, props))
    if len(body) > header_size - 4:
        raise ValueError("block header does not fit its reserved size")
    body += bytes(header_size - 4 - len(body))
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def uncompressed_lzma2(data: bytes) -> bytes:
    """``data`` as LZMA2 uncompressed chunks (the first resets the dictionary)."""
    out = bytearray()
    control = 0x01
    for start in range(0, len(data), LZMA2_CHUNK_MAX):
        chunk = data[start : start + LZMA2_CHUNK_MAX]
        out.append(control)
        out += struct.pack(">H", len(chunk) - 1)
        out += chunk
        control = 0x02
    out.append(0x00)
    return bytes(out)


def _padding(size: int) -> bytes:
    return bytes(-size % 4)


@dataclass(frozen=True)
class Block:
    """One encoded block: header, data, padding and check, ready to write."""

    data: bytes
    unpadded_size: int
    uncompressed_size: int


def mt_block(block_size: int, data: bytes, lzma2: bytes, check: bytes, dict_size: int) -> Block:
    """The block ``lzma_stream_encoder_mt`` writes for ``data`` (at most ``block_size`` bytes).

    ``lzma2`` is the raw LZMA2 encoding of ``data`` with a dictionary of
    ``dict_size`` bytes, ``check`` its CRC64 (eight bytes, little-endian).
    """
    if not 0 < len(data) <= block_size:
        raise ValueError("a block holds 1 to block_size bytes")
    if len(check) != CHECK_SIZE:
        raise ValueError("the check is a CRC64 (eight bytes)")
    out_size = block_buffer_bound(block_size)
    header_size = block_header_size(out_size, block_size)
    total = header_size + len(lzma2) + len(_padding(len(lzma2))) + CHECK_SIZE
    props = lzma2_dict_props(dict_size)
    if total > out_size:
        # Incompressible: liblzma falls back to uncompressed chunks, sized exactly.
        lzma2 = uncompressed_lzma2(data)
        header_size = block_header_size(len(lzma2), len(data))
        props = lzma2_dict_props(DICT_SIZE_MIN)
    header = block_header(header_size, len(lzma2), len(data), props)
    encoded = b"".join((header, lzma2, _padding(len(lzma2)), check))
    return Block(encoded, header_size + len(lzma2) + CHECK_SIZE, len(data))


def parse_block(encoded: bytes) -> Block:
    """Check one encoded block's structure (header CRC32, sizes, padding) and describe it.

    The CRC64 of the uncompressed data is not recomputed (that needs the data).
    """
    if not encoded:
        raise XzFormatError("empty block")
    header_size = (encoded[0] + 1) * 4
    if encoded[0] == 0 or len(encoded) < header_size:
        raise XzFormatError("bad block header size")
    body, crc = encoded[: header_size - 4], encoded[header_size - 4 : header_size]
    if struct.pack("<I", zlib.crc32(body)) != crc:
        raise XzFormatError("block header CRC32 mismatch")
    if body[1] != 0xC0:
        raise XzFormatError("block header lacks sizes or has other filters than LZMA2")
    compressed, pos = decode_vli(body, 2)
    uncompressed, pos = decode_vli(body, pos)
    if body[pos : pos + 2] != bytes((LZMA2_ID, 1)) or pos + 3 > len(body):
        raise XzFormatError("block filter is not LZMA2")
    if any(body[pos + 3 :]):
        raise XzFormatError("block header padding is not zero")
    padding = -compressed % 4
    if len(encoded) != header_size + compressed + padding + CHECK_SIZE:
        raise XzFormatError("block length does not match its header")
    start = header_size + compressed
    if any(encoded[start : start + padding]):
        raise XzFormatError("block padding is not zero")
    return Block(encoded, header_size + compressed + CHECK_SIZE, uncompressed)


def stream_header() -> bytes:
    """Magic, flags (CRC64 check) and their CRC32."""
    return STREAM_MAGIC + STREAM_FLAGS + struct.pack("<I", zlib.crc32(STREAM_FLAGS))


def index(records: list[tuple[int, int]]) -> bytes:
    """The index of (unpadded size, uncompressed size) records, padded, with CRC32."""
    body = bytearray(b"\x00")
    body += encode_vli(len(records))
    for unpadded, uncompressed in records:
        body += encode_vli(unpadded)
        body += encode_vli(uncompressed)
    body += _padding(len(body))
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def stream_footer(index_size: int) -> bytes:
    """CRC32, backward size (the index size), flags, ``YZ``."""
    fields = struct.pack("<I", index_size // 4 - 1) + STREAM_FLAGS
    return struct.pack("<I", zlib.crc32(fields)) + fields + FOOTER_MAGIC


class StreamAssembler:
    """Sans-I/O: the bytes of one stream, given its encoded blocks in order."""

    def __init__(self) -> None:
        self._records: list[tuple[int, int]] = []
        self._started = False
        self._finished = False

    def start(self) -> bytes:
        if self._started:
            raise ValueError("the stream was already started")
        self._started = True
        return stream_header()

    def add(self, block: Block) -> bytes:
        if not self._started or self._finished:
            raise ValueError("blocks go between start() and finish()")
        self._records.append((block.unpadded_size, block.uncompressed_size))
        return block.data

    def finish(self) -> bytes:
        if not self._started or self._finished:
            raise ValueError("finish() once, after start()")
        self._finished = True
        idx = index(self._records)
        return idx + stream_footer(len(idx))

    @property
    def block_count(self) -> int:
        return len(self._records)


def split_single_block(xz: bytes) -> tuple[bytes, bytes]:
    """(raw LZMA2 data, CRC64 check) of a one-block CRC64 ``.xz`` stream.

    The stream is what ``lzma.compress(data, format=FORMAT_XZ,
    check=CHECK_CRC64, ...)`` returns for non-empty ``data``.
    """
    if len(xz) < 2 * STREAM_HEADER_SIZE + 8 or not xz.startswith(STREAM_MAGIC):
        raise XzFormatError("not an .xz stream")
    if xz[6:8] != STREAM_FLAGS or not xz.endswith(FOOTER_MAGIC):
        raise XzFormatError("not a CRC64 .xz stream")
    (backward,) = struct.unpack("<I", xz[-8:-4])
    index_size = (backward + 1) * 4
    index_start = len(xz) - STREAM_HEADER_SIZE - index_size
    if index_start <= STREAM_HEADER_SIZE or xz[index_start] != 0:
        raise XzFormatError("bad .xz index")
    count, pos = decode_vli(xz, index_start + 1)
    if count != 1:
        raise XzFormatError(f"expected one block, found {count}")
    unpadded, pos = decode_vli(xz, pos)
    header_size = (xz[STREAM_HEADER_SIZE] + 1) * 4
    compressed = unpadded - header_size - CHECK_SIZE
    start = STREAM_HEADER_SIZE + header_size
    check_at = start + compressed + (-compressed % 4)
    if compressed <= 0 or check_at + CHECK_SIZE != index_start:
        raise XzFormatError("block sizes do not match the index")
    return xz[start : start + compressed], xz[check_at : check_at + CHECK_SIZE]
