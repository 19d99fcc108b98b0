"""``hats evidence`` and ``hats policy``: inspect and verify evidence, make policies.

A thin shell over :mod:`hats.attestation.verify` and :mod:`hats.attestation.policy`:
it reads files, prints and writes outputs atomically; every user error is a
:class:`hats.errors.HatsError` (one line, printed by :func:`hats.cli.main`).

An evidence FILE is read, by content, as a length-delimited ``DiceData`` (the
``/oak/dice`` form; its ``evidence`` is used), a text-format ``Evidence`` (when
it is UTF-8 text) or a binary ``Evidence``.

``hats evidence verify`` exits 0 when the evidence verifies and matches a
policy (printing the policy's index), and 1 with the reason on one line
otherwise. A policy whose command-line regex is open-ended (upstream-facts
F10, :func:`hats.attestation.policy.cmdline_regex_risk`) is still used, with
one ``hats: warning:`` line on stderr per such policy.

``hats policy make`` anchors what it writes: from ``--like`` the command line
must be the evidence's, with only the launcher port free (``[0-9]+``) and
nothing after it; a ``--kernel-cmdline-regex`` that is open-ended is refused
unless ``--allow-open-cmdline-regex``.

Policy signatures are checked by default (``--no-policy-signature`` turns that
off, like the reference TVS's default). A ``--now`` without a time
zone is UTC.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from hats.attestation import cose, dice, policy, verify
from hats.attestation.amd import certs as amd_certs
from hats.attestation.errors import AttestationError, EvidenceFormatError, PolicyError
from hats.errors import HatsError
from hats.fsio import write_bytes_atomic
from hats.keys.keygen import private_key_from_hex
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.pcit.tvs import appraisal_policies_pb2 as policies_pb2


def _read(path: str | Path, what: str = "file") -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HatsError(f"{path}: cannot read {what}: {reason}") from None


def parse_evidence(data: bytes, source: str) -> tuple[evidence_pb2.Evidence, str]:
    """``(evidence, form)`` from a file's bytes; form is ``DiceData``, ``text`` or ``binary``.

    Raises :class:`EvidenceFormatError` naming ``source`` if no form fits.
    """
    try:
        dice_data = dice.load_dice_data(data)
    except AttestationError:
        pass
    else:
        if dice_data.HasField("evidence"):
            return dice_data.evidence, "DiceData"
    evidence = evidence_pb2.Evidence()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        try:
            text_format.Parse(text, evidence)
        except text_format.ParseError as exc:
            raise EvidenceFormatError(f"{source}: not a text-format Evidence: {exc}") from None
        form = "text"
    else:
        try:
            evidence.ParseFromString(data)
        except DecodeError:
            raise EvidenceFormatError(
                f"{source}: not an Evidence proto (binary or text) nor a DiceData"
            ) from None
        form = "binary"
    if not evidence.HasField("root_layer"):
        raise EvidenceFormatError(f"{source}: the Evidence has no root_layer")
    return evidence, form


def load_evidence(path: str | Path) -> evidence_pb2.Evidence:
    """The ``Evidence`` in the file at ``path`` (any of the module's forms)."""
    return parse_evidence(_read(path, "evidence"), str(path))[0]


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint="--now") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _file_sha256(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HatsError(f"{path}: cannot read: {reason}") from None


# --- inspect ------------------------------------------------------------------------------


def describe_evidence(evidence: evidence_pb2.Evidence) -> dict[str, Any]:
    """A JSON-ready description: root, layers, events, application keys and measurements.

    Nothing is verified; a part that does not parse is described by its error.
    """
    root = evidence.root_layer
    info: dict[str, Any] = {
        "root_layer": {
            "platform": verify.platform_name(evidence),
            "report_bytes": len(root.remote_attestation_report),
            "eca_public_key_bytes": len(root.eca_public_key),
            "eca_public_key_sha256": hashlib.sha256(root.eca_public_key).hexdigest(),
        }
    }
    layers: list[dict[str, Any]] = []
    for index, layer in enumerate(evidence.layers):
        entry: dict[str, Any] = {"index": index, "certificate_bytes": len(layer.eca_certificate)}
        try:
            cert = cose.parse_certificate(layer.eca_certificate, f"layer {index} certificate")
        except AttestationError as exc:
            entry["error"] = str(exc)
        else:
            entry.update(
                issuer=cert.issuer,
                subject=cert.subject,
                event_sha256=None if cert.event_sha256 is None else cert.event_sha256.hex(),
                claims=list(cert.claim_order),
            )
        layers.append(entry)
    info["layers"] = layers
    events: list[dict[str, Any]] = []
    for index, encoded in enumerate(evidence.event_log.encoded_events):
        item: dict[str, Any] = {"index": index, "sha256": hashlib.sha256(encoded).hexdigest()}
        try:
            event = verify.decode_event(encoded, index)
        except AttestationError as exc:
            item["error"] = str(exc)
        else:
            item.update(tag=event.tag, type_url=event.event.type_url)
        events.append(item)
    info["events"] = events
    keys = evidence.application_keys
    info["application_keys"] = {
        name: len(getattr(keys, name))
        for name in (
            "encryption_public_key_certificate",
            "signing_public_key_certificate",
            "group_encryption_public_key_certificate",
            "group_signing_public_key_certificate",
        )
    }
    try:
        info["measurements"] = verify.extract_measurements(evidence).as_dict()
    except AttestationError as exc:
        info["measurements"] = {"error": str(exc)}
    return info


def _print_description(source: str, form: str, info: dict[str, Any]) -> None:
    root = info["root_layer"]
    click.echo(f"{source}: Evidence ({form})")
    click.echo(
        f"root layer: {root['platform']}, report {root['report_bytes']} bytes, "
        f"eca_public_key {root['eca_public_key_bytes']} bytes "
        f"(SHA-256 {root['eca_public_key_sha256']})"
    )
    for layer in info["layers"]:
        if "error" in layer:
            click.echo(f"layer {layer['index']}: {layer['error']}")
            continue
        click.echo(
            f"layer {layer['index']}: iss {layer['issuer']} sub {layer['subject']} "
            f"event {layer['event_sha256']}"
        )
    for event in info["events"]:
        if "error" in event:
            click.echo(f"event {event['index']}: {event['error']}")
            continue
        click.echo(
            f"event {event['index']}: tag {event['tag']!r} type {event['type_url']} "
            f"SHA-256 {event['sha256']}"
        )
    sizes = ", ".join(
        f"{name.removesuffix('_public_key_certificate')} {size} bytes"
        for name, size in info["application_keys"].items()
    )
    click.echo(f"application keys: {sizes}")
    measurements = info["measurements"]
    if "error" in measurements:
        click.echo(f"measurements: {measurements['error']}")
        return
    click.echo("measurements:")
    for name, value in measurements.items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        click.echo(f"  {name}: {value}")


@click.group("evidence")
def evidence_group() -> None:
    """Inspect and verify attestation evidence (oak.attestation.v1.Evidence)."""


@evidence_group.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect_command(file: str, as_json: bool) -> None:
    """Show FILE's layers, events and measurements (nothing is verified).

    FILE is a binary or text-format Evidence, or a length-delimited DiceData.
    """
    evidence, form = parse_evidence(_read(file, "evidence"), file)
    info = describe_evidence(evidence)
    if as_json:
        click.echo(json.dumps({"file": file, "form": form, **info}, indent=2))
    else:
        _print_description(file, form, info)


@evidence_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Text-format AppraisalPolicies.",
)
@click.option(
    "--tee-certificate",
    type=click.Path(dir_okay=False),
    help="The VCEK certificate (DER or PEM); needed for AMD SEV-SNP evidence.",
)
@click.option(
    "--amd-certs-dir",
    type=click.Path(file_okay=False),
    help="Use ark_<product>.pem/ask_<product>.pem from DIR instead of the built-in AMD roots.",
)
@click.option("--now", help="Check certificate validity at this ISO 8601 time (default: now).")
@click.option(
    "--accept-insecure",
    is_flag=True,
    help="Accept insecure policies and TEE_PLATFORM_NONE evidence (no hardware root).",
)
@click.option(
    "--policy-signature/--no-policy-signature",
    default=True,
    show_default=True,
    help="Require each policy's signature to verify under the reference policy key.",
)
def verify_command(
    file: str,
    policy_path: str,
    tee_certificate: str | None,
    amd_certs_dir: str | None,
    now: str | None,
    accept_insecure: bool,
    policy_signature: bool,
) -> int:
    """Verify FILE's evidence and match it against the policies; exit 0 if accepted."""
    moment = _parse_now(now)
    text = _read(policy_path, "policy").decode("utf-8", errors="replace")
    policies = policy.load_policies(text, policy_path, accept_insecure=accept_insecure)
    if policy_signature:
        policy.verify_policy_signatures(policies, policy_path)
    for warning in policy.open_cmdline_warnings(policies, policy_path):
        click.echo(f"hats: warning: {warning}", err=True)
    evidence = load_evidence(file)
    vcek = None if tee_certificate is None else _read(tee_certificate, "TEE certificate")
    roots = None if amd_certs_dir is None else amd_certs.load_amd_roots(Path(amd_certs_dir))
    try:
        verified = verify.verify_evidence(
            evidence,
            tee_certificate=vcek,
            amd_roots=roots,
            now=moment,
            allow_insecure=accept_insecure,
        )
        index = policy.appraise(verified, policies, accept_insecure=accept_insecure)
    except AttestationError as exc:
        raise type(exc)(f"{file}: rejected: {exc}") from None
    description = policies.policies[index].description
    suffix = f" ({description})" if description else ""
    click.echo(f"{file}: accepted: policy {index}{suffix}")
    return 0


