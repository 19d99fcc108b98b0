"""A small, deterministic wheel installer (unpacker) for the agents tree.

What it does with a wheel (a zip file, PEP 427 / 491):

* finds the single ``{name}-{version}.dist-info`` directory and reads its
  ``WHEEL`` (``Wheel-Version`` 1.x) and ``RECORD``;
* verifies **every** file of the archive against ``RECORD`` before anything
  is written: each file must be listed with a hash (sha256 or a stronger
  hashlib algorithm) and, when given, a size that match; every hashed
  ``RECORD`` entry must be in the archive; ``RECORD`` itself and its
  signatures (``RECORD.jws``/``RECORD.p7s``) are the only unhashed entries;
* rejects unsafe member names (absolute, ``..``, backslashes, NUL) and
  symlinks;
* maps ``{name}-{version}.data/purelib/…`` and ``…/platlib/…`` into the site
  directory (this target has one site directory for both) and leaves out the
  other ``.data`` schemes (``scripts``, ``headers``, ``data``): the agents
  never run a dependency's console scripts or compile against its headers;
* does not compile ``.pyc`` files and writes no ``INSTALLER``, ``REQUESTED``
  or ``direct_url.json``; drops ``RECORD.jws``/``RECORD.p7s`` (they sign the
  wheel's RECORD, not the installed one);
* rewrites ``RECORD`` to list the installed files (sorted, sha256, size), as
  an installer must, so ``importlib.metadata`` sees a consistent distribution.

The caller writes the returned files; this module only reads and checks.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import stat
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from hats.errors import HatsError
from hats.packaging.lockfile import normalize_name

_ALLOWED_HASHES = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512"})
_DIST_INFO = re.compile(r"^(?P<name>[^/-]+)-(?P<version>[^/-]+)\.dist-info$")
_SITE_SCHEMES = frozenset({"purelib", "platlib"})


class WheelError(HatsError):
    """A wheel is malformed or does not match its own RECORD."""


@dataclass(frozen=True)
class WheelFile:
    """One file to install, relative to the site directory."""

    path: str
    data: bytes


@dataclass(frozen=True)
class UnpackedWheel:
    """The verified, installable content of one wheel."""

    name: str
    version: str
    dist_info: str
    files: tuple[WheelFile, ...]
    skipped: tuple[str, ...]


def record_hash(data: bytes) -> str:
    """``sha256=<urlsafe base64, no padding>`` as used in RECORD files."""
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_member_name(wheel: str, name: str) -> None:
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in name.rstrip("/").split("/"))
        or re.match(r"^[A-Za-z]:", name)
    ):
        raise WheelError(f"{wheel}: unsafe member name {name!r}")


def _parse_record(wheel: str, text: str) -> dict[str, tuple[str, str]]:
    entries: dict[str, tuple[str, str]] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        if len(row) != 3:
            raise WheelError(f"{wheel}: RECORD row {row!r} does not have 3 fields")
        path, hash_value, size = row
        if path in entries:
            raise WheelError(f"{wheel}: RECORD lists {path} twice")
        entries[path] = (hash_value, size)
    return entries


def _verify(wheel: str, name: str, data: bytes, hash_value: str, size: str) -> None:
    algorithm, sep, expected = hash_value.partition("=")
    if not sep or algorithm not in _ALLOWED_HASHES:
        raise WheelError(f"{wheel}: {name}: unsupported RECORD hash {hash_value!r}")
    actual = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=")
    if actual.decode("ascii") != expected.rstrip("="):
        raise WheelError(f"{wheel}: {name}: content does not match its RECORD hash")
    if size and size != str(len(data)):
        raise WheelError(f"{wheel}: {name}: size {len(data)} does not match RECORD size {size}")


def read_wheel(path: Path) -> UnpackedWheel:
    """Read ``path``, verify it completely against its RECORD, return what to install."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WheelError(f"{path}: cannot read wheel: {exc.strerror}") from None
    return unpack_wheel_bytes(path.name, data)


def unpack_wheel_bytes(wheel: str, data: bytes) -> UnpackedWheel:
    """Verify the wheel ``data`` (named ``wheel`` in errors) against its RECORD.

    Working from bytes already in memory means the content that was hashed
    against the lock is the content that gets installed.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise WheelError(f"{wheel}: not a readable wheel: {exc}") from None
    with archive:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            _check_member_name(wheel, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise WheelError(f"{wheel}: {info.filename}: symlinks are not supported")
            if info.is_dir():
                continue
            if info.filename in members:
                raise WheelError(f"{wheel}: {info.filename} appears twice in the archive")
            members[info.filename] = info

        dist_infos = {
            name.split("/", 1)[0]
            for name in members
            if "/" in name and _DIST_INFO.match(name.split("/", 1)[0])
        }
        if len(dist_infos) != 1:
            raise WheelError(f"{wheel}: expected one .dist-info directory, found {len(dist_infos)}")
        dist_info = dist_infos.pop()
        match = _DIST_INFO.match(dist_info)
        assert match is not None
        data_dir = dist_info[: -len(".dist-info")] + ".data"

        try:
            wheel_meta = archive.read(f"{dist_info}/WHEEL").decode("utf-8")
            record_text = archive.read(f"{dist_info}/RECORD").decode("utf-8")
        except KeyError as exc:
            raise WheelError(f"{wheel}: missing {exc.args[0]}") from None
        except (UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
            raise WheelError(f"{wheel}: cannot read metadata: {exc}") from None
        wheel_version = HeaderParser().parsestr(wheel_meta).get("Wheel-Version", "")
        if not wheel_version.startswith("1."):
            raise WheelError(f"{wheel}: unsupported Wheel-Version {wheel_version!r}")

        record = _parse_record(wheel, record_text)
        unsigned = {f"{dist_info}/RECORD", f"{dist_info}/RECORD.jws", f"{dist_info}/RECORD.p7s"}
        for name in sorted(record):
            hash_value, _ = record[name]
            if name not in members and name not in unsigned and hash_value:
                raise WheelError(f"{wheel}: {name} is listed in RECORD but missing")

        files: list[WheelFile] = []
        skipped: list[str] = []
        for name in sorted(members):
            if name in unsigned:
                continue
            if name not in record or not record[name][0]:
                raise WheelError(f"{wheel}: {name} is not hashed in RECORD")
            try:
                content = archive.read(members[name])
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise WheelError(f"{wheel}: {name}: cannot read: {exc}") from None
            _verify(wheel, name, content, *record[name])
            target = name
            if name.startswith(data_dir + "/"):
                parts = name.split("/", 2)
                if len(parts) < 3 or parts[1] not in _SITE_SCHEMES:
                    skipped.append(name)
                    continue
                target = parts[2]
            files.append(WheelFile(target, content))

    seen: set[str] = set()
    for item in files:
        if item.path in seen:
            raise WheelError(f"{wheel}: two members install to {item.path}")
        seen.add(item.path)
    files.sort(key=lambda item: item.path)
    installed_record = io.StringIO()
    writer = csv.writer(installed_record, lineterminator="\n")
    record_path = f"{dist_info}/RECORD"
    for row in sorted(
        [(item.path, record_hash(item.data), str(len(item.data))) for item in files]
        + [(record_path, "", "")]
    ):
        writer.writerow(row)
    files.append(WheelFile(record_path, installed_record.getvalue().encode("utf-8")))
    files.sort(key=lambda item: item.path)
    return UnpackedWheel(
        name=normalize_name(match["name"]),
        version=match["version"],
        dist_info=dist_info,
        files=tuple(files),
        skipped=tuple(skipped),
    )
