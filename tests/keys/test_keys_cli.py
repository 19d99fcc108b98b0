"""``hats keys``: in-process via hats.cli.main and as a real subprocess."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import shared_data
from hats.cli import main
from hats.keys.keyfile import format_key_file, parse_key_file
from hats.keys.keygen import public_key_from_private

TESTDATA = shared_data.TVS_KEYS


def point(k: int) -> bytes:
    return public_key_from_private(k.to_bytes(32, "big"))


G1, G2, G3 = point(1), point(2), point(3)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def hats_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hats", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.txt"
    path.write_bytes(format_key_file([G1, G2, G3]))
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"0:" + G1.hex().encode() + b"\n\n10:0411\n")
    return path


# --- check ------------------------------------------------------------------------


def test_check_ok(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["keys", "check", "--allow-test-keys", str(good)], capsys)
    assert code == 0, err
    assert out == f"{good}: OK (3 keys)\n"


def test_check_reference_files(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(TESTDATA.glob("*.txt"))
    assert len(files) == 4
    code, out, _ = run(["keys", "check", "--allow-test-keys", *map(str, files)], capsys)
    assert code == 0
    assert out.splitlines() == [
        f"{TESTDATA}/test_shamir_2_of_3.txt: OK (3 keys)",
        f"{TESTDATA}/test_single.txt: OK (1 key)",
        f"{TESTDATA}/test_single_1sec_heartbeat.txt: OK (1 key)",
        f"{TESTDATA}/test_xor_2.txt: OK (2 keys)",
    ]


def test_check_reports_every_problem(
    good: Path, bad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["keys", "check", "--allow-test-keys", str(bad), str(good)], capsys)
    assert code == 1
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"{bad}:2: empty line (the reference orchestrator panics on it)"
    assert lines[1].startswith(f"{bad}:3: index 10 has more than one digit")
    assert lines[2] == (
        f"{bad}:3: key is 2 bytes, expected 65 (uncompressed P-256 point 04 || X || Y)"
    )
    # F6: how the reference orchestrator would treat the file (it fails on the empty line).
    assert lines[3] == (
        f"{bad}: note: the reference orchestrator fails on this file (line 2: empty line)"
    )
    assert lines[-1] == f"{good}: OK (3 keys)"
    assert len(lines) == 5


def test_check_file_level_problem_has_no_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    code, out, _ = run(["keys", "check", str(empty)], capsys)
    assert code == 1
    assert out == (
        f"{empty}: no keys: the file must list at least one TVS key\n"
        f"{empty}: note: the reference orchestrator fails on this file (no keys)\n"
    )


def test_check_json(good: Path, bad: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["keys", "check", "--json", "--allow-test-keys", str(good), str(bad)], capsys
    )
    assert code == 1
    document = json.loads(out)  # one JSON document (issue 15), not JSON Lines
    assert document["ok"] is False
    records = document["files"]
    assert records[0] == {
        "file": str(good),
        "ok": True,
        "keys": 3,
        "problems": [],
        "reference": None,
    }
    assert records[1]["file"] == str(bad) and records[1]["ok"] is False
    assert records[1]["keys"] is None
    assert [p["line"] for p in records[1]["problems"]] == [2, 3, 3]
    assert records[1]["reference"].startswith("the reference orchestrator fails on this file")


@pytest.mark.parametrize(
    "flags", [[], ["--reject-test-keys"], ["--allow-test-keys", "--reject-test-keys"]]
)
def test_check_reject_test_keys(
    good: Path, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["keys", "check", *flags, str(good)], capsys)
    assert code == 1
    assert (
        f"{good}:1: test key 1·G: its private key is public (--allow-test-keys)" in out.splitlines()
    )


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.txt"
    code, out, err = run(["keys", "check", str(missing)], capsys)
    assert code == 1
    assert out == ""
    assert err == f"hats: error: {missing}: cannot read: No such file or directory\n"


def test_check_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["keys", "check"], capsys)
    assert code == 2


# --- show -------------------------------------------------------------------------


def test_show_table(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["keys", "show", str(good)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["INDEX", "LINE", "PUBLIC", "KEY", "NOTE"]
    assert lines[1].split() == ["0", "1", G1.hex(), "test", "key", "1·G"]
    assert lines[3].split() == ["2", "3", G3.hex(), "test", "key", "3·G"]


def test_show_plain_key_has_no_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = point(0xC0FFEE)
    path = tmp_path / "k.txt"
    path.write_bytes(format_key_file([key]))
    code, out, _ = run(["keys", "show", str(path)], capsys)
    assert code == 0
    assert out.splitlines()[1].split() == ["0", "1", key.hex()]


def test_show_json(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["keys", "show", "--json", str(good)], capsys)
    assert code == 0
    records = json.loads(out)
    assert [(r["index"], r["line"], r["test_key_multiple"]) for r in records] == [
        (0, 1, 1),
        (1, 2, 2),
        (2, 3, 3),
    ]
    assert records[1]["public_key"] == G2.hex()
    assert records[1]["note"] == "test key 2·G"


def test_show_heartbeat_reference_key(capsys: pytest.CaptureFixture[str]) -> None:
    path = TESTDATA / "test_single_1sec_heartbeat.txt"
    code, out, _ = run(["keys", "show", "--json", str(path)], capsys)
    assert code == 0
    assert json.loads(out)[0]["note"] == "test key (published private key)"


def test_show_bad_file_is_one_line_error(bad: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["keys", "show", str(bad)], capsys)
    assert code == 1
    assert out == ""
    assert err == (
        f"hats: error: {bad}:2: empty line (the reference orchestrator panics on it)"
        " (and 2 more problems)\n"
    )


# --- gen --------------------------------------------------------------------------


def test_gen_prints_pair(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["keys", "gen"], capsys)
    assert code == 0
    private_line, public_line = out.splitlines()
    assert private_line.startswith("private: ") and public_line.startswith("public: ")
    private = bytes.fromhex(private_line.removeprefix("private: "))
    assert public_key_from_private(private).hex() == public_line.removeprefix("public: ")


def test_gen_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["keys", "gen", "--json"], capsys)
    assert code == 0
    record = json.loads(out)
    assert set(record) == {"private", "public"}
    assert public_key_from_private(bytes.fromhex(record["private"])).hex() == record["public"]


def test_gen_private_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private_path, public_path = tmp_path / "tvs.key", tmp_path / "tvs.pub"
    code, out, err = run(
        ["keys", "gen", "--private-out", str(private_path), "--public-out", str(public_path)],
        capsys,
    )
    assert code == 0, err
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    text = private_path.read_text()
    assert text.endswith("\n") and len(text) == 65
    private_hex = text.strip()
    assert private_hex not in out and private_hex not in err
    public_hex = public_key_from_private(bytes.fromhex(private_hex)).hex()
    assert public_path.read_text() == public_hex + "\n"
    assert out == f"private: written to {private_path}\npublic: {public_hex}\n"


def test_gen_private_out_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private_path = tmp_path / "tvs.key"
    code, out, _ = run(["keys", "gen", "--json", "--private-out", str(private_path)], capsys)
    assert code == 0
    record = json.loads(out)
    assert set(record) == {"private_file", "public"}
    assert private_path.read_text().strip() not in out


def test_gen_keeps_existing_private_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private_path = tmp_path / "tvs.key"
    private_path.write_text("precious\n")
    code, out, err = run(["keys", "gen", "--private-out", str(private_path)], capsys)
    assert code == 1
    assert out == ""
    assert (
        err
        == f"hats: error: {private_path}: already exists (use --force to overwrite a private key)\n"
    )
    assert private_path.read_text() == "precious\n"
    code, _, _ = run(["keys", "gen", "--force", "--private-out", str(private_path)], capsys)
    assert code == 0
    assert private_path.read_text() != "precious\n"
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600


def test_gen_same_output_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "k")
    code, _, _ = run(["keys", "gen", "--private-out", path, "--public-out", path], capsys)
    assert code == 2
    assert not Path(path).exists()


def test_gen_missing_directory_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 15: -o into a missing directory creates it, as every command does.
    target = tmp_path / "no" / "such" / "tvs.key"
    code, _, _ = run(["keys", "gen", "--private-out", str(target)], capsys)
    assert code == 0 and target.stat().st_mode & 0o777 == 0o600
    (tmp_path / "file").write_text("")
    blocked = tmp_path / "file" / "sub" / "tvs.key"
    code, out, err = run(["keys", "gen", "--private-out", str(blocked)], capsys)
    assert code == 1
    assert out == "" and err.startswith("hats: error: ") and err.count("\n") == 1


# --- make -------------------------------------------------------------------------


def test_make_from_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "tvs_public_keys.txt"
    args = ["keys", "make", "-o", str(output)]
    for key in (G1, G2, G3):
        args += ["--key", key.hex()]
    code, out, _ = run(args, capsys)
    assert code == 0
    assert out == f"{output}: wrote 3 keys\n"
    assert output.read_bytes() == format_key_file([G1, G2, G3])
    assert stat.S_IMODE(output.stat().st_mode) == 0o644
    reference = TESTDATA / "test_shamir_2_of_3.txt"
    if reference.exists():
        assert output.read_bytes() == reference.read_bytes()


def test_make_from_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.key", tmp_path / "b.key"
    first.write_text("00" * 31 + "02\n")
    second.write_text("00" * 31 + "01\n")
    output = tmp_path / "out.txt"
    code, _, err = run(
        [
            "keys",
            "make",
            "--from-private",
            str(first),
            "--from-private",
            str(second),
            "-o",
            str(output),
        ],
        capsys,
    )
    assert code == 0, err
    assert [k.public_key for k in parse_key_file(output.read_bytes(), "out")] == [G2, G1]


def test_make_bad_key_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.txt"
    code, out, err = run(
        ["keys", "make", "--key", G1.hex(), "--key", "02" + G1.hex()[2:66], "-o", str(output)],
        capsys,
    )
    assert code == 1
    assert err == (
        "hats: error: --key #2: compressed key (33 bytes): the 65-byte uncompressed form"
        " (04 || X || Y) is required\n"
    )
    assert out == "" and not output.exists()


def test_make_duplicate_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.txt"
    code, _, err = run(
        ["keys", "make", "--key", G1.hex(), "--key", G1.hex(), "-o", str(output)], capsys
    )
    assert code == 1
    assert err == f"hats: error: {output}: cannot write: key 2: same public key as key 1\n"
    assert not output.exists()


def test_make_bad_private_key_is_not_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "ff" * 32  # >= n: out of range
    path = tmp_path / "bad.key"
    path.write_text(secret + "\n")
    code, out, err = run(
        ["keys", "make", "--from-private", str(path), "-o", str(tmp_path / "o")], capsys
    )
    assert code == 1
    assert secret not in out + err and "ffffffff" not in err
    assert err == (
        f"hats: error: {path}: private key is out of range: the scalar must be in 1..n-1\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "make", "-o", "x"],
        ["keys", "make", "--key", "04", "--from-private", "f", "-o", "x"],
        ["keys", "make", "--key", "04"],
    ],
)
def test_make_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(args, capsys)
    assert code == 2


# --- a real process ---------------------------------------------------------------


def test_subprocess_check_and_missing_file(tmp_path: Path, good: Path, bad: Path) -> None:
    ok = hats_subprocess("keys", "check", "--allow-test-keys", str(good), cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout == f"{good}: OK (3 keys)\n" and ok.stderr == ""

    problems = hats_subprocess("keys", "check", str(bad), cwd=tmp_path)
    assert problems.returncode == 1
    assert problems.stdout.splitlines()[0].startswith(f"{bad}:1: test key 1·G")
    assert problems.stdout.splitlines()[1].startswith(f"{bad}:2: ")

    missing = hats_subprocess("keys", "check", "missing.txt", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr == "hats: error: missing.txt: cannot read: No such file or directory\n"

    shown = hats_subprocess("keys", "show", str(bad), cwd=tmp_path)
    assert shown.returncode == 1
    assert "Traceback" not in shown.stderr and shown.stderr.count("\n") == 1


def test_subprocess_gen_private_out(tmp_path: Path) -> None:
    result = hats_subprocess("keys", "gen", "--private-out", "tvs.key", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "tvs.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private_hex = path.read_text().strip()
    assert len(private_hex) == 64
    for stream in (result.stdout, result.stderr):
        assert private_hex not in stream
        assert private_hex[:16] not in stream
    public_hex = public_key_from_private(bytes.fromhex(private_hex)).hex()
    assert result.stdout.splitlines()[-1] == f"public: {public_hex}"
    # ... and it can be turned into a key file.
    made = hats_subprocess("keys", "make", "--from-private", "tvs.key", "-o", "k.txt", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "k.txt").read_text() == f"0:{public_hex}\n"
    assert private_hex not in made.stdout + made.stderr
