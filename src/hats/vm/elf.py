"""The shared libraries an ELF file needs (its ``DT_NEEDED`` entries), read from its bytes.

Used to copy exactly the libraries the guest's Python and its extension
modules load into the initramfs. Only what that needs is implemented:

* 64-bit little-endian ELF (x86-64, the only guest architecture);
* the ``PT_DYNAMIC`` segment is found through the program headers, and the
  string table's address (``DT_STRTAB``) is mapped to a file offset through
  the ``PT_LOAD`` segments;
* a file that is not ELF, or is ELF without a dynamic segment (a static
  binary), needs nothing: :func:`needed_libraries` returns ``[]``;
* a truncated or inconsistent ELF file raises :class:`ElfError`.
"""

from __future__ import annotations

import struct

ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_PT_LOAD = 1
_PT_DYNAMIC = 2
_DT_NULL = 0
_DT_NEEDED = 1
_DT_STRTAB = 5


class ElfError(ValueError):
    """The file claims to be ELF but its structure is broken."""


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise ElfError(f"truncated ELF file (need {size} bytes at offset {offset})")
    return struct.unpack_from(fmt, data, offset)


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def needed_libraries(data: bytes) -> list[str]:
    """The ``DT_NEEDED`` names of an ELF64 LE file, in order; ``[]`` if there are none."""
    if not is_elf(data):
        return []
    if len(data) < 64:
        raise ElfError("truncated ELF header")
    if data[4] != _ELFCLASS64 or data[5] != _ELFDATA2LSB:
        raise ElfError("not a 64-bit little-endian ELF file")
    (phoff,) = _unpack("<Q", data, 0x20)
    phentsize, phnum = _unpack("<HH", data, 0x36)
    if phnum and phentsize < 56:
        raise ElfError(f"program header entries of {phentsize} bytes are too small")
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: tuple[int, int] | None = None
    for index in range(phnum):
        base = phoff + index * phentsize
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = _unpack("<IIQQQQ", data, base)
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    needed_offsets: list[int] = []
    strtab_addr: int | None = None
    offset, size = dynamic
    for entry in range(offset, offset + size, 16):
        tag, value = _unpack("<qQ", data, entry)
        if tag == _DT_NULL:
            break
        if tag == _DT_NEEDED:
            needed_offsets.append(value)
        elif tag == _DT_STRTAB:
            strtab_addr = value
    if not needed_offsets:
        return []
    if strtab_addr is None:
        raise ElfError("dynamic section has DT_NEEDED but no DT_STRTAB")
    strtab = _file_offset(strtab_addr, loads)
    names: list[str] = []
    for name_offset in needed_offsets:
        start = strtab + name_offset
        end = data.find(b"\0", start)
        if start >= len(data) or end < 0:
            raise ElfError("DT_NEEDED name runs past the end of the file")
        names.append(data[start:end].decode("utf-8", "replace"))
    return names


def _file_offset(address: int, loads: list[tuple[int, int, int]]) -> int:
    for vaddr, offset, filesz in loads:
        if vaddr <= address < vaddr + filesz:
            return offset + (address - vaddr)
    raise ElfError(f"address {address:#x} is in no loaded segment")
