"""The default layout reproduces the reference bytes (rules_pkg + ``xz -T1``)."""

from __future__ import annotations

import hashlib
import lzma
import tarfile
from pathlib import Path

import oracle
import pytest
from image_support import REFERENCE_VARIANTS, SHARE_TYPE, Inputs

from hats.image import units
from hats.image.build import BuildOptions, build_image
from hats.image.lint import ERROR_CODES
from hats.image.settings import AgentInputs, KeyInputs, LintOptions, Outputs


def build(
    tmp: Path,
    base: Path,
    inputs: Inputs,
    variant: str,
    units_dir: Path,
    keys_dir: Path,
    **extra: object,
) -> tuple[Path, Path]:
    out = tmp / f"hats_system_image_{variant}.tar.xz"
    options = BuildOptions(
        keys=KeyInputs(tvs_keys=keys_dir / f"{variant}.txt", secret_share_type=SHARE_TYPE[variant]),
        outputs=Outputs(image=out, tar=tmp / f"{variant}.tar"),
        base=base,
        agents=AgentInputs(
            orchestrator=inputs.orchestrator,
            agent=inputs.agent,
            syslogd=inputs.syslogd,
            orchestrator_unit=units_dir / f"{variant}.oak-orchestrator.service",
            syslogd_unit=units_dir / "oak-syslogd.service",
        ),
        lint=LintOptions(allow=ERROR_CODES),
        **extra,  # type: ignore[arg-type]
    )
    build_image(options)
    return out, tmp / f"{variant}.tar"


def reference(
    tmp: Path, base: Path, inputs: Inputs, variant: str, units_dir: Path, keys_dir: Path
) -> tuple[bytes, bytes]:
    work = tmp / "oracle"
    work.mkdir(exist_ok=True)
    bins = inputs.binaries()
    return oracle.reference_image(
        work,
        base,
        orchestrator=bins["orchestrator"],
        agent=bins["agent"],
        syslogd=bins["syslogd"],
        orchestrator_unit=(units_dir / f"{variant}.oak-orchestrator.service").read_bytes(),
        syslogd_unit=(units_dir / "oak-syslogd.service").read_bytes(),
        keys=(keys_dir / f"{variant}.txt").read_bytes(),
    )


@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_reference_variants_are_byte_identical(
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    variant: str,
    reference_units: Path,
    reference_keys: Path,
) -> None:
    out, tar = build(tmp_path, bases["xz"], inputs, variant, reference_units, reference_keys)
    ref_tar, ref_xz = reference(
        tmp_path, bases["xz"], inputs, variant, reference_units, reference_keys
    )
    assert tar.read_bytes() == ref_tar
    assert out.read_bytes() == ref_xz


@pytest.mark.parametrize("kind", ["tar", "gz", "zst", "pax", "bare", "orphans"])
def test_any_base_form_gives_reference_bytes(
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    kind: str,
    reference_units: Path,
    reference_keys: Path,
) -> None:
    out, tar = build(tmp_path, bases[kind], inputs, "test_xor_2", reference_units, reference_keys)
    # tarfile (and so rules_pkg) cannot read zstd: its reference is the plain tar's.
    oracle_base = bases["tar" if kind == "zst" else kind]
    ref_tar, ref_xz = reference(
        tmp_path, oracle_base, inputs, "test_xor_2", reference_units, reference_keys
    )
    assert tar.read_bytes() == ref_tar
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(ref_xz).hexdigest()


def test_compressed_bases_give_the_same_image(
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    reference_units: Path,
    reference_keys: Path,
) -> None:
    digests = set()
    for kind in ("tar", "xz", "gz", "zst"):
        work = tmp_path / kind
        work.mkdir()
        out, _ = build(work, bases[kind], inputs, "test_single", reference_units, reference_keys)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


SPEC_TAIL = [
    ("usr/", "5", 0o755, 0),
    ("usr/bin/", "5", 0o755, 0),
    ("usr/bin/oak_containers_agent", "0", 0o755, None),
    ("usr/bin/oak_containers_syslogd", "0", 0o755, None),
    ("usr/bin/orchestrator_main", "0", 0o755, None),
    ("etc/", "5", 0o755, 0),
    ("etc/systemd/", "5", 0o755, 0),
    ("etc/systemd/network/", "5", 0o755, 0),
    ("etc/systemd/network/10-enp0s1.network", "0", 0o555, 0),
    ("etc/", "5", 0o755, 0),
    ("etc/systemd/", "5", 0o755, 0),
    ("etc/systemd/system/", "5", 0o755, 0),
    ("etc/systemd/system/oak-orchestrator.service", "0", 0o555, None),
    ("etc/systemd/system/oak-syslogd.service", "0", 0o555, None),
    ("hats/", "5", 0o755, 0),
    ("hats/tvs_public_keys.txt", "0", 0o555, None),
]


