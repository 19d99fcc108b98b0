"""Header bytes and reading rules, checked against CPython's ``tarfile``.

The reference build wrote with ``tarfile`` (GNU format) and read its inputs
with it, so ``tarfile`` is the oracle: for any member our encoder must give
the same bytes, and for any archive ``tarfile`` writes our reader must see
the same fields.
"""

from __future__ import annotations

import contextlib
import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.archive import tarformat as tf
from hats.archive.tarformat import Member, TarFormatError
from hats.archive.tarstream import TarReader, TarWriter

name_part = st.text(
    alphabet=st.characters(exclude_characters="/\x00", exclude_categories=["Cs"]),
    min_size=1,
    max_size=40,
)
names = st.lists(name_part, min_size=1, max_size=6).map("/".join)
types = st.sampled_from(
    [tf.REGTYPE, tf.DIRTYPE, tf.SYMTYPE, tf.LNKTYPE, tf.CHRTYPE, tf.BLKTYPE, tf.FIFOTYPE]
)


@st.composite
def members(draw: st.DrawFn) -> Member:
    kind = draw(types)
    return Member(
        name=draw(names),
        type=kind,
        mode=draw(st.integers(0, 0o7777)),
        uid=draw(st.integers(0, 2**40)),
        gid=draw(st.integers(0, 2**40)),
        size=draw(st.integers(0, 2**40)) if kind == tf.REGTYPE else 0,
        mtime=draw(st.integers(-(2**40), 2**40)),
        linkname=draw(names) if kind in (tf.SYMTYPE, tf.LNKTYPE) else "",
        uname=draw(st.text(max_size=20).filter(lambda s: "\x00" not in s)),
        gname=draw(st.text(max_size=20).filter(lambda s: "\x00" not in s)),
        devmajor=draw(st.integers(0, 4095)),
        devminor=draw(st.integers(0, 2**20)),
    )


def tarinfo_of(member: Member) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.name)
    info.type = member.type
    info.mode = member.mode
    info.uid, info.gid = member.uid, member.gid
    info.size = member.size
    info.mtime = member.mtime
    info.linkname = member.linkname
    info.uname, info.gname = member.uname, member.gname
    info.devmajor, info.devminor = member.devmajor, member.devminor
    return info


def encodable_by_tarfile(member: Member) -> bool:
    try:
        tarinfo_of(member).tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    except ValueError:
        return False
    return True


@settings(max_examples=400)
@given(members())
def test_header_bytes_equal_tarfile_gnu(member: Member) -> None:
    expected = tarinfo_of(member).tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    assert tf.encode_member(member) == expected


def test_header_layout_of_a_reference_entry() -> None:
    block = tf.encode_member(
        Member(name="usr/bin/orchestrator_main", mode=0o755, size=5, mtime=tf.PORTABLE_MTIME)
    )
    assert len(block) == 512
    assert block[:25] == b"usr/bin/orchestrator_main" and block[25:100] == bytes(75)
    assert block[100:108] == b"0000755\x00"
    assert block[108:124] == b"0000000\x000000000\x00"
    assert block[124:136] == b"00000000005\x00"
    assert block[136:148] == b"07033241600\x00"  # 946684800
    assert block[156:157] == b"0"
    assert block[257:265] == b"ustar  \x00"
    assert block[265:345] == bytes(80)  # empty owner names, NUL device fields
    assert block[154:156] == b"\x00 "
    assert int(block[148:154], 8) == tf.checksum(block)


def test_long_name_uses_gnu_longlink_record() -> None:
    name = "d/" + "x" * 120
    out = tf.encode_member(Member(name=name, size=0))
    assert len(out) == 3 * 512
    assert out[:13] == b"././@LongLink" and out[156:157] == b"L"
    assert out[512 : 512 + len(name) + 1] == name.encode() + b"\x00"
    assert out[1024 : 1024 + 100] == name.encode()[:100]


def test_directory_names_end_with_slash_and_devices_get_numbers() -> None:
    assert tf.encode_member(Member(name="etc", type=tf.DIRTYPE))[:4] == b"etc/"
    dev = tf.encode_member(Member(name="dev/null", type=tf.CHRTYPE, devmajor=1, devminor=3))
    assert dev[329:345] == b"0000001\x000000003\x00"


def test_big_numbers_are_base256() -> None:
    block = tf.encode_member(Member(name="f", uid=2**30, mtime=-1))
    assert block[108] == 0x80 and int.from_bytes(block[109:116], "big") == 2**30
    assert block[136] == 0xFF
    assert tf.parse_number(block[108:116]) == 2**30
    assert tf.parse_number(block[136:148]) == -1


def test_end_of_archive_pads_to_record() -> None:
    for offset in (0, 512, 9216, 10240, 20480 - 1024):
        total = offset + len(tf.end_of_archive(offset))
        assert total % tf.RECORD == 0
        assert total - offset >= 1024


