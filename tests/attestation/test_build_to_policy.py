"""From build to policy without a CVM: image → simulated stage1 → attester →
policy made from the build → the verifier accepts exactly that image."""

from __future__ import annotations

import hashlib
import lzma
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hats.attestation.dice import DiceAttester, container_event, load_dice_data

HATS = [sys.executable, "-m", "hats"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HATS, *map(str, args)], capture_output=True, text=True, timeout=120)


def raw_x25519() -> bytes:
    return (
        x25519.X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def finish_evidence(dice_file: Path, bundle: bytes, out: Path) -> None:
    """What the orchestrator does after stage1 (spec wire-protocol §2 steps 5–8)."""
    attester = DiceAttester(load_dice_data(dice_file.read_bytes()))
    signing = ec.generate_private_key(ec.SECP256R1()).public_key()
    binding = ec.generate_private_key(ec.SECP256R1()).public_key()
    encryption = raw_x25519()
    event = container_event(bundle, encryption, signing, binding)
    attester.extend(event)
    attester.add_application_keys(
        encryption_public_key=encryption,
        signing_public_key=signing,
        group_encryption_public_key=raw_x25519(),
        event=event,
    )
    out.write_bytes(attester.evidence().SerializeToString())


def test_policy_from_the_build_accepts_that_image_only(tmp_path: Path) -> None:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(lzma.compress(b"an image" * 100))
    other = tmp_path / "other.tar.xz"
    other.write_bytes(lzma.compress(b"another image"))
    bundle = b"container bundle tar"
    (tmp_path / "bundle.tar").write_bytes(bundle)
    for name, source in (("dice.bin", image), ("other-dice.bin", other)):
        made = run("stage1", "simulate", "--system-image", source, "-o", tmp_path / name)
        assert made.returncode == 0, made.stderr
    assert (tmp_path / "dice.bin").stat().st_mode & 0o777 == 0o600
    policy = tmp_path / "policy.txtpb"
    made = run(
        "policy",
        "make",
        "--system-image",
        image,
        "--bundle",
        tmp_path / "bundle.tar",
        "--like",
        tmp_path / "dice.bin",
        "--insecure",
        "-o",
        policy,
    )
    assert made.returncode == 0, made.stderr
    assert hashlib.sha256(image.read_bytes()).hexdigest() in policy.read_text()
    finish_evidence(tmp_path / "dice.bin", bundle, tmp_path / "evidence.binarypb")
    finish_evidence(tmp_path / "other-dice.bin", bundle, tmp_path / "other.binarypb")
    finish_evidence(tmp_path / "dice.bin", b"another bundle", tmp_path / "bad-bundle.binarypb")
    flags = ["--policy", str(policy), "--accept-insecure", "--no-policy-signature"]
    ok = run("evidence", "verify", tmp_path / "evidence.binarypb", *flags)
    assert ok.returncode == 0 and "accepted: policy 0" in ok.stdout, ok.stderr
    wrong_image = run("evidence", "verify", tmp_path / "other.binarypb", *flags)
    assert wrong_image.returncode == 1 and "system_image_sha256" in wrong_image.stderr
    wrong_bundle = run("evidence", "verify", tmp_path / "bad-bundle.binarypb", *flags)
    assert wrong_bundle.returncode == 1 and "container" in wrong_bundle.stderr
    strict = run(
        "evidence",
        "verify",
        tmp_path / "evidence.binarypb",
        "--policy",
        str(policy),
        "--no-policy-signature",
    )
    # An insecure policy without --accept-insecure cannot be used: an error (2), not a mismatch.
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