def raw_entries(tar_bytes: bytes) -> list[tuple[str, str, int, int, int, int, bytes]]:
    """(name as stored, type, mode, uid, gid, mtime, uname+gname) per header."""
    out = []
    pos = 0
    while pos + 512 <= len(tar_bytes):
        block = tar_bytes[pos : pos + 512]
        if block == bytes(512):
            break
        size = int(block[124:136].rstrip(b"\x00") or b"0", 8)
        kind = block[156:157].decode()
        if kind == "L":
            name = tar_bytes[pos + 512 : pos + 512 + size].rstrip(b"\x00").decode()
            pos += 512 + -(-size // 512) * 512
            block = tar_bytes[pos : pos + 512]
            size = int(block[124:136].rstrip(b"\x00") or b"0", 8)
            kind = block[156:157].decode()
        else:
            name = block[:100].rstrip(b"\x00").decode()
        out.append(
            (
                name,
                kind,
                int(block[100:108].rstrip(b"\x00"), 8),
                int(block[108:116].rstrip(b"\x00"), 8),
                int(block[116:124].rstrip(b"\x00"), 8),
                int(block[136:148].rstrip(b"\x00"), 8),
                block[265:329],
            )
        )
        pos += 512 + -(-size // 512) * 512
    return out


def test_hats_tail_matches_the_spec_listing(
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    reference_units: Path,
    reference_keys: Path,
) -> None:
    _, tar = build(tmp_path, bases["xz"], inputs, "test_single", reference_units, reference_keys)
    entries = raw_entries(tar.read_bytes())
    tail = entries[-len(SPEC_TAIL) :]
    for (name, kind, mode, uid, gid, mtime, owners), (want_name, want_kind, want_mode, _) in zip(
        tail, SPEC_TAIL, strict=True
    ):
        assert (name, kind, mode) == (want_name, want_kind, want_mode)
        assert (uid, gid, mtime) == (0, 0, 946684800)
        assert owners == bytes(64)
    head = entries[: -len(SPEC_TAIL)]
    assert head[0][0] == "./"
    assert all(name.startswith("./") for name, *_ in head)
    # the long-named file kept its name through a GNU long-name record
    assert any(name.endswith("/données.txt") and len(name.encode()) > 100 for name, *_ in head)
    # devices, FIFOs, hard links and setuid bits survive the merge
    kinds = {name: (kind, mode) for name, kind, mode, *_ in head}
    assert kinds["./dev/null"][0] == "3" and kinds["./dev/initctl"][0] == "6"
    assert kinds["./usr/bin/passwd"] == ("0", 0o4755)
    assert "1" in {kind for kind, _ in kinds.values()}
    assert tar.stat().st_size % 10240 == 0


def test_output_is_one_xz_stream_with_crc64(
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    reference_units: Path,
    reference_keys: Path,
) -> None:
    out, tar = build(tmp_path, bases["xz"], inputs, "test_single", reference_units, reference_keys)
    data = out.read_bytes()
    assert data[:6] == b"\xfd7zXZ\x00" and data[6:8] == b"\x00\x04"  # stream flags: CRC64
    assert data.count(b"\xfd7zXZ\x00") == 1
    decoder = lzma.LZMADecompressor()
    assert decoder.decompress(data) == tar.read_bytes() and decoder.eof
    assert decoder.unused_data == b""


@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_rendered_units_have_the_reference_exec_lines(variant: str, reference_units: Path) -> None:
    heartbeat = 1 if "heartbeat" in variant else None
    ours = units.render_orchestrator_unit(SHARE_TYPE[variant], heartbeat)
    theirs = (reference_units / f"{variant}.oak-orchestrator.service").read_bytes()
    for key in ("ExecStart", "PassEnvironment"):
        assert units.unit_directives(ours)[key] == units.unit_directives(theirs)[key]
    # and every other directive too: only the comments and Description are ours
    ours_d, theirs_d = units.unit_directives(ours), units.unit_directives(theirs)
    ours_d.pop("Description"), theirs_d.pop("Description")
    assert ours_d == theirs_d
    syslogd_ref = (reference_units / "oak-syslogd.service").read_bytes()
    ours_s = units.unit_directives(units.render_syslogd_unit())
    theirs_s = units.unit_directives(syslogd_ref)
    for key in ("ExecStart", "PassEnvironment"):
        assert ours_s[key] == theirs_s[key]
    ours_s.pop("Description"), theirs_s.pop("Description")
    assert ours_s == theirs_s


def test_extra_flags_and_bad_options() -> None:
    line = units.orchestrator_exec_start("xor", 5, ["--runtime-user=oakc"])
    assert line.endswith("--secret-share-type=xor --tvs-heartbeat-frequency=5 --runtime-user=oakc")
    for bad in (["--x=a b"], ["--x=$HOME"], ["--x=%n"], ['--x="q"'], ["--x\n"]):
        with pytest.raises(units.UnitOptionError):
            units.orchestrator_exec_start("xor", None, bad)
    with pytest.raises(units.UnitOptionError):
        units.orchestrator_exec_start("XOR")
    with pytest.raises(units.UnitOptionError):
        units.orchestrator_exec_start("xor", 0)


def test_tarfile_reads_the_output_with_duplicates_in_order(
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    reference_units: Path,
    reference_keys: Path,
) -> None:
    out, _ = build(tmp_path, bases["xz"], inputs, "test_single", reference_units, reference_keys)
    with tarfile.open(out) as tar:
        names = [m.name for m in tar.getmembers()]
        unit = tar.extractfile("etc/systemd/system/oak-orchestrator.service")
        assert unit is not None
        assert (
            unit.read() == (reference_units / "test_single.oak-orchestrator.service").read_bytes()
        )
    assert names.count("etc") == 2 and "./etc" in names
    assert names.index("./etc/systemd/system/oak-orchestrator.service") < names.index(
        "etc/systemd/system/oak-orchestrator.service"
    )
