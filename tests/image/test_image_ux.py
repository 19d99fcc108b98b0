"""``hats image`` as a user types it (issue 15, [ux]): checks before compression,
``--check``, progress, signals, ``--json``, exit codes, digests, SHA256SUMS forms,
spec merging and "did you mean", ``image diff`` on equal trees, ``--layer``
destinations and output directories.

Most tests run the CLI in-process (``hats.cli.main``); the signal tests run it
as a real process.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from image_support import Inputs

from hats.cli import main
from hats.console import PlainProgress
from hats.image import build as build_module

README = Path(__file__).resolve().parents[2] / "README.md"
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def hats(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``hats ARGS`` in-process: (exit code, stdout, stderr)."""

    def run(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture()
def keys(reference_keys: Path) -> Path:
    return reference_keys / "test_single.txt"


def binaries(inputs: Inputs) -> list[str]:
    return [
        "--orchestrator",
        str(inputs.orchestrator),
        "--agent",
        str(inputs.agent),
        "--syslogd",
        str(inputs.syslogd),
    ]


def args(base: Path, inputs: Inputs, keys: Path, share: str = "no-split") -> list[str]:
    return [
        "--base",
        str(base),
        "--tvs-keys",
        str(keys),
        "--allow-test-keys",
        "--secret-share-type",
        share,
        *binaries(inputs),
    ]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".part"))


