"""``hats image`` end to end: real files, bad input.

In-process (:func:`suite_support.run_hats`), except what
only a real process shows: exit status and stderr of an unknown option and of a
bad key file, and the build's independence from umask, TZ and locale.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest
from image_support import Inputs

import shared_data
from hats.packaging import agents_layer
from hats.packaging.agents_layer import AgentsTree
from suite_support import run_hats

HATS = [sys.executable, "-m", "hats"]


def run_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``hats ARGS`` as a real process."""
    return subprocess.run(
        [*HATS, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def base_args(base: Path, inputs: Inputs, keys: Path, share: str = "no-split") -> list[str]:
    return [
        "--base",
        str(base),
        "--tvs-keys",
        str(keys),
        "--allow-test-keys",  # the reference's key files hold its test keys (1·G, ...)
        "--secret-share-type",
        share,
        "--orchestrator",
        str(inputs.orchestrator),
        "--agent",
        str(inputs.agent),
        "--syslogd",
        str(inputs.syslogd),
    ]


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("hats: layer")]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def no_leftovers(directory: Path) -> bool:
    return not any(p.name.endswith(".part") or p.suffix == ".xz" for p in directory.iterdir())


@pytest.fixture()
def keys(reference_keys: Path) -> Path:
    return reference_keys / "test_single.txt"


def test_build_json_and_outputs(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    out = tmp_path / "out" / "hats_system_image_test_single.tar.xz"
    result = run_hats(
        "image",
        "build",
        *base_args(bases["xz"], inputs, keys),
        "-o",
        out,
        "--manifest",
        tmp_path / "m.json",
        "--sums",
        tmp_path / "SHA256SUMS",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert summary["sha256"] == digest and summary["size"] == out.stat().st_size
    assert summary["path"] == str(out)
    assert (tmp_path / "SHA256SUMS").read_text() == f"{digest} hats_system_image_test_single\n"
    manifest = json.loads((tmp_path / "m.json").read_text())
    # Both name the tool that built the image, as the installed distribution says.
    assert summary["hats_version"] == manifest["hats_version"] == version("hats")
    by_path = {e["path"]: e for e in manifest["entries"]}
    unit = by_path["/etc/systemd/system/oak-orchestrator.service"]
    assert unit["layer"] == "services" and unit["overrides"] == ["base"]
    assert unit["mode"] == "0555" and len(unit["sha256"]) == 64
    assert by_path["/usr/bin/passwd"]["archive_mode"] == "4755"
    assert by_path["/usr/bin/passwd"]["mode"] == "0755"
    assert (
        by_path["/hats/tvs_public_keys.txt"]["sha256"]
        == hashlib.sha256(keys.read_bytes()).hexdigest()
    )
    assert by_path["/etc/systemd/network/10-enp0s1.network"]["size"] == 0
    # verify against the digest, the sums file and a policy
    assert run_hats("image", "verify", out, "--sha256", digest).returncode == 0
    assert run_hats("image", "verify", out, "--sums", tmp_path / "SHA256SUMS").returncode == 0
    assert run_hats("image", "verify", out, "--sha256", "0" * 64).returncode == 1


def test_verify_against_policies(tmp_path: Path) -> None:
    policy = shared_data.EVIDENCE / "on-perm-reference.txtpb"
    image = tmp_path / "x.tar.xz"
    image.write_bytes(lzma.compress(b"not the reference image"))
    result = run_hats("image", "verify", image, "--policy", policy)
    assert result.returncode == 1 and "MISMATCH" in result.stderr
    mine = tmp_path / "policy.txtpb"
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    mine.write_text(
        policy.read_text().replace(
            "3c59bd10c2b890ff152cc57fdca0633693acbb04982da90c670de6530fa8a836", digest
        )
        + '# system_image_sha256: "'
        + "f" * 64
        + '"\n'
    )
    assert run_hats("image", "verify", image, "--policy", mine).returncode == 0
    bad = tmp_path / "bad.txtpb"
    bad.write_text('policies { measurement { system_image_sha256: "xyz" } }')
    assert_one_line_error(
        run_hats("image", "verify", image, "--policy", bad), "bad.txtpb", "not a SHA-256"
    )
    syntax = tmp_path / "syntax.txtpb"
    syntax.write_text("policies { measurement { system_image_sha256: ")
    assert_one_line_error(
        run_hats("image", "verify", image, "--policy", syntax),
        "syntax.txtpb",
        "not a text-format AppraisalPolicies",
    )


def test_spec_file_build_equals_options_build(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    spec = tmp_path / "spec" / "image.toml"
    spec.parent.mkdir()
    spec.write_text(
        f'output = "built.tar.xz"\ntvs_keys = "{keys}"\nsecret_share_type = "no-split"\n'
        "allow_test_keys = true\n"
        f'base = "{bases["tar"]}"\n'
        f'[binaries]\norchestrator = "{inputs.orchestrator}"\nagent = "{inputs.agent}"\n'
        f'syslogd = "{inputs.syslogd}"\n'
    )
    first = run_hats("image", "build", "-q", spec, "--json")
    assert first.returncode == 0, first.stderr
    second = run_hats(
        "image", "build", "-q", *base_args(bases["xz"], inputs, keys), "-o", tmp_path / "cli.tar.xz"
    )
    assert second.returncode == 0, second.stderr
    assert (spec.parent / "built.tar.xz").read_bytes() == (tmp_path / "cli.tar.xz").read_bytes()
    # An option given with a spec overrides it (as mkosi's do); --json shows the merged settings.
    mixed = run_hats("image", "build", "-q", spec, "--base", bases["xz"], "--json")
    assert mixed.returncode == 0, mixed.stderr
    assert json.loads(mixed.stdout)["settings"]["base"] == str(bases["xz"])
    spec.write_text(spec.read_text() + "colour = 'blue'\n")
    assert_one_line_error(run_hats("image", "build", spec), "image.toml", "unknown key 'colour'")


def test_diff_and_inspect(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, reference_keys: Path
) -> None:
    a, b = tmp_path / "a.tar.xz", tmp_path / "b.tar.xz"
    assert (
        run_hats(
            "image",
            "build",
            "-q",
            *base_args(bases["xz"], inputs, reference_keys / "test_single.txt"),
            "-o",
            a,
        ).returncode
        == 0
    )
    assert (
        run_hats(
            "image",
            "build",
            "-q",
            *base_args(bases["xz"], inputs, reference_keys / "test_xor_2.txt", "xor"),
            "-o",
            b,
        ).returncode
        == 0
    )
    same = run_hats("image", "diff", a, a)
    assert same.returncode == 0 and "no differences" in same.stdout
    diff = run_hats("image", "diff", a, b, "--json")
    assert diff.returncode == 1
    changes = {c["path"]: c for c in json.loads(diff.stdout)["changes"]}
    assert set(changes) == {
        "/hats/tvs_public_keys.txt",
        "/etc/systemd/system/oak-orchestrator.service",
    }
    assert changes["/hats/tvs_public_keys.txt"]["fields"] == ["sha256", "size"]
    shown = run_hats("image", "inspect", a, "/etc/systemd", "--json")
    entries = {e["path"]: e for e in json.loads(shown.stdout)["entries"]}
    assert "/etc/hostname" not in entries
    assert entries["/etc/systemd/network/10-enp0s1.network"]["size"] == 0
    assert len(entries["/etc/systemd/network/10-enp0s1.network"]["overrides"]) == 1
    text = run_hats("image", "inspect", a, "/tmp", "/usr/bin/passwd")
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].startswith("drwxrwxrwx")  # sticky bit dropped
    missing = run_hats("image", "inspect", a, "/nope")
    assert_one_line_error(missing, "/nope", "not in the image")


def test_lint_errors_fail_the_build_and_leave_nothing(
    tmp_path: Path, toy_root: Path, inputs: Inputs, reference_keys: Path
) -> None:
    base = tmp_path / "root"  # a directory as the base
    subprocess.run(["cp", "-a", toy_root, base], check=True)
    (base / "oak").mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "img.tar.xz"
    result = run_hats(
        "image",
        "build",
        *base_args(base, inputs, reference_keys / "test_single.txt"),
        "-o",
        out,
        "--tar",
        out_dir / "img.tar",
    )
    assert_one_line_error(result, "/oak", "[oak-dir]", "not written")
    assert list(out_dir.iterdir()) == []
    allowed = run_hats(
        "image",
        "build",
        "-q",
        *base_args(base, inputs, reference_keys / "test_single.txt"),
        "-o",
        out,
        "--lint-allow",
        "oak-dir",
    )
    assert allowed.returncode == 0, allowed.stderr
    lint = run_hats("image", "lint", out, "--json")
    assert lint.returncode == 1
    codes = {f["code"] for f in json.loads(lint.stdout)["findings"]}
    assert {"oak-dir", "special-bits", "device"} <= codes


@pytest.mark.parametrize(
    ("keys_name", "share", "needle"),
    [
        ("test_single.txt", "xor", "needs at least 2"),
        ("test_xor_2.txt", "no-split", "needs exactly 1"),
        ("test_xor_2.txt", "shamir", "needs at least 3"),
    ],
)
def test_key_count_must_suit_the_share_type(
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    reference_keys: Path,
    keys_name: str,
    share: str,
    needle: str,
) -> None:
    result = run_hats(
        "image",
        "build",
        *base_args(bases["xz"], inputs, reference_keys / keys_name, share),
        "-o",
        tmp_path / "x.tar.xz",
    )
    assert_one_line_error(result, "[key-count]", needle)
    assert no_leftovers(tmp_path)


def test_bad_key_file_names_the_line(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, reference_keys: Path
) -> None:
    """A real process: the one line on stderr is all the user sees, without the key."""
    lines = (reference_keys / "test_shamir_2_of_3.txt").read_text().splitlines()
    bad = tmp_path / "keys.txt"
    bad.write_text(lines[0] + "\n" + lines[1][:-2] + "zz\n")
    result = run_process(
        "image", "build", *base_args(bases["xz"], inputs, bad, "xor"), "-o", tmp_path / "x.tar.xz"
    )
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result, f"{bad}:2")
    assert lines[1][2:20] not in result.stderr
    assert no_leftovers(tmp_path)


def write_corrupt_bases(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    xz = lzma.compress(data)
    cases = {
        "truncated-xz": (xz[: len(xz) // 2], "truncated"),
        "corrupt-xz": (xz[:200] + bytes(64) + xz[264:], "corrupt xz data"),
        "bad-header": (data[: 512 * 3] + b"garbage!" * 64 + data[512 * 4 :], "invalid tar header"),
        "truncated-tar": (data[: 512 * 5 + 100], "truncated archive"),
        "empty": (b"", "file is empty"),
        "text": (b"hello world\n" * 100, "not a tar archive"),
    }
    out = {}
    for name, (payload, needle) in cases.items():
        path = tmp / f"{name}.tar.xz"
        path.write_bytes(payload)
        out[name] = (path, needle)
    out["missing"] = (tmp / "missing.tar.xz", "no such file")
    return out


def test_bad_bases_fail_with_one_line_and_no_output(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    work = tmp_path / "bases"
    work.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name, (path, needle) in write_corrupt_bases(work, bases["tar"]).items():
        result = run_hats(
            "image", "build", "-q", *base_args(path, inputs, keys), "-o", out_dir / f"{name}.tar.xz"
        )
        assert_one_line_error(result, needle)
        assert path.name in result.stderr, name
        assert list(out_dir.iterdir()) == [], name


def hostile_tar(path: Path, name: str, link: str = "") -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        if link:
            info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info, None)
    return path


@pytest.mark.parametrize("name", ["/etc/evil", "../../escape", "usr/../../x"])
def test_hostile_names_are_lint_errors(
    tmp_path: Path, inputs: Inputs, keys: Path, name: str
) -> None:
    extra = hostile_tar(tmp_path / "evil.tar", name)
    good = tmp_path / "out.tar.xz"
    result = run_hats(
        "image",
        "build",
        "-q",
        "--base",
        extra,
        "--tvs-keys",
        keys,
        "--allow-test-keys",
        "--secret-share-type",
        "no-split",
        "--orchestrator",
        inputs.orchestrator,
        "--agent",
        inputs.agent,
        "--syslogd",
        inputs.syslogd,
        "-o",
        good,
        "--lint-allow",
        "missing-exec",
    )
    assert_one_line_error(result, "[unsafe-name]")
    assert not good.exists()


def test_unwritable_output_and_unknown_option(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    target = locked / "sub"
    target.write_text("a file, not a directory")
    result = run_hats(
        "image", "build", *base_args(bases["tar"], inputs, keys), "-o", target / "img.tar.xz"
    )
    assert_one_line_error(result, "img.tar.xz")
    unknown = run_process("image", "build", "--frobnicate")  # as the shell sees it
    assert unknown.returncode == 2 and "No such option" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    not_xz = run_hats(
        "image", "build", *base_args(bases["tar"], inputs, keys), "-o", tmp_path / "img.tar"
    )
    assert_one_line_error(not_xz, "must be an .xz file")


def test_determinism_across_environment(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    """umask, TZ, locale, input mtimes/modes and directory order do not matter."""
    digests = []
    for run_no, (umask, tz) in enumerate([("0022", "UTC"), ("0077", "Pacific/Kiritimati")]):
        work = tmp_path / f"run{run_no}"
        work.mkdir()
        binaries = {}
        for name in ("orchestrator", "agent", "syslogd"):
            copy = work / name
            copy.write_bytes(getattr(inputs, name).read_bytes())
            os.utime(copy, (1e9 + run_no * 12345, 1e9 + run_no * 12345))
            copy.chmod(0o700 if run_no else 0o644)
            binaries[name] = copy
        layer = work / "layer"
        names = ["b.txt", "a.txt", "c/d.txt"] if run_no else ["c/d.txt", "a.txt", "b.txt"]
        for name in names:
            (layer / name).parent.mkdir(parents=True, exist_ok=True)
            (layer / name).write_text(name)
            os.utime(layer / name, (run_no * 1e8, run_no * 1e8))
        env = {
            **os.environ,
            "TZ": tz,
            "LC_ALL": "C" if run_no else "C.UTF-8",
            "SOURCE_DATE_EPOCH": str(run_no),
        }
        out = work / "img.tar.xz"
        result = subprocess.run(
            [
                "sh",
                "-c",
                f'umask {umask} && exec "$@"',
                "sh",
                *HATS,
                "image",
                "build",
                "-q",
                "--base",
                str(bases["xz"]),
                "--tvs-keys",
                str(keys),
                "--allow-test-keys",
                "--secret-share-type",
                "no-split",
                "--orchestrator",
                str(binaries["orchestrator"]),
                "--agent",
                str(binaries["agent"]),
                "--syslogd",
                str(binaries["syslogd"]),
                "--layer",
                f"{layer}:/opt/extra",
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_extraction_by_gnu_tar_and_tarfile_gives_the_effective_tree(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    out = tmp_path / "img.tar.xz"
    assert (
        run_hats(
            "image", "build", "-q", *base_args(bases["xz"], inputs, keys), "-o", out
        ).returncode
        == 0
    )
    expected = {
        e["path"]: e
        for e in json.loads(run_hats("image", "inspect", out, "--json").stdout)["entries"]
    }
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    subprocess.run(["tar", "-xJf", out, "-C", gnu], check=True)
    py = tmp_path / "py"
    py.mkdir()
    with tarfile.open(out) as tar:
        tar.extractall(py, filter="fully_trusted")
    for root in (gnu, py):
        for path, entry in expected.items():
            on_disk = root / path.lstrip("/")
            st = on_disk.lstat()
            if entry["type"] == "symlink":
                assert os.readlink(on_disk) == entry["link"], path
                continue
            assert f"{st.st_mode & 0o777:04o}" == entry["mode"], (root.name, path)
            if entry["type"] in ("file", "hardlink"):
                digest = hashlib.sha256(on_disk.read_bytes()).hexdigest()
                assert digest == entry["sha256"], path
        unit = root / "etc/systemd/system/oak-orchestrator.service"
        assert b"/usr/bin/orchestrator_main" in unit.read_bytes()  # the later entry won
        assert (root / "etc/systemd/network/10-enp0s1.network").stat().st_size == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_accepts_the_rendered_units(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, reference_keys: Path
) -> None:
    out = tmp_path / "img.tar.xz"
    result = run_hats(
        "image",
        "build",
        "-q",
        *base_args(bases["xz"], inputs, reference_keys / "test_single_1sec_heartbeat.txt"),
        "--tvs-heartbeat-frequency",
        "1",
        "--orchestrator-flag=--runtime-user=oakc",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-xJf", out, "-C", root], check=True)
    # The toy base has no systemd of its own: lend it the host's unit directory.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = [
        "/etc/systemd/system/oak-orchestrator.service",
        "/etc/systemd/system/oak-syslogd.service",
    ]
    check = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *units],
        capture_output=True,
        text=True,
        timeout=120,
    )
    problems = [line for line in check.stderr.splitlines() if "marked executable" not in line]
    assert check.returncode == 0 and problems == [], check.stderr
    text = (root / units[0].lstrip("/")).read_text()
    assert "--tvs-heartbeat-frequency=1 --runtime-user=oakc\n" in text


@pytest.mark.network
def test_default_agents_need_python_in_the_base(
    tmp_path: Path,
    bases: dict[str, Path],
    keys: Path,
    agents_tree: AgentsTree,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without binaries the image runs our agents; lint catches a base without python3."""
    # The session's agents tree (tests/packaging checks how it is built) stands
    # in for the two builds' own: the same wheels and hats sources.
    monkeypatch.setattr(agents_layer, "build_agents_tree", lambda _root, **_: agents_tree)
    out = tmp_path / "img.tar.xz"
    result = run_hats(
        "image",
        "build",
        "-q",
        "--base",
        bases["xz"],
        "--tvs-keys",
        keys,
        "--allow-test-keys",
        "--secret-share-type",
        "no-split",
        "-o",
        out,
    )
    assert_one_line_error(result, "[missing-exec]", "interpreter /usr/bin/python3")
    assert not out.exists()
    allowed = run_hats(
        "image",
        "build",
        "-q",
        "--base",
        bases["xz"],
        "--tvs-keys",
        keys,
        "--allow-test-keys",
        "--secret-share-type",
        "no-split",
        "-o",
        out,
        "--lint-allow",
        "missing-exec",
        "--manifest",
        tmp_path / "m.json",
    )
    assert allowed.returncode == 0, allowed.stderr
    entries = {e["path"]: e for e in json.loads((tmp_path / "m.json").read_text())["entries"]}
    launcher = entries["/usr/bin/orchestrator_main"]
    assert launcher["layer"] == "admin_bin" and launcher["mode"] == "0755"
    assert entries["/usr/lib/hats/python/hats/orchestrator/__main__.py"]["layer"] == "hats-agents"
    assert any(p.startswith("/usr/lib/hats/python/grpc/") for p in entries)