def tarfile_archive(items: list[tuple[tarfile.TarInfo, bytes]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in items:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


@st.composite
def archives(draw: st.DrawFn) -> list[tuple[tarfile.TarInfo, bytes]]:
    items = []
    for member in draw(st.lists(members(), min_size=1, max_size=6)):
        member.size = min(member.size, 3000)
        member.uid %= 2**21
        member.gid %= 2**21
        member.mtime = abs(member.mtime) % 2**33
        data = draw(st.binary(min_size=member.size, max_size=member.size))
        items.append((tarinfo_of(member), data))
    return items


FIELDS = ("name", "type", "mode", "uid", "gid", "size", "mtime", "linkname", "uname", "gname")


@settings(max_examples=200)
@given(archives(), st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
def test_reader_sees_what_tarfile_sees(
    items: list[tuple[tarfile.TarInfo, bytes]], fmt: int
) -> None:
    raw = tarfile_archive(items, fmt)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        expected = tar.getmembers()
    reader = TarReader(io.BytesIO(raw), "t.tar")
    got = []
    for member in reader:
        got.append((member, b"".join(reader.chunks())))
    assert len(got) == len(expected)
    for (member, data), info in zip(got, expected, strict=True):
        for field in FIELDS:
            ours = getattr(member, field)
            theirs = getattr(info, field)
            if field == "mode":
                theirs &= 0o7777
            assert ours == theirs, field
        if info.ischr() or info.isblk():
            assert (member.devmajor, member.devminor) == (info.devmajor, info.devminor)
        if info.isreg():
            assert data == items[expected.index(info)][1]


@settings(max_examples=100)
@given(archives())
def test_write_then_read_roundtrip(items: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    out = io.BytesIO()
    writer = TarWriter(out.write)
    for info, data in items:
        member = Member(
            name=info.name,
            type=info.type,
            mode=info.mode,
            uid=info.uid,
            gid=info.gid,
            size=info.size,
            mtime=info.mtime,
            linkname=info.linkname,
            uname=info.uname,
            gname=info.gname,
            devmajor=info.devmajor,
            devminor=info.devminor,
        )
        writer.add(member, iter([data]) if member.is_regular else None)
    writer.close()
    raw = out.getvalue()
    assert len(raw) % tf.RECORD == 0
    assert raw == tarfile_archive(items, tarfile.GNU_FORMAT)


def pax_archive() -> bytes:
    info = tarfile.TarInfo("ünïcode/" + "long" * 40)
    info.size = 3
    info.mtime = 1234567890.75  # type: ignore[assignment]
    info.uname = "ü" * 40
    info.pax_headers = {"comment": "ignored"}
    return tarfile_archive([(info, b"abc")], tarfile.PAX_FORMAT)


def test_pax_fields_applied_like_tarfile() -> None:
    reader = TarReader(io.BytesIO(pax_archive()), "p.tar")
    (member,) = list(reader)
    assert member.name == "ünïcode/" + "long" * 40
    assert member.mtime == 1234567890.75
    assert member.uname == "ü" * 40
    # The GNU header of the merged image truncates the float mtime.
    assert tf.encode_member(member)[-512:][136:148] == b"%011o\x00" % 1234567890


def corrupt(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


def two_files() -> bytes:
    a, b = tarfile.TarInfo("a"), tarfile.TarInfo("b")
    a.size = b.size = 600
    return tarfile_archive([(a, b"1" * 600), (b, b"2" * 600)], tarfile.GNU_FORMAT)


def read_all(raw: bytes) -> list[Member]:
    reader = TarReader(io.BytesIO(raw), "bad.tar")
    out = []
    for member in reader:
        b"".join(reader.chunks())
        out.append(member)
    return out


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: corrupt(raw, 1536 + 10, b"X"), "invalid tar header"),
        (lambda raw: raw[: 1536 + 100], "partial header block"),
        (lambda raw: raw[: 1536 + 512 + 100], "ends early"),
        (lambda raw: raw[:700], "ends early"),
    ],
)
def test_hostile_archives_fail_clearly(mutate: object, message: str) -> None:
    raw = mutate(two_files())  # type: ignore[operator]
    with pytest.raises(TarFormatError, match=message) as err:
        read_all(raw)
    assert str(err.value).startswith("bad.tar: ")
    assert "at byte" in str(err.value)


def with_type(type_: bytes, size: int = 0) -> bytes:
    block = bytearray(tf.encode_member(Member(name="x", size=size)))
    block[156:157] = type_
    block[148:156] = b"        "
    block[148:156] = b"%06o\x00 " % tf.checksum(bytes(block))
    return bytes(block) + bytes(-size % 512 + size) + bytes(1024)


@pytest.mark.parametrize(
    ("type_", "size", "message"),
    [
        (b"S", 0, "sparse"),
        (b"V", 0, "unsupported type"),
        (b"5", 10, "carries 10 bytes"),
        (b"2", 512, "carries 512 bytes"),
    ],
)
def test_unsupported_members_are_rejected(type_: bytes, size: int, message: str) -> None:
    with pytest.raises(TarFormatError, match=message):
        read_all(with_type(type_, size))


def test_nul_in_pax_path_is_rejected() -> None:
    info = tarfile.TarInfo("x")
    info.pax_headers = {"path": "a\x00b"}
    raw = tarfile_archive([(info, b"")], tarfile.PAX_FORMAT)
    with pytest.raises(TarFormatError, match="NUL"):
        read_all(raw)


def test_huge_extended_header_is_rejected() -> None:
    block = bytearray(tf.encode_member(Member(name="././@LongLink", size=1 << 30)))
    block[156:157] = b"L"
    block[148:156] = b"        "
    block[148:156] = b"%06o\x00 " % tf.checksum(bytes(block))
    with pytest.raises(TarFormatError, match="too large"):
        read_all(bytes(block))


def test_end_at_eof_without_zero_blocks_is_accepted_like_tarfile() -> None:
    raw = two_files()
    assert [m.name for m in read_all(raw[: 3 * 1024])] == ["a", "b"]


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=3000), st.integers(0, 2))
def test_random_bytes_never_crash_the_reader(noise: bytes, where: int) -> None:
    raw = two_files()
    cut = [0, 512, 1536][where]
    data = raw[:cut] + noise + raw[cut + len(noise) :]
    with contextlib.suppress(TarFormatError):
        read_all(data)
