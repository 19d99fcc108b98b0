"""Issue 15 (items 4, 5, 8, 9): the CLI as a user types it.

In-process through :func:`hats.cli.main` (what ``hats …`` runs) with capsys,
except the agents (argparse, their own process) and the demo's subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

import shared_data
from hats.cli import LAZY_GROUPS, NO_DEFAULT, cli, main
from hats.vm.qemu import choose_accel, shorten_words
from suite_support import run_hats

E = shared_data.EVIDENCE
EVIDENCE = str(E / "evidence_v1_genoa.binarypb")
V2 = str(E / "evidence_v2_genoa.binarypb")
VCEK = str(E / "vcek_genoa.crt")
REFERENCE_POLICY = str(E / "on-perm-reference.txtpb")
NOW = "2026-11-26T00:00:00+00:00"
V1_IMAGE = "3c59bd10c2b890ff152cc57fdca0633693acbb04982da90c670de6530fa8a836"
V1_BUNDLE = "b0803886a6e096bf1c9eacaa77dd1514134d2e88a7734af9ba2dbf650884f899"


def hats(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def verify_args(evidence: str, policy: str, *extra: str) -> list[str]:
    return ["evidence", "verify", evidence, "--policy", policy, "--tee-certificate", VCEK,
            "--now", NOW, *extra]  # fmt: skip


# --- 4. machine-readable output -----------------------------------------------------------


def test_evidence_verify_json_is_one_document_and_exit_codes_split(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = hats(capsys, *verify_args(EVIDENCE, REFERENCE_POLICY, "--json"))
    document = json.loads(out)  # the whole stdout
    assert code == 0 and document["accepted"] is True and document["policy_index"] == 0
    assert document["policy_signature"] == "the reference policy key"
    assert "open-ended" in err  # the F10 warning goes to stderr, not into stdout
    assert len(document["warnings"]) == 1
    # Rejected (the v2 evidence has another image): exit 1, still one document.
    code, out, err = hats(capsys, *verify_args(V2, REFERENCE_POLICY, "--json", "--explain"))
    document = json.loads(out)
    assert code == 1 and document["accepted"] is False
    assert "system_image_sha256" in document["reason"] and "rejected" in err
    differs = [v["field"] for v in document["explain"]["policies"][0]["values"] if not v["ok"]]
    assert "system_image_sha256" in differs
    # An error (no such policy file): exit 2 and nothing on stdout.
    code, out, err = hats(capsys, *verify_args(EVIDENCE, "/nonexistent.txtpb", "--json"))
    assert (code, out) == (2, "") and err.count("\n") == 1


def test_evidence_verify_error_exits_2_and_mismatch_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hats(capsys, *verify_args(V2, REFERENCE_POLICY))[0] == 1
    not_evidence = tmp_path / "x.bin"
    not_evidence.write_bytes(b"\x00\xff" * 10)
    code, _, err = hats(capsys, *verify_args(str(not_evidence), REFERENCE_POLICY))
    assert code == 2 and "not an Evidence" in err


def test_stage1_simulate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"image bytes")
    out_file = tmp_path / "new" / "dir" / "dice.bin"  # missing directories are created
    code, out, err = hats(
        capsys, "stage1", "simulate", "--system-image", str(image), "--json",
        "--kernel-sha256", "sha256:" + "ab" * 32, "-o", str(out_file),
    )  # fmt: skip
    document = json.loads(out)
    assert code == 0, err
    assert document["output"] == str(out_file) and out_file.is_file()
    assert document["kernel_sha256"] == "ab" * 32
    assert document["platform"] == "TEE_PLATFORM_NONE"


def test_policy_make_json_is_one_document_and_takes_sha256_prefixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "a" / "b" / "policy.txtpb"
    code, out, err = hats(
        capsys, "policy", "make", "--like", EVIDENCE,
        "--system-image-sha256", f"sha256:{V1_IMAGE}", "--bundle-sha256", f"sha256:{V1_BUNDLE}",
        "--json", "-o", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    document = json.loads(out)
    values = {item["field"]: item for item in document["values"]}
    assert values["system_image_sha256"]["value"] == V1_IMAGE  # the prefix is dropped
    assert values["system_image_sha256"]["source"] == "option"
    assert out_file.is_file()
    code, out, err = hats(capsys, *verify_args(EVIDENCE, str(out_file), "--no-policy-signature"))
    assert code == 0, err


def test_policy_make_names_every_value_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = hats(capsys, "policy", "make", "-o", str(tmp_path / "p.txtpb"))
    assert code == 2
    assert "system_image_sha256 (--system-image FILE or --system-image-sha256 HEX)" in err
    assert "container_binary_sha256 (--bundle FILE or --bundle-sha256 HEX" in err
    code, _, err = hats(
        capsys, "policy", "make", "--system-image-sha256", V1_IMAGE,
        "--bundle-sha256", V1_BUNDLE, "-o", str(tmp_path / "p.txtpb"),
    )  # fmt: skip
    assert code == 2
    for needed in (
        "amd_sev.sha384 (--stage0 STAGE0_BIN --vcpus N --cpu-from EVIDENCE, or --amd-sha384",
        "amd_sev.min_tcb_version (--min-tcb",
        "kernel_image_sha256 (--kernel BZIMAGE or --kernel-image-sha256",
        "kernel_setup_data_sha256",
        "init_ram_fs_sha256 (--initrd FILE or --init-ram-fs-sha256",
        "memory_map_sha256 (--memory-map-sha256",
        "acpi_table_sha256 (--acpi-table-sha256",
        "kernel_cmd_line_regex (--cmdline TEXT or --kernel-cmdline-regex",
        "missing 8 values",
        "--like EVIDENCE",
    ):
        assert needed in err
    assert not (tmp_path / "p.txtpb").exists()


def test_policy_make_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert hats(capsys, "policy", "make", "--help")[0] == 0
    command = _commands()["policy make"]
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help and param.help.strip() != NO_DEFAULT.strip(), param.opts


def test_keys_check_json_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    keys = shared_data.TVS_KEYS / "test_single.txt"
    code, out, _ = hats(
        capsys, "keys", "check", "--json", "--allow-test-keys", str(keys), str(keys)
    )
    document = json.loads(out)
    assert code == 0 and document["ok"] is True and len(document["files"]) == 2


def test_demo_json_is_one_document_and_a_used_workdir_is_reused_or_refused(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "demo"

    def demo(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hats", "demo", "--workdir", str(workdir), *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = run_hats("demo", "--workdir", workdir, "--json")  # in-process
    assert first.returncode == 0, first.stderr
    document = json.loads(first.stdout)
    assert document["ok"] is True and document["workdir"] == str(workdir)
    assert any(f"private_key_sha256={document['expected_fingerprint']}" in line
               for line in document["workload_output"])  # fmt: skip
    assert "[8/8]" in first.stderr  # the steps go to stderr
    again = run_hats("demo", "--workdir", workdir)  # the same directory: reused, in one line
    assert again.returncode == 0, again.stderr
    assert sum("reusing" in line for line in again.stdout.splitlines()) == 1
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    workdir = other
    refused = demo()  # a real process: exit status and stderr as the user sees them
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"hats: error: --workdir {other}: not empty and not a previous demo's directory;"
        " give a new or empty one"
    ]
    assert (other / "notes.txt").read_text() == "mine"


# --- 5. policies you can check -----------------------------------------------------------


def test_policy_check_the_reference_policy_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = hats(capsys, "policy", "check", REFERENCE_POLICY)
    assert code == 0
    assert "policy 0: signature verifies under the reference policy key" in out
    assert "launch measurement is c57729018b0a6fb90dc17bb138b0aa35e4401004283ff4a2c24d3739" in out
    assert "boot_loader 10, tee 0, snp 25, microcode 84" in out
    assert "OPEN-ENDED" in out  # the reference regex ends in .*$ (F10)
    assert f"the system image with SHA-256 {V1_IMAGE}" in out


def test_policy_check_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hats(capsys, "policy", "check", str(tmp_path / "none.txtpb"))[0] == 2
    code, _, err = hats(capsys, "policy", "check", REFERENCE_POLICY, "--public-key", "abcd")
    assert code == 2 and "--public-key" in err and "abcd" not in err


# --- 9. the small ones --------------------------------------------------------------------


def test_binary_garbage_in_a_policy_is_not_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "garbage.txtpb"
    policy.write_bytes(b"policies {\x01\x02\xff\xfeSECRETISH junk}")
    for args in (
        verify_args(EVIDENCE, str(policy)),
        ["policy", "check", str(policy)],
        ["tvs", "serve", "--listen", "127.0.0.1:0", "--primary_private_key", "01" * 32,
         "--appraisal_policy_file", str(policy), "--user_authentication_public_key", "04"],
    ):  # fmt: skip
        code, _, err = hats(capsys, *args)
        assert code == 2 and err.count("\n") == 1
        assert "binary data at line 1, column 11" in err or "not UTF-8" in err
        assert "SECRETISH" not in err and "\x01" not in err and "junk" not in err


def test_a_wrong_certificate_says_what_was_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "vcek.crt"
    wrong.write_bytes(b"hello\n")
    args = verify_args(EVIDENCE, REFERENCE_POLICY)
    args[args.index(VCEK)] = str(wrong)
    code, _, err = hats(capsys, *args)
    assert code == 1
    assert "expected an X.509 certificate (DER or PEM" in err
    assert "ParseError" not in err and "ShortData" not in err


def test_keys_make_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "new" / "keys.txt"  # a missing directory is created
    g = "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"  # noqa: E501  1·G
    args = ["keys", "make", "--key", g, "-o", str(out_file)]
    assert hats(capsys, *args)[0] == 0
    out_file.write_text("keep me")
    code, _, err = hats(capsys, *args)
    assert code == 1 and "already exists (use --force" in err
    assert out_file.read_text() == "keep me"
    assert hats(capsys, *args, "--force")[0] == 0
    assert out_file.read_text().startswith("0:04")


def test_tvs_serve_reports_every_missing_or_bad_option_at_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HATS_TVS_PRIMARY_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    code, out, err = hats(capsys, "tvs", "serve", "--secondary_private_key", "zz")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    for problem in (
        "5 problems",
        "give exactly one of --port and --listen",
        "missing --primary_private_key",
        "--secondary_private_key: not a hex string",
        "missing --appraisal_policy_file",
        "give --user_authentication_public_key or --secrets-file",
    ):
        assert problem in err


def test_launcher_vm_options_need_vmm_qemu(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = hats(capsys, "launcher", "serve", "--console-log", "c.log")
    assert code == 2 and "--console-log need --vmm qemu" in err


def test_launcher_qemu_without_an_image_refuses_to_boot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./launcher_config.txtpb
    code, _, err = hats(capsys, "launcher", "serve", "--vmm", "qemu", "--listen", "127.0.0.1:0")
    assert code == 1
    assert "--vmm qemu: no system image to boot; give --system-image" in err


def test_kvm_fallback_message_is_not_cut_mid_word(tmp_path: Path) -> None:
    assert shorten_words("a" * 10, 20) == "a" * 10
    text = "qemu-system-x86_64: failed to initialize kvm: " + "permission denied " * 10
    short = shorten_words(text, 120)
    assert len(short) <= 120 and short.endswith("…")
    assert text.startswith(short[:-1]) and text[len(short) - 1] == " "
    fake = tmp_path / "qemu"
    fake.write_text(f"#!/bin/sh\necho '{text}' >&2\nexit 1\n")
    fake.chmod(0o755)
    if not Path("/dev/kvm").exists():
        pytest.skip("the probe needs /dev/kvm to exist (it then runs the fake QEMU)")
    accel, reason = choose_accel("auto", tmp_path / "vmlinuz", qemu=str(fake))
    assert accel == "tcg"
    assert reason.endswith("…); using software emulation (TCG)")
    last_word = reason.split("…")[0].rsplit(" ", 1)[1]
    assert last_word in ("permission", "denied")  # a whole word before the cut


def test_launcher_removes_its_vm_directory_unless_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from hats.vm import launch

    made: list[Path] = []

    def fake_boot(options: launch.VmOptions, address: str, say: object, work: Path) -> object:
        made.append(work)
        (work / "console.log").write_text("booted")

        class Machine:
            def wait(self, timeout: float) -> int:
                return 0

            def kill(self) -> None:
                pass

        return Machine()

    monkeypatch.setattr(launch, "boot", fake_boot)
    lines: list[str] = []
    launch.serve_with_vm(launch.VmOptions(), "unix:/x", threading.Event(), lines.append)
    assert made and not made[0].exists()
    launch.serve_with_vm(
        launch.VmOptions(keep_workdir=True), "unix:/x", threading.Event(), lines.append
    )
    assert made[1].is_dir() and f"vm: kept {made[1]}" in lines


# --- 8. help that teaches -----------------------------------------------------------------


def _walk(command: click.Command, path: str) -> dict[str, click.Command]:
    found = {path: command}
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found.update(_walk(sub, f"{path} {name}".strip()))
    return found


def _commands() -> dict[str, click.Command]:
    ctx = click.Context(cli)
    for name in LAZY_GROUPS:
        cli.get_command(ctx, name)  # loads the group as `hats NAME` does
    return _walk(cli, "")


AGENTS = {"orchestrator", "syslogd", "agent"}


def test_every_command_has_an_example_and_every_option_help_and_a_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    leaves = {
        path: command
        for path, command in _commands().items()
        if path and not isinstance(command, click.Group) and path not in AGENTS
    }
    assert len(leaves) > 25
    for path, command in leaves.items():
        code, out, _ = hats(capsys, *path.split(), "--help")
        assert code == 0
        assert "Example" in out, f"hats {path}: no example"
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            assert param.help, f"hats {path} {param.opts}: no help"
            if param.is_flag or param.required:
                continue
            text = param.help.lower()
            shown = param.show_default and param.default not in (None, "", ())
            assert shown or "default" in text or "required" in text, f"hats {path} {param.opts}"


def test_group_listings_are_not_truncated(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("--help", *sorted(LAZY_GROUPS)):
        args = [name] if name == "--help" else [name, "--help"]
        _, out, _ = hats(capsys, *args)
        listing = out.partition("Commands:")[2]
        assert listing and "..." not in listing, f"hats {' '.join(args)} truncates a description"
    _, out, _ = hats(capsys, "policy", "--help")
    whole = "Write a policy file (-o) with one policy for a system image and container bundles."
    assert whole in " ".join(out.split())


@pytest.mark.parametrize("group", ["tvs", "launcher"])
def test_reference_flags_are_marked_with_the_rule(
    group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = hats(capsys, group, "serve", "--help")
    assert "Flags with underscores are the reference" in " ".join(out.split())
    command = _commands()[f"{group} serve"]
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        underscored = any("_" in opt for opt in param.opts if opt.startswith("--"))
        reference = "(reference flag)" in (param.help or "")
        if underscored and reference:
            hyphen = [o for o in param.opts + param.secondary_opts if "_" not in o and "-" in o[2:]]
            assert hyphen, f"{param.opts}: no hyphen alias"


def test_hyphen_and_underscore_aliases_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HATS_TVS_PRIMARY_PRIVATE_KEY", raising=False)
    # --accept-insecure-policies is --accept_insecure_policies; the missing options are said.
    code, _, err = hats(capsys, "tvs", "serve", "--accept-insecure-policies", "--port", "0")
    assert code == 2 and "missing --primary_private_key" in err
    code, _, err = hats(capsys, "tvs", "serve", "--accept_insecure_policies=maybe")
    assert code == 2  # still an absl boolean
    assert (
        hats(capsys, *verify_args(EVIDENCE, REFERENCE_POLICY, "--accept-insecure-policies"))[0] == 0
    )


@pytest.mark.parametrize(
    ("name", "binary"),
    [
        ("orchestrator", "/usr/bin/orchestrator_main"),
        ("syslogd", "/usr/bin/oak_containers_syslogd"),
        ("agent", "/usr/bin/oak_containers_agent"),
    ],
)
def test_agents_help_names_hats_and_the_image_path(name: str, binary: str) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "hats", name, "--help"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0
    assert shown.stdout.startswith(f"usage: hats {name} ")
    assert f"In the system image: {binary}" in " ".join(shown.stdout.split())


@pytest.mark.parametrize(
    "args",
    [
        ["evidence", "inspect", EVIDENCE, "--json"],
        ["measure", "cmdline", "console=ttyS0 -- --launcher-addr=vsock://2:8080", "--json"],
        ["measure", "initrd", REFERENCE_POLICY, "--json"],
        ["keys", "show", str(shared_data.TVS_KEYS / "test_single.txt"), "--json"],
        ["keys", "gen", "--json"],
        ["policy", "check", REFERENCE_POLICY, "--json"],
    ],
)
def test_json_stdout_is_one_document(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = hats(capsys, *args)
    assert code == 0
    json.loads(out)  # the whole stdout, nothing else
