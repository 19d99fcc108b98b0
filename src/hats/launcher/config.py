"""The launcher's inputs: the ``LauncherConfig`` text proto and the system bundle.

Spec system-image §5.2 (``pcit.client.LauncherConfig``) and §3.1–3.2 (the
system bundle). The reference launcher reads ``--launcher_config_path`` (a
text-format ``LauncherConfig``), then unpacks ``cvm_config.hats_system_bundle``
keeping only the members whose path **ends with** ``initrd.cpio.xz``,
``stage0_bin``, ``system.tar.xz`` or ``kernel_bin``; it serves
``system.tar.xz`` to stage1 and ``cvm_config.runc_runtime_bundle`` to the
orchestrator.

Here: :func:`load_launcher_config` parses the text proto (errors name the file
and line); :func:`select_bundle_members` is the pure "ends with" selection over
member names (hostile names, links and duplicates are errors);
:func:`open_system_bundle` extracts the selected members, by default only
``system.tar.xz`` (QEMU's files are not needed without QEMU), into a private
temporary directory under our own fixed names, so nothing outside it is ever
written. :func:`resolve_images` combines the config with explicit paths.

Relative paths in the config are taken relative to the current directory, as
the reference does.
"""

from __future__ import annotations

import lzma
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType

from google.protobuf import text_format

from hats.errors import HatsError
from hats.pb.pcit.client import launcher_config_pb2

DEFAULT_CONFIG_PATH = Path("launcher_config.txtpb")
SYSTEM_IMAGE = "system.tar.xz"
BUNDLE_SUFFIXES = ("initrd.cpio.xz", "stage0_bin", SYSTEM_IMAGE, "kernel_bin")


class LauncherConfigError(HatsError):
    """A launcher config, bundle or image path that cannot be used."""


def parse_launcher_config(text: str, source: str) -> launcher_config_pb2.LauncherConfig:
    """Parse a text-format ``pcit.client.LauncherConfig``; ``source`` names it in errors."""
    config = launcher_config_pb2.LauncherConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        line = exc.GetLine()
        where = f"{source}:{line}" if line is not None else source
        message = str(exc).splitlines()[0] if str(exc) else "parse error"
        # text_format prefixes "LINE:COL : "; keep only the reason.
        if " : " in message:
            message = message.split(" : ", 1)[1]
        raise LauncherConfigError(f"{where}: not a LauncherConfig text proto: {message}") from None
    return config