# --- policies ----------------------------------------------------------------------------


def _parse_tcb(value: str) -> verify.Tcb:
    parts = value.replace(",", "/").replace(".", "/").split("/")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (4, 5) or any(not 0 <= n <= 255 for n in numbers):
        raise click.BadParameter(
            "expected boot_loader/tee/snp/microcode[/fmc], numbers 0-255", param_hint="--min-tcb"
        )
    return verify.Tcb(*numbers)


@click.group("policy")
def policy_group() -> None:
    """Make and check TVS appraisal policies (text-format AppraisalPolicies)."""


@policy_group.command("make")
@click.option(
    "--system-image",
    type=click.Path(dir_okay=False),
    help="The system image (.tar.xz) whose SHA-256 the policy requires.",
)
@click.option("--system-image-sha256", help="The system image's SHA-256 (hex) instead of the file.")
@click.option(
    "--bundle",
    "bundles",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="An allowed container bundle (.tar); repeatable.",
)
@click.option("--bundle-sha256", "bundle_digests", multiple=True, help="An allowed bundle SHA-256.")
@click.option(
    "--like",
    type=click.Path(dir_okay=False),
    help="Take the root and kernel values from this evidence (not verified).",
)
@click.option("--amd-sha384", help="The AMD SEV-SNP launch measurement (hex).")
@click.option("--min-tcb", help="The minimum TCB: boot_loader/tee/snp/microcode[/fmc].")
@click.option("--kernel-image-sha256")
@click.option("--kernel-setup-data-sha256")
@click.option("--init-ram-fs-sha256")
@click.option("--memory-map-sha256")
@click.option("--acpi-table-sha256")
@click.option(
    "--kernel-cmdline-regex",
    help="Matched anywhere: anchor it with ^…$ (default with --like: the evidence's command"
    " line, only the launcher port free).",
)
@click.option(
    "--allow-open-cmdline-regex",
    is_flag=True,
    help="Accept a --kernel-cmdline-regex that also matches a command line with extra stage1"
    " flags (e.g. '.*$', as the reference's policies): a host could then add --init=/bin/sh.",
)
@click.option("--insecure", is_flag=True, help="An insecure policy: no hardware root check.")
@click.option("--description", default="", help="The policy's description.")
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False),
    help="Sign with this P-256 private key (a file holding 64 hex digits).",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
