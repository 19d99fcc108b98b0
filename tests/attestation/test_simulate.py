"""The insecure stage0/stage1 simulation and `hats stage1 simulate`."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from dice_testing import key_sequence, verify_chain, x25519_public

from hats.attestation import cose, dice, simulate
from hats.errors import HatsError
from hats.pb.oak.attestation.v1 import eventlog_pb2, evidence_pb2
from hats.stage1.simulate_cli import stage1_group

IMAGE_SHA256 = hashlib.sha256(b"image").digest()


def test_simulated_dice_data_shape() -> None:
    data = simulate.simulate_stage1(IMAGE_SHA256, generate_key=key_sequence(1))
    root = data.evidence.root_layer
    assert root.platform == evidence_pb2.TEE_PLATFORM_NONE == 3
    # F1: stage0's fake report, all zero but report_data = SHA-256 of the root COSE_Key.
    expected = bytearray(1184)
    expected[0x50:0x70] = hashlib.sha256(root.eca_public_key).digest()
    assert root.remote_attestation_report == bytes(expected)
    assert len(root.eca_public_key) == 102
    events = [eventlog_pb2.Event.FromString(e) for e in data.evidence.event_log.encoded_events]
    assert [(e.tag, e.event.type_url) for e in events] == [
        ("Stage0", "type.googleapis.com/oak.attestation.v1.Stage0Measurements"),
        ("stage1", "type.googleapis.com/oak.attestation.v1.SystemLayerData"),
    ]
    measurements = eventlog_pb2.Stage0Measurements.FromString(events[0].event.value)
    assert measurements.kernel_measurement == simulate.default_digest("kernel")
    assert measurements.kernel_cmdline == simulate.DEFAULT_KERNEL_CMDLINE
    system = eventlog_pb2.SystemLayerData.FromString(events[1].event.value)
    assert system.system_image.sha2_256 == IMAGE_SHA256
    assert not data.evidence.HasField("application_keys")
    certs = verify_chain(data.evidence)
    # The private key handed on is the system layer's.
    last_key = certs[-1].subject_public_key.raw_public_key()
    assert dice.DiceAttester(data).issuer_id == cose.key_id_hex(last_key)


def test_simulation_is_a_pure_function_of_inputs_and_keys() -> None:
    inputs = simulate.Stage0Inputs(kernel_sha256=b"\x01" * 32, kernel_cmdline="console=ttyS0")
    first = simulate.simulate_stage1(IMAGE_SHA256, inputs, generate_key=key_sequence(4))
    again = simulate.simulate_stage1(IMAGE_SHA256, inputs, generate_key=key_sequence(4))
    other = simulate.simulate_stage1(IMAGE_SHA256, generate_key=key_sequence(4))
    assert first == again
    assert first != other
    stage0 = eventlog_pb2.Event.FromString(first.evidence.event_log.encoded_events[0])
    measurements = eventlog_pb2.Stage0Measurements.FromString(stage0.event.value)
    assert measurements.kernel_measurement == b"\x01" * 32
    assert measurements.setup_data_digest == simulate.default_digest("setup data")
    assert measurements.kernel_cmdline == "console=ttyS0"


def test_orchestrator_continues_the_simulation() -> None:
    generate = key_sequence(9)
    data = simulate.simulate_stage1(IMAGE_SHA256, generate_key=generate)
    attester = dice.DiceAttester(
        dice.load_dice_data(dice.encode_dice_data(data)), generate_key=generate
    )
    signing, binding = generate(), generate()
    event = dice.container_event(
        b"bundle", x25519_public(1), signing.public_key(), binding.public_key()
    )
    attester.extend(event)
    attester.add_application_keys(
        encryption_public_key=x25519_public(1),
        signing_public_key=signing.public_key(),
        group_encryption_public_key=x25519_public(2),
        event=event,
    )
    evidence = attester.evidence()
    assert len(evidence.layers) == 3
    assert len(verify_chain(evidence)) == 6


def test_simulation_argument_errors() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        simulate.simulate_stage1(b"\x00" * 31)
    with pytest.raises(ValueError, match="acpi_sha256"):
        simulate.Stage0Inputs(acpi_sha256=b"")


# --- the CLI ------------------------------------------------------------------------------


def run(args: list[str]) -> None:
    stage1_group.main(args, prog_name="hats stage1", standalone_mode=False)


def test_cli_writes_private_dice_file(tmp_path: Path) -> None:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"image")
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"kernel")
    output = tmp_path / "dice"
    result = CliRunner().invoke(
        stage1_group,
        [
            "simulate",
            "--system-image",
            str(image),
            "--kernel-image",
            str(kernel),
            "--acpi-sha256",
            "ab" * 32,
            "--kernel-cmdline",
            "console=ttyS0 -- --launcher-addr=vsock://2:1",
            "-o",
            str(output),
        ],
    )
    assert result.exit_code == 0, result.output
    assert IMAGE_SHA256.hex() in result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    data = dice.load_dice_data(output.read_bytes())
    assert data.certificate_authority.eca_private_key.hex() not in result.output
    events = data.evidence.event_log.encoded_events
    stage0 = eventlog_pb2.Event.FromString(events[0])
    measurements = eventlog_pb2.Stage0Measurements.FromString(stage0.event.value)
    assert measurements.kernel_measurement == hashlib.sha256(b"kernel").digest()
    assert measurements.acpi_digest == b"\xab" * 32
    assert measurements.ram_disk_digest == (simulate.default_digest("initrd"))
    assert measurements.kernel_cmdline == "console=ttyS0 -- --launcher-addr=vsock://2:1"
    assert events[1] == dice.system_layer_event(IMAGE_SHA256)
    verify_chain(data.evidence)


def test_cli_errors(tmp_path: Path) -> None:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"image")
    output = tmp_path / "dice"
    base = ["simulate", "--system-image", str(image), "-o", str(output)]
    with pytest.raises(HatsError, match="mutually exclusive"):
        run([*base, "--initrd", str(image), "--initrd-sha256", "00" * 32])
    with pytest.raises(HatsError, match="--kernel-sha256: expected 64 hexadecimal digits"):
        run([*base, "--kernel-sha256", "xyz"])
    with pytest.raises(HatsError, match="--kernel-sha256: expected 64"):
        run([*base, "--kernel-sha256", "00" * 31])
    with pytest.raises(HatsError, match=r"missing\.tar\.xz: cannot read"):
        run(["simulate", "--system-image", str(tmp_path / "missing.tar.xz"), "-o", str(output)])
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(HatsError, match="cannot create its directory"):
        run(["simulate", "--system-image", str(image), "-o", str(tmp_path / "file" / "dice")])
    assert not output.exists()
    # Issue 15: a missing output directory is created, as by every command.
    run(["simulate", "--system-image", str(image), "-o", str(tmp_path / "no" / "dice")])
    assert (tmp_path / "no" / "dice").is_file()