def load_launcher_config(path: Path) -> launcher_config_pb2.LauncherConfig:
    """Read and parse a ``LauncherConfig`` text proto file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LauncherConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LauncherConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_launcher_config(text, str(path))


@dataclass(frozen=True)
class BundleMember:
    """One member of a tar, as far as the selection needs it."""

    name: str
    is_file: bool = True


def _check_name(name: str, source: str) -> None:
    path = PurePosixPath(name)
    if name.startswith("/") or ".." in path.parts or "\0" in name or "\\" in name:
        raise LauncherConfigError(f"{source}: refusing hostile member name {name!r}")


def select_bundle_members(
    members: Iterable[BundleMember], source: str, suffixes: Sequence[str] = BUNDLE_SUFFIXES
) -> dict[str, str]:
    """``{suffix: member name}`` for the members whose path ends with a suffix.

    The reference's rule (plain string "ends with"); other members are skipped.
    A selected member with an absolute or ``..`` name, one that is not a
    regular file, or a second member for the same suffix is an error.
    """
    chosen: dict[str, str] = {}
    for member in members:
        suffix = next((s for s in suffixes if member.name.endswith(s)), None)
        if suffix is None:
            continue
        _check_name(member.name, source)
        if not member.is_file:
            raise LauncherConfigError(f"{source}: member {member.name!r} is not a regular file")
        if suffix in chosen:
            raise LauncherConfigError(
                f"{source}: both {chosen[suffix]!r} and {member.name!r} end with {suffix!r}"
            )
        chosen[suffix] = member.name
    return chosen


@dataclass
class SystemBundle:
    """Files extracted from a HATs system bundle into a private temporary directory."""

    source: Path
    directory: Path
    members: dict[str, str]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def system_image(self) -> Path:
        return self.files[SYSTEM_IMAGE]

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SystemBundle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def open_system_bundle(
    path: Path,
    extract: Sequence[str] = (SYSTEM_IMAGE,),
    temp_root: Path | None = None,
    optional: Sequence[str] = (),
) -> SystemBundle:
    """Extract ``extract`` and, when present, ``optional`` (suffixes) from the bundle tar.

    One pass over the tar. Each extracted member is written, streaming, as
    ``<tempdir>/<suffix>`` (mode 0600); its own name is never used as a path.
    Every suffix in ``extract`` must be present.
    """
    directory = Path(tempfile.mkdtemp(prefix="hats-", dir=temp_root))
    try:
        return _extract(path, directory, extract, optional)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


#: What reading a hostile (compressed) tar can raise besides tarfile's own errors.
_DECODE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


def _extract(
    path: Path, directory: Path, extract: Sequence[str], optional: Sequence[str]
) -> SystemBundle:
    source = str(path)
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise LauncherConfigError(f"{source}: no such system bundle") from None
    except tarfile.ReadError:
        # tarfile's message lists every method it tried, one per line.
        raise LauncherConfigError(
            f"{source}: not a readable tar (plain, gzip, bzip2 or xz)"
        ) from None
    except _DECODE_ERRORS as exc:  # e.g. EOFError: a gzip header and nothing after it
        raise LauncherConfigError(f"{source}: not a readable tar: {_one_line(exc)}") from None
    with archive:
        try:
            infos = archive.getmembers()
        except _DECODE_ERRORS as exc:
            raise LauncherConfigError(f"{source}: broken tar: {_one_line(exc)}") from None
        by_name = {info.name: info for info in infos}
        members = select_bundle_members(
            (BundleMember(info.name, info.isreg()) for info in infos), source
        )
        bundle = SystemBundle(source=path, directory=directory, members=members)
        for suffix in extract:
            if suffix not in members:
                raise LauncherConfigError(f"{source}: no member ends with {suffix!r}")
        wanted = [*extract, *(x for x in optional if x in members and x not in extract)]
        for suffix in wanted:
            target = directory / suffix
            reader = archive.extractfile(by_name[members[suffix]])
            if reader is None:  # pragma: no cover - isreg() members always have data
                raise LauncherConfigError(f"{source}: cannot read {members[suffix]!r}")
            try:
                with reader, open(target, "xb") as out:
                    target.chmod(0o600)
                    shutil.copyfileobj(reader, out, 1 << 20)
            except _DECODE_ERRORS as exc:
                raise LauncherConfigError(
                    f"{source}: truncated member {members[suffix]!r}: {_one_line(exc)}"
                ) from None
            bundle.files[suffix] = target
    return bundle


def _one_line(exc: BaseException) -> str:
    """An exception's text (the strerror of an OSError) on one line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass
class LauncherImages:
    """What the Oak ``Launcher`` service streams; either may be absent."""

    system_image: Path | None = None
    container_bundle: Path | None = None
    system_bundle: SystemBundle | None = None

    def cleanup(self) -> None:
        if self.system_bundle is not None:
            self.system_bundle.cleanup()


def _check_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise LauncherConfigError(f"{path}: {what} is not a readable file")
    return path


def resolve_images(
    config: launcher_config_pb2.LauncherConfig | None = None,
    *,
    system_image: Path | None = None,
    system_bundle: Path | None = None,
    container_bundle: Path | None = None,
    temp_root: Path | None = None,
    also_extract: Sequence[str] = (),
) -> LauncherImages:
    """Combine the config with explicit paths (explicit paths win).

    The system image is ``system_image`` if given, else ``system.tar.xz`` from
    ``system_bundle`` or from ``cvm_config.hats_system_bundle``. The container
    bundle is ``container_bundle`` or ``cvm_config.runc_runtime_bundle``.
    ``also_extract``: further bundle suffixes (the QEMU files) taken in the same
    pass when the bundle has them.
    """
    if system_image is not None and system_bundle is not None:
        raise LauncherConfigError("give a system image or a system bundle, not both")
    cvm = config.cvm_config if config is not None else None
    images = LauncherImages()
    if container_bundle is None and cvm is not None and cvm.runc_runtime_bundle:
        container_bundle = Path(cvm.runc_runtime_bundle)
    if container_bundle is not None:
        images.container_bundle = _check_file(container_bundle, "the container bundle")
    if system_image is not None:
        images.system_image = _check_file(system_image, "the system image")
        return images
    if system_bundle is None and cvm is not None and cvm.hats_system_bundle:
        system_bundle = Path(cvm.hats_system_bundle)
    if system_bundle is not None:
        images.system_bundle = open_system_bundle(
            system_bundle, temp_root=temp_root, optional=also_extract
        )
        images.system_image = images.system_bundle.system_image
    return images
