"""Issue 15 item 5: a policy signed with your own key verifies end to end.

As a user types it: ``hats keys gen`` makes the key pair, ``hats policy make
--sign-key`` signs, ``hats evidence verify --policy-public-key`` and ``hats
policy check --public-key`` check it, and a real ``hats tvs serve
--policy_public_key … --enable_policy_signature`` accepts a client whose
evidence (the real Genoa evidence) matches. Without the key (the reference's
is the default) the same policy does not verify.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_tvs_cli import Served, served, session  # noqa: F401  (served is a fixture)
from tvs_testing import CLIENT, NOW, PRIMARY, public

import shared_data
from hats.cli import main

E = shared_data.EVIDENCE
EVIDENCE = str(E / "evidence_v1_genoa.binarypb")
VCEK = str(E / "vcek_genoa.crt")


def hats(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def own_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """(policy signed with a fresh key, that key's public half) made through the CLI."""
    private, public_file = tmp_path / "keys" / "policy.key", tmp_path / "keys" / "policy.pub"
    code, out, _ = hats(
        capsys, "keys", "gen", "--private-out", str(private), "--public-out", str(public_file)
    )
    assert code == 0, out
    code, out, _ = hats(capsys, "evidence", "inspect", "--json", EVIDENCE)
    measurements = json.loads(out)["measurements"]
    policy = tmp_path / "policies" / "own.txtpb"
    code, out, err = hats(
        capsys,
        "policy", "make", "--like", EVIDENCE,
        "--system-image-sha256", "sha256:" + measurements["system_image_sha256"],
        "--bundle-sha256", "sha256:" + measurements["container_bundle_sha256"].upper(),
        "--sign-key", str(private), "--json", "-o", str(policy),
    )  # fmt: skip
    assert code == 0, err
    document = json.loads(out)  # the whole stdout is one JSON document
    assert document["signed"] is True and document["output"] == str(policy)
    return policy, public_file


def test_own_key_policy_verifies_in_evidence_verify(
    own_policy: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    policy, key = own_policy
    common = ["evidence", "verify", EVIDENCE, "--policy", str(policy)]
    common += ["--tee-certificate", VCEK, "--now", NOW.isoformat()]
    code, out, err = hats(capsys, *common, "--policy-public-key", str(key))
    assert (code, out.strip()) == (0, f"{EVIDENCE}: accepted: policy 0"), err
    # The key inline, as hex, works the same; so does the underscore spelling.
    inline = key.read_text().strip()
    assert hats(capsys, *common, "--policy_public_key", inline)[0] == 0
    # The reference key (the default) does not verify it: an error (2), not a mismatch (1).
    code, out, err = hats(capsys, *common)
    assert code == 2 and out == ""
    assert "policy 0: signature[0]: signature does not match" in err


def test_own_key_policy_in_policy_check(
    own_policy: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    policy, key = own_policy
    code, out, _ = hats(capsys, "policy", "check", str(policy), "--public-key", str(key))
    assert code == 0
    assert "policy 0: signature verifies under the key sha256:" in out
    assert "AMD SEV-SNP evidence" in out and "anchored" in out
    code, out, err = hats(capsys, "policy", "check", str(policy))
    assert code == 1 and "does not verify" in out and "reference policy key" in err
    code, out, _ = hats(capsys, "policy", "check", str(policy), "--public-key", str(key), "--json")
    document = json.loads(out)
    assert document["ok"] is True and document["policies"][0]["signature_ok"] is True


def test_own_key_policy_is_accepted_by_a_real_tvs(
    own_policy: tuple[Path, Path],
    tmp_path: Path,
    served: list[Served],  # noqa: F811
) -> None:
    policy, key = own_policy
    socket = f"unix:{tmp_path / 'tvs.sock'}"
    tvs = Served(
        [
            f"--primary_private_key={PRIMARY.hex()}",
            f"--appraisal_policy_file={policy}",
            f"--now={NOW.isoformat()}",
            f"--user_authentication_public_key={public(CLIENT).hex()}",
            "--enable_policy_signature",
            "--policy_public_key",
            str(key),
            "--listen",
            socket,
        ]
    )
    served.append(tvs)
    assert session(socket) == [("64", "some public key", b"secret")]
    log = tvs.stop()
    assert "policy signatures verified under the key sha256:" in log
    assert "report accepted" in log


def test_tvs_refuses_the_own_key_policy_under_the_reference_key(
    own_policy: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    policy, _ = own_policy
    code = main(
        [
            "tvs", "serve", f"--primary_private_key={PRIMARY.hex()}",
            f"--appraisal_policy_file={policy}", "--listen", "127.0.0.1:0",
            f"--user_authentication_public_key={public(CLIENT).hex()}",
            "--enable_policy_signature",
        ]
    )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2 and "policy 0: signature[0]" in err