def make_command(
    system_image: str | None,
    system_image_sha256: str | None,
    bundles: tuple[str, ...],
    bundle_digests: tuple[str, ...],
    like: str | None,
    amd_sha384: str | None,
    min_tcb: str | None,
    kernel_image_sha256: str | None,
    kernel_setup_data_sha256: str | None,
    init_ram_fs_sha256: str | None,
    memory_map_sha256: str | None,
    acpi_table_sha256: str | None,
    kernel_cmdline_regex: str | None,
    allow_open_cmdline_regex: bool,
    insecure: bool,
    description: str,
    sign_key: str | None,
    output: str,
) -> None:
    """Write a policy file (-o) with one policy for a system image and container bundles.

    Explicit options override the values taken from --like.
    """
    if (system_image is None) == (system_image_sha256 is None):
        raise click.UsageError("give exactly one of --system-image and --system-image-sha256")
    if not bundles and not bundle_digests:
        raise click.UsageError("give at least one --bundle or --bundle-sha256")
    values: dict[str, Any] = {}
    if like is not None:
        measurements = verify.extract_root_and_kernel(load_evidence(like))
        if measurements.amd_measurement is None and not insecure:
            raise PolicyError(
                f"{like}: the evidence is {measurements.platform}; an insecure policy needs"
                " --insecure"
            )
        values = {
            "amd_sha384": measurements.amd_measurement,
            "min_tcb": measurements.reported_tcb,
            "kernel_image_sha256": measurements.kernel_image_sha256,
            "kernel_setup_data_sha256": measurements.kernel_setup_data_sha256,
            "init_ram_fs_sha256": measurements.init_ram_fs_sha256,
            "memory_map_sha256": measurements.memory_map_sha256,
            "acpi_table_sha256": measurements.acpi_table_sha256,
            "kernel_cmd_line_regex": policy.cmdline_regex_for(measurements.kernel_cmdline),
        }
    explicit: dict[str, Any] = {
        "amd_sha384": amd_sha384,
        "min_tcb": None if min_tcb is None else _parse_tcb(min_tcb),
        "kernel_image_sha256": kernel_image_sha256,
        "kernel_setup_data_sha256": kernel_setup_data_sha256,
        "init_ram_fs_sha256": init_ram_fs_sha256,
        "memory_map_sha256": memory_map_sha256,
        "acpi_table_sha256": acpi_table_sha256,
        "kernel_cmd_line_regex": kernel_cmdline_regex,
    }
    values.update({key: value for key, value in explicit.items() if value is not None})
    needed = [
        "kernel_image_sha256",
        "kernel_setup_data_sha256",
        "init_ram_fs_sha256",
        "memory_map_sha256",
        "acpi_table_sha256",
        "kernel_cmd_line_regex",
    ]
    if not insecure:
        needed = ["amd_sha384", "min_tcb", *needed]
    missing = [name for name in needed if values.get(name) is None]
    if missing:
        options = ", ".join(
            "--" + name.replace("_", "-").replace("cmd-line", "cmdline") for name in missing
        )
        raise click.UsageError(f"missing {options} (or --like EVIDENCE)")
    risk = policy.cmdline_regex_risk(values["kernel_cmd_line_regex"])
    if risk is not None:
        if not allow_open_cmdline_regex:
            raise PolicyError(
                f"--kernel-cmdline-regex: {risk}; anchor it (^…:{policy.PORT_REGEX}$) or pass"
                " --allow-open-cmdline-regex"
            )
        click.echo(f"hats: warning: kernel_cmd_line_regex is open-ended: {risk}", err=True)
    image_digest = system_image_sha256 or _file_sha256(str(system_image))
    containers = [*(_file_sha256(path) for path in bundles), *bundle_digests]
    made = policy.make_policy(
        system_image_sha256=image_digest,
        container_sha256=containers,
        insecure=insecure,
        description=description,
        kernel_image_sha256=values["kernel_image_sha256"],
        kernel_setup_data_sha256=values["kernel_setup_data_sha256"],
        init_ram_fs_sha256=values["init_ram_fs_sha256"],
        memory_map_sha256=values["memory_map_sha256"],
        acpi_table_sha256=values["acpi_table_sha256"],
        kernel_cmd_line_regex=values["kernel_cmd_line_regex"],
        amd_sha384=None if insecure else values["amd_sha384"],
        min_tcb=None if insecure else values["min_tcb"],
    )
    if sign_key is not None:
        key_text = _read(sign_key, "signing key").decode("ascii", errors="replace")
        policy.sign_policy(made, private_key_from_hex(key_text))
    policies = policies_pb2.AppraisalPolicies()
    policies.policies.append(made)
    write_bytes_atomic(Path(output), policy.format_policies(policies).encode("utf-8"))
    signed = "signed" if sign_key is not None else "unsigned"
    click.echo(f"{output}: 1 {signed} policy")