class NoCompression:
    """Stands in for the compressors: a test fails if compression starts."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("compression started although an input check must fail first")


@pytest.fixture()
def no_compression(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "XzSink", NoCompression)
    monkeypatch.setattr(build_module, "ParallelXzSink", NoCompression)


# -- 1. every input check before the first compressed byte; --check -----------------------


@pytest.mark.parametrize(
    ("keys_name", "share", "needle"),
    [
        ("test_single.txt", "xor", "needs at least 2"),
        ("test_xor_2.txt", "no-split", "needs exactly 1"),
    ],
)
def test_key_count_vs_share_type_fails_before_compression(
    hats: Run,
    no_compression: None,
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    reference_keys: Path,
    keys_name: str,
    share: str,
    needle: str,
) -> None:
    out = tmp_path / "x.tar.xz"
    code, _, err = hats(
        "image", "build", *args(bases["tar"], inputs, reference_keys / keys_name, share), "-o", out
    )
    assert code == 1 and "[key-count]" in err and needle in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_missing_exec_fails_before_compression(
    hats: Run, no_compression: None, tmp_path: Path, inputs: Inputs, keys: Path
) -> None:
    base = tmp_path / "base.tar"  # no /bin/sh: the binaries' interpreter is missing
    with tarfile.open(base, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("./etc/hostname"))
    code, _, err = hats("image", "build", *args(base, inputs, keys), "-o", tmp_path / "x.tar.xz")
    assert code == 1 and "[missing-exec]" in err and "missing, but" in err


def test_test_keys_fail_before_compression(
    hats: Run,
    no_compression: None,
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    keys: Path,
) -> None:
    code, _, err = hats(
        "image",
        "build",
        "--base",
        bases["tar"],
        "--tvs-keys",
        keys,
        "--secret-share-type",
        "no-split",
        *binaries(inputs),
        "-o",
        tmp_path / "x.tar.xz",
    )
    assert code == 1 and "[test-key]" in err


def test_check_is_a_dry_run_with_a_summary(
    hats: Run,
    no_compression: None,
    tmp_path: Path,
    bases: dict[str, Path],
    inputs: Inputs,
    reference_keys: Path,
) -> None:
    out = tmp_path / "new" / "img.tar.xz"
    common = [
        *args(bases["xz"], inputs, reference_keys / "test_xor_2.txt", "xor"),
        "-o",
        out,
        "--manifest",
        tmp_path / "m.json",
    ]
    code, stdout, _ = hats("image", "build", "--check", *common, "--json")
    assert code == 0
    document = json.loads(stdout)
    plan = document["plan"]
    assert [layer["name"] for layer in plan["layers"]] == [
        "base",
        "admin_bin",
        "interface",
        "services",
        "tvs_public_keys",
    ]
    assert plan["keys"] == 2 and plan["secret_share_type"] == "xor"
    assert plan["base"] == str(bases["xz"])
    # The tar size is exact: the layers plus the end-of-archive padding, a multiple of 10240.
    assert plan["tar_size"] % 10240 == 0
    assert 0 <= plan["tar_size"] - sum(layer["tar_bytes"] for layer in plan["layers"]) <= 10240
    assert plan["outputs"] == [str(out), str(tmp_path / "m.json")]
    assert document["settings"]["secret_share_type"] == "xor"
    assert not (tmp_path / "new").exists() and not (tmp_path / "m.json").exists()
    code, stdout, _ = hats("image", "build", "--check", *common)
    assert code == 0
    assert re.search(r"^keys: 2, secret share type xor$", stdout, re.M)
    assert re.search(r"^  base +\d", stdout, re.M)
    assert "nothing written" in stdout and not (tmp_path / "new").exists()
    # The plan's tar size is the real tar's.
    code, _, err = hats(
        "image", "build", "--check", *args(bases["xz"], inputs, reference_keys / "test_single.txt")
    )
    assert code == 0, err


def test_check_fails_on_what_the_build_would_fail_on(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, reference_keys: Path
) -> None:
    code, stdout, err = hats(
        "image",
        "build",
        "--check",
        *args(bases["tar"], inputs, reference_keys / "test_single.txt", "shamir"),
    )
    assert code == 1 and "[key-count]" in err and "needs at least 3" in err
    assert stdout == ""


def test_the_plan_size_is_the_tar_size(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    code, stdout, _ = hats("image", "build", "--check", "--json", *args(bases["xz"], inputs, keys))
    planned = json.loads(stdout)["plan"]["tar_size"]
    out = tmp_path / "img.tar.xz"
    code, stdout, _ = hats(
        "image", "build", "-q", "--json", *args(bases["xz"], inputs, keys), "-o", out
    )
    assert code == 0
    assert json.loads(stdout)["tar_size"] == planned == len(lzma.decompress(out.read_bytes()))


# -- 2. progress --------------------------------------------------------------------------


def test_plain_progress_prints_each_ten_percent_or_every_ten_seconds() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = PlainProgress(1000, lines.append, clock=lambda: now[0])
    for _ in range(9):  # 9%: no step reached, no time passed
        progress.advance(10)
    assert lines == []
    progress.advance(10)  # 10%
    assert len(lines) == 1 and lines[0].startswith("compressing: 10% (")
    now[0] = 5.0
    progress.advance(5)  # 10.5%, 5 s later: nothing
    assert len(lines) == 1
    now[0] = 15.1
    progress.advance(5)  # 11%, 10 s after the last line: a line
    assert len(lines) == 2 and lines[1].startswith("compressing: 11%")
    assert "left" in lines[1]
    progress.advance(890)  # to 100% at once: one line, not nine
    assert len(lines) == 3 and lines[2].startswith("compressing: 100% (1.0 kB of 1.0 kB)")


def test_build_without_a_terminal_prints_plain_progress_to_stderr_only(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    code, stdout, err = hats(
        "image", "build", *args(bases["xz"], inputs, keys), "-o", tmp_path / "a.tar.xz"
    )
    assert code == 0
    assert "compressing: 100% (" in err
    assert stdout.count("\n") == 1 and "a.tar.xz" in stdout


def test_build_on_a_terminal_draws_a_bar_and_logs_above_it(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    """A real pseudo-terminal: log lines and the bar share one console."""
    import pty

    out = tmp_path / "t.tar.xz"
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child: a real `hats` on the terminal
        command = ["image", "build", *args(bases["xz"], inputs, keys), "-o", str(out)]
        os.execv(sys.executable, [sys.executable, "-m", "hats", *command])
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    # The steps of hats.console.Steps, numbered by it; the layer lines are logged inside a step.
    assert "hats: [2/4] plan: composing without compression" in text
    assert "hats:       layer base" in text
    assert "\x1b[?25l" in text  # rich's live display took the terminal (cursor hidden)
    assert "Traceback" not in text
    assert out.exists()


def test_warnings_are_one_line_and_lint_allow_works_from_spec_and_flags(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    code, _, err = hats(
        "image", "build", *args(bases["xz"], inputs, keys), "-o", tmp_path / "a.tar.xz"
    )
    assert code == 0
    summary = [line for line in err.splitlines() if "lint warning" in line]
    assert len(summary) == 1 and "special-bits" in summary[0] and "device" in summary[0]
    assert not any(line.startswith("warning:") for line in err.splitlines())
    spec = tmp_path / "s.toml"
    spec.write_text('[lint]\nallow = ["special-bits"]\n')
    code, stdout, err = hats(
        "image",
        "build",
        spec,
        *args(bases["xz"], inputs, keys),
        "--lint-allow",
        "device",
        "-o",
        tmp_path / "b.tar.xz",
        "--json",
    )
    assert code == 0
    assert json.loads(stdout)["settings"]["lint"]["allow"] == ["special-bits", "device"]
    assert "special-bits" not in err and " device" not in err
    code, _, err = hats(
        "image", "build", "--check", *args(bases["xz"], inputs, keys), "--lint-allow", "bogus"
    )
    assert code == 1 and "unknown lint code 'bogus'" in err


# -- 3. signals ---------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_leave_no_partial_output(
    tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path, signum: int
) -> None:
    big = tmp_path / "big.bin"  # ~10 s of xz -6: the signal comes while compressing
    big.write_bytes(os.urandom(48 << 20))
    out_dir = tmp_path / "out"
    temp = tmp_path / "tmp"
    temp.mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hats",
            "image",
            "build",
            *args(bases["tar"], inputs, keys),
            "--layer",
            f"{big}:/opt/big.bin",
            "-o",
            str(out_dir / "img.tar.xz"),
            "--tar",
            str(out_dir / "img.tar"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(leftovers(tmp_path)) < 2:
        time.sleep(0.05)
    assert len(leftovers(tmp_path)) == 2, "the build never started writing"
    time.sleep(0.3)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == (130 if signum == signal.SIGINT else 128 + signum), err
    assert "Traceback" not in err
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in out_dir.iterdir()) == []
    assert list(temp.iterdir()) == []


# -- 4. machine-readable output, exit codes, digests, SHA256SUMS ---------------------------


@pytest.fixture()
def image(tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path) -> Path:
    out = tmp_path / "img" / "hats_system_image_x.tar.xz"
    assert main(["image", "build", "-q", *args(bases["xz"], inputs, keys), "-o", str(out)]) == 0
    return out


def test_every_json_output_is_one_document(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path, image: Path
) -> None:
    build = hats(
        "image",
        "build",
        *args(bases["xz"], inputs, keys),
        "-o",
        tmp_path / "j.tar.xz",
        "--json",
        "--digest-file",
        tmp_path / "digest",
    )
    document = json.loads(build[1])
    digest = hashlib.sha256((tmp_path / "j.tar.xz").read_bytes()).hexdigest()
    assert document["sha256"] == digest and document["hats_version"]
    assert document["settings"]["secret_share_type"] == "no-split"
    assert (tmp_path / "digest").read_text() == f"sha256:{digest}"
    for command in (
        ("image", "inspect", image, "--json"),
        ("image", "diff", image, tmp_path / "j.tar.xz", "--json"),
        ("image", "verify", image, "--sha256", digest, "--json"),
        ("image", "lint", image, "--allow-test-keys", "--json"),
        ("image", "build", "--check", "--json", *args(bases["xz"], inputs, keys)),
    ):
        _, stdout, _ = hats(*command)
        assert isinstance(json.loads(stdout), dict), command


def test_diff_and_verify_exit_1_when_different_and_2_on_error(
    hats: Run, tmp_path: Path, image: Path
) -> None:
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert hats("image", "verify", image, "--sha256", digest)[0] == 0
    assert hats("image", "verify", image, "--sha256", "0" * 64)[0] == 1
    assert hats("image", "verify", tmp_path / "missing.tar.xz", "--sha256", digest)[0] == 2
    assert hats("image", "verify", image, "--sha256", "xyz")[0] == 2
    garbage = tmp_path / "SUMS"
    garbage.write_text("not a sums line\n")
    assert hats("image", "verify", image, "--sums", garbage)[0] == 2
    other = tmp_path / "other.tar.xz"
    other.write_bytes(lzma.compress(b"\0" * 10240))
    assert hats("image", "diff", image, image)[0] == 0
    assert hats("image", "diff", image, other)[0] == 1
    assert hats("image", "diff", image, tmp_path / "missing.tar.xz")[0] == 2
    broken = tmp_path / "broken.tar.xz"
    broken.write_bytes(b"garbage" * 100)
    code, stdout, err = hats("image", "diff", image, broken, "--json")
    assert code == 2 and stdout == "" and "broken.tar.xz" in err


def test_verify_accepts_sha256_prefix_and_says_expected_and_actual(hats: Run, image: Path) -> None:
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert hats("image", "verify", image, "--sha256", f"sha256:{digest}")[0] == 0
    assert hats("image", "verify", image, "--sha256", f"SHA256:{digest.upper()}")[0] == 0
    code, _, err = hats("image", "verify", image, "--sha256", "sha256:" + "ab" * 32)
    assert code == 1
    assert f"expected sha256 {'ab' * 32}" in err and f"actual {digest}" in err


def test_sha256sums_in_both_forms(hats: Run, tmp_path: Path, image: Path) -> None:
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    # The reference's form, as check-hashes.sh reads it...
    reference = tmp_path / "ref" / "SHA256SUMS"
    reference.parent.mkdir()
    reference.write_text(f"{digest} hats_system_image_x\n")
    assert hats("image", "verify", image, "--sums", reference)[0] == 0
    # ... and GNU sha256sum's, as `sha256sum -c` reads it (text and binary markers).
    gnu = image.parent / "SHA256SUMS"
    for marker in (" ", "*"):
        gnu.write_text(f"{digest} {marker}{image.name}\n")
        assert hats("image", "verify", image, "--sums", gnu)[0] == 0
    gnu.write_text(f"{'0' * 64}  {image.name}\n")
    code, _, err = hats("image", "verify", image, "--sums", gnu)
    assert code == 1 and f"expected sha256 {'0' * 64}" in err and f"actual {digest}" in err


def test_build_writes_sha256sums_in_gnu_form_for_sha256sum(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    out_dir = tmp_path / "images"
    sums = out_dir / "SHA256SUMS"
    for name in ("b", "a"):
        code, _, err = hats(
            "image",
            "build",
            "-q",
            *args(bases["xz"], inputs, keys),
            "-o",
            out_dir / f"{name}.tar.xz",
            "--sums",
            sums,
            "--sums-format",
            "gnu",
        )
        assert code == 0, err
    digest = hashlib.sha256((out_dir / "a.tar.xz").read_bytes()).hexdigest()
    assert sums.read_text().splitlines()[0] == f"{digest}  a.tar.xz"
    if shutil.which("sha256sum"):
        check = subprocess.run(
            ["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=out_dir, capture_output=True
        )
        assert check.returncode == 0, check.stdout
    assert hats("image", "verify", out_dir / "a.tar.xz", "--sums", sums)[0] == 0
    # One file, one form: a reference line is not added to a GNU file.
    code, _, err = hats(
        "image",
        "build",
        "-q",
        *args(bases["xz"], inputs, keys),
        "-o",
        out_dir / "c.tar.xz",
        "--sums",
        sums,
        "--sums-format",
        "reference",
    )
    assert code == 1 and "holds gnu lines" in err
    assert not (out_dir / "c.tar.xz").exists()  # refused before building


# -- 6. the spec file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tvs_key = 'k'\n", "unknown key 'tvs_key' (did you mean 'tvs_keys'?)"),
        (
            "orchestrator = 'bin'\n",
            "unknown key 'orchestrator' (did you mean [binaries] orchestrator?)",
        ),
        ("xz_block_size = '8MiB'\n", "(did you mean [xz] block_size?)"),
        ("[binaries]\norchestratr = 'x'\n", "in [binaries] (did you mean 'orchestrator'?)"),
        ("[outputs]\nallow = []\n", "(did you mean [lint] allow?)"),
        ("[[layers]]\nsource = 'a'\ndest = '/x'\n", "(did you mean 'destination'?)"),
    ],
)
def test_unknown_spec_keys_say_what_was_meant(
    hats: Run, tmp_path: Path, text: str, needle: str
) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text("secret_share_type = 'no-split'\n" + text)
    code, _, err = hats("image", "build", "--check", spec, "--tvs-keys", "k")
    assert code == 1 and needle in err and "docs/SPEC.md" in err, err
    assert len(err.strip().splitlines()) == 1


def test_bad_share_type_in_a_spec_says_what_was_meant(hats: Run, tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text("tvs_keys = 'k'\nsecret_share_type = 'nosplit'\n")
    code, _, err = hats("image", "build", "--check", spec)
    assert code == 1 and "(did you mean 'no-split'?)" in err


def test_options_override_the_spec(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, reference_keys: Path
) -> None:
    spec = tmp_path / "spec" / "s.toml"
    spec.parent.mkdir()
    spec.write_text(
        f'tvs_keys = "{reference_keys / "test_xor_2.txt"}"\nsecret_share_type = "xor"\n'
        f'base = "{bases["tar"]}"\nallow_test_keys = true\n'
        'orchestrator_flags = ["--a=1"]\noutput = "from-spec.tar.xz"\n'
        f'[binaries]\norchestrator = "{inputs.orchestrator}"\nagent = "{inputs.agent}"\n'
        f'syslogd = "{inputs.syslogd}"\n'
    )
    code, stdout, err = hats(
        "image",
        "build",
        spec,
        "--tvs-keys",
        reference_keys / "test_single.txt",
        "--secret-share-type",
        "no-split",
        "--orchestrator-flag=--b=2",
        "-o",
        tmp_path / "cli.tar.xz",
        "--check",
        "--json",
    )
    assert code == 0, err
    document = json.loads(stdout)
    settings = document["settings"]
    assert settings["secret_share_type"] == "no-split"
    assert settings["tvs_keys"] == str(reference_keys / "test_single.txt")
    assert settings["base"] == str(bases["tar"])  # from the spec
    assert settings["orchestrator_flags"] == ["--a=1", "--b=2"]  # lists add up
    assert settings["output"] == str(tmp_path / "cli.tar.xz")
    assert document["plan"]["keys"] == 1 and document["plan"]["secret_share_type"] == "no-split"
    # Without a spec the two required options are still required.
    code, _, err = hats("image", "build", "--tvs-keys", "k")
    assert code == 2 and "--secret-share-type are required" in err


def test_build_help_points_to_the_spec_format(hats: Run) -> None:
    code, stdout, _ = hats("image", "build", "--help")
    assert code == 0 and "docs/SPEC.md" in stdout and "--check" in stdout


# -- 7. image diff tells the whole truth --------------------------------------------------


@pytest.mark.parametrize("payload", [0, 300_000])
def test_diff_of_equal_trees_with_different_compression(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path, payload: int
) -> None:
    """Reference xz -T1 vs multi-block xz of the same tar: one block or several."""
    extra = tmp_path / "payload.bin"
    extra.write_bytes(os.urandom(payload))
    common = [*args(bases["xz"], inputs, keys), "--layer", f"{extra}:/opt/payload.bin"]
    image, multi = tmp_path / "single.tar.xz", tmp_path / "multi.tar.xz"
    assert hats("image", "build", "-q", *common, "-o", image)[0] == 0
    code, _, err = hats(
        "image",
        "build",
        "-q",
        *common,
        "-o",
        multi,
        "--xz-block-size",
        "64KiB",
        "--no-block-cache",
    )
    assert code == 0, err
    code, stdout, _ = hats("image", "diff", image, multi)
    assert code == 1
    assert "no differences" not in stdout
    assert "the effective trees are equal, but the bytes differ" in stdout
    assert "the tar is identical" in stdout and "compression layout" in stdout
    if payload:
        assert "1 block (single-block, the reference xz -T1)" in stdout
        assert "blocks of 65536 bytes (multi-block, --xz-block-size)" in stdout
    else:  # one block either way: the block headers tell the encoders apart
        assert "block headers without sizes (the reference xz -T1) vs with sizes" in stdout
    code, stdout, _ = hats("image", "diff", image, multi, "--json")
    document = json.loads(stdout)
    assert document["trees_equal"] is True and document["identical"] is False
    assert document["changes"] == [] and document["byte_differences"]


def test_diff_of_equal_trees_with_different_tar_padding(
    hats: Run, tmp_path: Path, image: Path
) -> None:
    tar = lzma.decompress(image.read_bytes())
    padded = tmp_path / "padded.tar.xz"
    padded.write_bytes(lzma.compress(tar + bytes(10240), check=lzma.CHECK_CRC64))
    code, stdout, _ = hats("image", "diff", image, padded)
    assert code == 1 and "the effective trees are equal" in stdout
    assert "tar padding after the last member" in stdout


def test_diff_of_equal_trees_with_different_ownership(
    hats: Run, tmp_path: Path, image: Path
) -> None:
    with tarfile.open(image) as source:
        members = [(m, source.extractfile(m).read() if m.isfile() else None) for m in source]  # type: ignore[union-attr]
    owned = tmp_path / "owned.tar.xz"
    with tarfile.open(owned, "w:xz", format=tarfile.GNU_FORMAT) as out:
        for member, data in members:
            if member.name.endswith("hostname"):
                member.uid, member.uname = 1000, "someone"
            out.addfile(member, None if data is None else io.BytesIO(data))
    code, stdout, _ = hats("image", "diff", image, owned)
    assert code == 1 and "the effective trees are equal" in stdout
    assert "ownership" in stdout and "1 member" in stdout


# -- 9. --layer destinations and output directories ---------------------------------------


def test_layer_destination_must_be_absolute(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    extra = tmp_path / "extra.txt"
    extra.write_text("x")
    code, _, err = hats(
        "image", "build", "--check", *args(bases["tar"], inputs, keys), "--layer", f"{extra}:opt/x"
    )
    assert code == 2 and "must be an absolute path" in err and f"{extra}:/opt/x" in err
    spec = tmp_path / "s.toml"
    spec.write_text('[[layers]]\nsource = "extra.txt"\ndestination = "opt/x"\n')
    code, _, err = hats("image", "build", "--check", spec, *args(bases["tar"], inputs, keys))
    assert code == 1 and "must be an absolute path" in err
    code, stdout, err = hats(
        "image",
        "build",
        "--check",
        "--json",
        *args(bases["tar"], inputs, keys),
        "--layer",
        f"{extra}:/opt/x:0600",
    )
    assert code == 0, err
    assert json.loads(stdout)["settings"]["layers"] == [
        {"source": str(extra), "destination": "/opt/x", "mode": "0600"}
    ]


def test_every_output_goes_into_missing_directories_alike(
    hats: Run, tmp_path: Path, bases: dict[str, Path], inputs: Inputs, keys: Path
) -> None:
    outputs = {
        "-o": tmp_path / "a" / "x" / "img.tar.xz",
        "--tar": tmp_path / "b" / "img.tar",
        "--manifest": tmp_path / "c" / "m.json",
        "--sums": tmp_path / "d" / "SHA256SUMS",
        "--digest-file": tmp_path / "e" / "digest",
    }
    flat = [str(item) for pair in outputs.items() for item in pair]
    code, _, err = hats("image", "build", "-q", *args(bases["xz"], inputs, keys), *flat)
    assert code == 0, err
    assert all(path.is_file() for path in outputs.values())
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    for flag in outputs:
        moved = {**outputs, flag: blocker / "sub" / outputs[flag].name}
        flat = [str(item) for pair in moved.items() for item in pair]
        code, _, err = hats("image", "build", "--check", *args(bases["xz"], inputs, keys), *flat)
        assert code == 1 and f"{blocker} is not a directory" in err, (flag, err)


# -- 10. README ---------------------------------------------------------------------------


def test_readme_fast_build_example_names_an_output_and_the_default_base() -> None:
    text = README.read_text()
    fast = next(
        line
        for line in text.splitlines()
        if "--xz-block-size 8MiB" in line and "hats image build" in line
    )
    assert " -o " in fast
    assert "hats base path --with-python" in text


@pytest.mark.slow
def test_readme_fast_build_example_runs_as_written(
    default_base_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = README.read_text()
    line = next(
        line.strip()
        for line in text.splitlines()
        if "--xz-block-size 8MiB" in line and "hats image build" in line
    )
    argv = line.split()
    assert argv[0] == ".venv/bin/hats"
    (tmp_path / "examples").symlink_to(README.parent / "examples")
    monkeypatch.chdir(tmp_path)
    assert main(argv[1:]) == 0
    assert any((tmp_path / "out").iterdir())


def test_spec_md_example_is_a_valid_spec(tmp_path: Path) -> None:
    from hats.image.spec import load_spec

    text = (README.parent / "docs" / "SPEC.md").read_text()
    example = text.split("## A complete example", 1)[1].split("```toml\n", 1)[1].split("```")[0]
    spec = tmp_path / "image.toml"
    spec.write_text(example)
    options = load_spec(spec)
    assert options.outputs.sums_format == "gnu" and options.compression.xz_block_size == 8 << 20
    assert options.layers[0].dest == "/opt/extra"
    assert options.outputs.digest_file == tmp_path / "out" / "image.digest"


def test_agents_layer_chatter_is_one_line() -> None:
    """The agents layer's wheel-by-wheel messages collapse; downloads are still named."""
    lines: list[str] = []
    chatter = build_module._AgentsChatter(lines.append)
    for wheel in ("a-1-py3-none-any.whl", "b-2-py3-none-any.whl"):
        chatter(f"using cached {wheel}")
    chatter("downloading c==3")
    chatter("installing a==1 (3 files)")
    chatter("  skipped a-1.data/scripts/x (not a site-packages scheme)")
    chatter("copying the hats package (200 files)")
    chatter("agents tree: 210 files, 1.0 MB in 0.1 s")
    assert lines == [
        "agents layer: downloading c==3",
        "agents layer: 3 locked wheels (1 downloaded) + hats, 210 files, 1.0 MB in 0.1 s",
    ]
