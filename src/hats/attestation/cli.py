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

``hats evidence verify --explain`` also prints, for each policy, every value
next to the evidence's (:func:`hats.attestation.policy.explain_policy`),
``DIFFERS`` where they do not match; when the evidence does not verify, its
values are extracted anyway and marked as not verified.

``hats policy make`` computes what it can from artifacts (``--stage0``,
``--kernel``, ``--initrd``, ``--cmdline``, the image and bundles; rules in
:mod:`hats.attestation.measure`), takes explicit options, and copies the rest
from ``--like`` (lowest precedence); an artifact and an option for the same
value is a usage error. It prints every value with its provenance
(:mod:`hats.attestation.provenance`; ``--json``: one JSON document with
``hats_version``) and writes it as comments atop the file. The SEV-SNP TCB
minimum comes from ``--min-tcb`` or the ``--like`` evidence, never a default.
It anchors what it writes: the command line (``--cmdline`` or ``--like``'s)
must match exactly, with only the launcher port free (``[0-9]+``) and nothing
after it; a ``--kernel-cmdline-regex`` that is open-ended is refused unless
``--allow-open-cmdline-regex``.

Policy signatures are checked by default (``--no-policy-signature`` turns that
off, like the reference TVS's default). A ``--now`` without a time
zone is UTC.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import hats
from hats.attestation import measure
from hats.attestation.errors import AttestationError, PolicyError
from hats.attestation.evidencefile import load_evidence as load_evidence
from hats.attestation.evidencefile import parse_evidence as parse_evidence
from hats.attestation.evidencefile import read_file as _read
from hats.cliopts import Digest
from hats.errors import HatsError
from hats.fsio import make_parent_dirs, write_bytes_atomic
from hats.hashing import file_sha256, read_failure
from hats.textsafe import printable

if TYPE_CHECKING:  # the verifier, protobuf and X.509 load in the commands: --help stays fast
    from hats.attestation import verify
    from hats.pb.oak.attestation.v1 import evidence_pb2
    from hats.pb.pcit.tvs import appraisal_policies_pb2 as policies_pb2


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
        return file_sha256(path)
    except OSError as exc:
        raise HatsError(f"{path}: cannot read: {read_failure(exc)}") from None


# --- inspect ------------------------------------------------------------------------------


def describe_evidence(evidence: evidence_pb2.Evidence) -> dict[str, Any]:
    """A JSON-ready description: root, layers, events, application keys and measurements.

    Nothing is verified; a part that does not parse is described by its error.
    """
    from hats.attestation import cose, verify

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

    \b
    Example:
      hats evidence inspect evidence.binarypb --json
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
    help="Text-format AppraisalPolicies (as `hats policy make` writes).",
)
@click.option(
    "--tee-certificate",
    type=click.Path(dir_okay=False),
    help="The VCEK certificate (DER or PEM); needed for AMD SEV-SNP evidence.",
)
@click.option(
    "--amd-certs-dir",
    type=click.Path(file_okay=False),
    help="Use ark_<product>.pem/ask_<product>.pem from DIR [default: the built-in AMD roots].",
)
@click.option("--now", help="Check certificate validity at this ISO 8601 time [default: now].")
@click.option(
    "--accept-insecure",
    "--accept-insecure-policies",
    "accept_insecure",
    is_flag=True,
    help="Accept insecure policies and TEE_PLATFORM_NONE evidence (no hardware root).",
)
@click.option(
    "--policy-signature/--no-policy-signature",
    default=True,
    show_default=True,
    help="Require each policy's signature to verify under the policy key.",
)
@click.option(
    "--policy-public-key",
    "--policy_public_key",
    "policy_public_key",
    metavar="PEM|HEX",
    help="Verify policy signatures with this P-256 public key: a PEM file, or 130 hex digits"
    " inline or in a file (`hats keys gen --public-out`) [default: the reference's key].",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Print every policy value next to the evidence's, marking those that differ.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout (accepted, policy, reason, warnings; with"
    " --explain every value); messages go to stderr.",
)
def verify_command(
    file: str,
    policy_path: str,
    tee_certificate: str | None,
    amd_certs_dir: str | None,
    now: str | None,
    accept_insecure: bool,
    policy_signature: bool,
    policy_public_key: str | None,
    explain: bool,
    as_json: bool,
) -> int:
    """Verify FILE's evidence and match it against the policies.

    Exit 0 when a policy accepts it, 1 when the evidence is rejected (it does
    not verify or matches no policy), 2 on an error (an unreadable file, a
    malformed policy or evidence file, a policy signature that does not
    verify).

    \b
    Example:
      hats evidence verify evidence.binarypb --policy policy.txtpb \\
          --tee-certificate vcek.crt --policy-public-key policy-key.pub
    """
    from hats.attestation import policy, verify
    from hats.attestation.amd import certs as amd_certs
    from hats.attestation.policykey import describe_key, read_policy_public_key

    try:
        moment = _parse_now(now)
        key = policy.REFERENCE_POLICY_KEY
        if policy_public_key is not None:
            key = read_policy_public_key(policy_public_key, "--policy-public-key")
        text = _read(policy_path, "policy").decode("utf-8", errors="replace")
        policies = policy.load_policies(text, policy_path, accept_insecure=accept_insecure)
        if policy_signature:
            policy.verify_policy_signatures(policies, policy_path, key)
        warnings = policy.open_cmdline_warnings(policies, policy_path)
        evidence = load_evidence(file)
        vcek = None if tee_certificate is None else _read(tee_certificate, "TEE certificate")
        roots = None if amd_certs_dir is None else amd_certs.load_amd_roots(Path(amd_certs_dir))
    except HatsError as exc:
        exc.exit_code = 2
        raise
    for warning in warnings:
        click.echo(f"hats: warning: {warning}", err=True)
    verified: verify.VerifiedEvidence | None = None
    failure: AttestationError | None = None
    index: int | None = None
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
        failure = exc
    if as_json:
        document: dict[str, Any] = {
            "file": file,
            "policy_file": policy_path,
            "accepted": failure is None,
            "policy_index": index,
            "policy_description": None if index is None else policies.policies[index].description,
            "reason": None if failure is None else str(failure),
            "policy_signature": (describe_key(key) if policy_signature else None),
            "warnings": warnings,
            "hats_version": hats.__version__,
        }
        if explain:
            document["explain"] = _explanation(evidence, verified, policies, accept_insecure)
        click.echo(json.dumps(document, indent=2))
    elif explain:
        _print_explanation(
            evidence, verified, policies, accept_insecure, None if failure is None else str(failure)
        )
    if failure is not None:  # exit 1: rejected (the message on stderr)
        raise type(failure)(f"{file}: rejected: {failure}") from None
    assert index is not None
    if as_json:
        return 0
    description = policies.policies[index].description
    suffix = f" ({description})" if description else ""
    click.echo(printable(f"{file}: accepted: policy {index}{suffix}"))
    return 0


def _explanation(
    evidence: evidence_pb2.Evidence,
    verified: verify.VerifiedEvidence | None,
    policies: policies_pb2.AppraisalPolicies,
    accept_insecure: bool,
) -> dict[str, Any]:
    """``--explain --json``: every policy value next to the evidence's."""
    from hats.attestation import policy, verify

    if verified is not None:
        measurements = verified.measurements
    else:
        try:
            measurements = verify.extract_measurements(evidence)
        except AttestationError as exc:
            return {"verified": False, "error": str(exc), "policies": []}
    return {
        "verified": verified is not None,
        "policies": [
            {
                "index": index,
                "description": item.description,
                "values": [
                    {
                        "field": row.field,
                        "ok": row.ok,
                        "policy": row.policy_value,
                        "evidence": row.evidence_value,
                    }
                    for row in policy.explain_policy(
                        measurements, item, accept_insecure=accept_insecure
                    )
                ],
            }
            for index, item in enumerate(policies.policies)
        ],
    }


def _print_explanation(
    evidence: evidence_pb2.Evidence,
    verified: verify.VerifiedEvidence | None,
    policies: policies_pb2.AppraisalPolicies,
    accept_insecure: bool,
    failure: str | None,
) -> None:
    """``--explain``: each policy's values next to the evidence's (``ok`` or ``DIFFERS``)."""
    from hats.attestation import policy, verify

    if verified is not None:
        measurements = verified.measurements
    else:
        click.echo(f"the evidence did not verify ({failure}): its values below are NOT verified")
        try:
            measurements = verify.extract_measurements(evidence)
        except AttestationError as exc:
            click.echo(f"no values to compare: {exc}")
            return
    for index, item in enumerate(policies.policies):
        rows = policy.explain_policy(measurements, item, accept_insecure=accept_insecure)
        differ = sum(not row.ok for row in rows)
        title = f" ({item.description})" if item.description else ""
        click.echo(printable(f"policy {index}{title}: {differ} of {len(rows)} values differ"))
        for row in rows:
            mark = "ok     " if row.ok else "DIFFERS"
            values = f"policy {row.policy_value} | evidence {row.evidence_value}"
            click.echo(printable(f"  {mark} {row.field}: {values}"))


# --- policies ----------------------------------------------------------------------------


def _parse_tcb(value: str) -> verify.Tcb:
    from hats.attestation import verify

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
@click.option(
    "--system-image-sha256",
    type=Digest(),
    help="The system image's SHA-256 (HEX or sha256:HEX, as `image build --digest-file`"
    " writes) instead of the file.",
)
@click.option(
    "--bundle",
    "bundles",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="An allowed container bundle (.tar); repeatable.",
)
@click.option(
    "--bundle-sha256",
    "bundle_digests",
    multiple=True,
    type=Digest(),
    help="An allowed bundle's SHA-256 (HEX or sha256:HEX) instead of the file; repeatable.",
)
@click.option(
    "--stage0",
    type=click.Path(dir_okay=False),
    help="Compute amd_sev.sha384 from this stage0 firmware (see `hats measure stage0`);"
    " needs --vcpus and --cpu or --cpu-from.",
)
@click.option(
    "--vcpus", type=click.IntRange(min=1, max=4096), help="With --stage0: the vCPU count."
)
@click.option(
    "--cpu",
    help="With --stage0: the host CPU, FAMILY:MODEL:STEPPING in hex or milan|genoa|turin"
    " (prefer --cpu-from: see `hats measure stage0 --help`).",
)
@click.option(
    "--cpu-from",
    type=click.Path(dir_okay=False),
    help="With --stage0: read the CPU signature from this evidence's SEV-SNP report.",
)
@click.option(
    "--vmm",
    type=click.Choice(measure.VMM_TYPES),
    help="With --stage0: the VMM [default: qemu].",
)
@click.option("--guest-features", help="With --stage0: SEV_FEATURES, hex [default: 0x1].")
@click.option(
    "--kernel",
    type=click.Path(dir_okay=False),
    help="Compute the kernel image and setup data digests from this bzImage.",
)
@click.option(
    "--initrd", type=click.Path(dir_okay=False), help="Compute the initrd digest from this file."
)
@click.option(
    "--cmdline",
    help="The kernel command line as the VMM passes it: the regex is this text anchored"
    " (^...$), only a final --launcher-addr=vsock://CID:PORT's port free.",
)
@click.option(
    "--like",
    type=click.Path(dir_okay=False),
    help="Copy the values not computed or given otherwise from this evidence (not verified):"
    " the ACPI and memory map digests depend on the VMM and machine and cannot be computed.",
)
@click.option(
    "--amd-sha384",
    type=Digest("sha384"),
    help="The AMD SEV-SNP launch measurement (96 hex digits) instead of --stage0.",
)
@click.option(
    "--min-tcb",
    help="The minimum TCB: boot_loader/tee/snp/microcode[/fmc] (else the --like evidence's"
    " reported TCB; never guessed).",
)
@click.option(
    "--kernel-image-sha256",
    type=Digest(),
    help="The kernel image digest stage0 measures (instead of --kernel).",
)
@click.option(
    "--kernel-setup-data-sha256",
    type=Digest(),
    help="The kernel setup data digest stage0 measures (instead of --kernel).",
)
@click.option(
    "--init-ram-fs-sha256",
    type=Digest(),
    help="The initial RAM disk digest (instead of --initrd).",
)
@click.option(
    "--memory-map-sha256",
    type=Digest(),
    help="The E820 memory map digest stage0 measures (VMM- and machine-specific: usually"
    " from --like).",
)
@click.option(
    "--acpi-table-sha256",
    type=Digest(),
    help="The ACPI tables digest stage0 measures (VMM- and machine-specific: usually from --like).",
)
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
@click.option(
    "--insecure",
    is_flag=True,
    help="An insecure policy: no hardware root check (no amd_sev values needed).",
)
@click.option(
    "--description", default="", help="The policy's description (not signed) [default: none]."
)
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False),
    help="Sign with this P-256 private key (a file holding 64 hex digits, as `hats keys gen"
    " --private-out` writes); verify with its public key (--policy-public-key)"
    " [default: unsigned].",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object: the output, hats_version, every value with its provenance.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The policy file to write (missing directories are created).",
)
def make_command(
    system_image: str | None,
    system_image_sha256: str | None,
    bundles: tuple[str, ...],
    bundle_digests: tuple[str, ...],
    stage0: str | None,
    vcpus: int | None,
    cpu: str | None,
    cpu_from: str | None,
    vmm: str | None,
    guest_features: str | None,
    kernel: str | None,
    initrd: str | None,
    cmdline: str | None,
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
    as_json: bool,
    output: str,
) -> None:
    """Write a policy file (-o) with one policy for a system image and container bundles.

    Each value is computed from an artifact (--stage0, --kernel, --initrd,
    --cmdline, --system-image, --bundle), given as an option, or copied from
    the --like evidence, in that order of preference; an artifact and an
    option for the same value is an error. The output lists every value with
    where it came from (also as comments at the top of the file).

    Needed: the system image (--system-image or --system-image-sha256), at
    least one bundle (--bundle or --bundle-sha256), and, unless --like
    gives them: amd_sev.sha384 (--stage0 … or --amd-sha384) and
    min_tcb_version (--min-tcb), both not with --insecure; the kernel and
    setup data digests (--kernel or --kernel-image-sha256 and
    --kernel-setup-data-sha256), the initrd digest (--initrd or
    --init-ram-fs-sha256), --memory-map-sha256, --acpi-table-sha256 and the
    command line (--cmdline or --kernel-cmdline-regex).

    \b
    Examples:
      hats policy make --system-image IMAGE.tar.xz --bundle BUNDLE.tar \\
          --like evidence.binarypb --sign-key policy.key -o policy.txtpb
      hats policy make --system-image-sha256 sha256:HEX --bundle-sha256 HEX \\
          --like dice.bin --insecure -o out/policy.txtpb
    """
    from hats.attestation import policymake
    from hats.attestation.measure_cli import parse_guest_features, resolve_cpu

    request = policymake.PolicyRequest(
        system_image=system_image,
        system_image_sha256=system_image_sha256,
        bundles=bundles,
        bundle_digests=bundle_digests,
        stage0=policymake.Stage0Options(
            path=stage0,
            vcpus=vcpus,
            cpu=cpu,
            cpu_from=cpu_from,
            vmm=vmm,
            guest_features=None if guest_features is None else parse_guest_features(guest_features),
        ),
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        like=like,
        amd_sha384=amd_sha384,
        min_tcb=None if min_tcb is None else _parse_tcb(min_tcb),
        kernel_image_sha256=kernel_image_sha256,
        kernel_setup_data_sha256=kernel_setup_data_sha256,
        init_ram_fs_sha256=init_ram_fs_sha256,
        memory_map_sha256=memory_map_sha256,
        acpi_table_sha256=acpi_table_sha256,
        kernel_cmdline_regex=kernel_cmdline_regex,
        allow_open_cmdline_regex=allow_open_cmdline_regex,
        insecure=insecure,
        description=description,
        sign_key=sign_key,
    )
    try:
        made = policymake.make_policy_text(request, resolve_cpu)
    except policymake.PolicyUsageError as exc:
        raise click.UsageError(str(exc)) from None
    for warning in made.stderr_warnings():
        click.echo(f"hats: warning: {warning}", err=True)
    make_parent_dirs(Path(output))
    write_bytes_atomic(Path(output), made.text.encode("utf-8"))
    if as_json:
        document = {
            "hats_version": hats.__version__,
            "output": output,
            "policies": 1,
            "signed": made.signed,
            "insecure": made.insecure,
            "values": made.values.as_json(),
            "warnings": made.warnings,
        }
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"{output}: 1 {'signed' if made.signed else 'unsigned'} policy")
    for line in made.values.lines():
        click.echo(f"  {line}")


# --- policy check ------------------------------------------------------------------------


def describe_policy(item: policies_pb2.AppraisalPolicy) -> list[str]:
    """What ``item`` accepts, in words: one line per rule, in the order they are matched."""
    from hats.attestation import policy

    m = item.measurement
    stage0 = m.stage0_measurement
    lines: list[str] = []
    if stage0.WhichOneof("type") == "amd_sev":
        tcb = stage0.amd_sev.min_tcb_version
        lines.append(
            f"AMD SEV-SNP evidence (VCEK chain to AMD's roots) whose launch measurement is"
            f" {stage0.amd_sev.sha384}, with a TCB of at least boot_loader {tcb.boot_loader},"
            f" tee {tcb.tee}, snp {tcb.snp}, microcode {tcb.microcode}"
        )
    else:
        lines.append(
            "evidence from ANY platform, with no hardware root (insecure: only where insecure"
            " policies are accepted)"
        )
    lines += [
        f"a kernel image with SHA-256 {m.kernel_image_sha256} and setup data"
        f" {m.kernel_setup_data_sha256}",
        f"an initial RAM disk with SHA-256 {m.init_ram_fs_sha256}",
        f"a memory map with SHA-256 {m.memory_map_sha256} and ACPI tables {m.acpi_table_sha256}",
    ]
    regex = m.kernel_cmd_line_regex
    risk = policy.cmdline_regex_risk(regex)
    anchored = "anchored" if risk is None else f"OPEN-ENDED: {risk}"
    lines.append(f"a kernel command line matching {regex!r} ({anchored})")
    lines.append(f"the system image with SHA-256 {m.system_image_sha256}")
    bundles = list(m.container_binary_sha256)
    noun = "bundle" if len(bundles) == 1 else f"one of {len(bundles)} bundles"
    lines.append(f"a container {noun} with SHA-256 {', '.join(bundles)}")
    return lines


@policy_group.command("check")
@click.argument("policy_file", metavar="POLICY", type=click.Path(dir_okay=False))
@click.option(
    "--public-key",
    "--policy-public-key",
    "public_key",
    metavar="PEM|HEX",
    help="Check the signatures with this P-256 public key: a PEM file, or 130 hex digits"
    " inline or in a file [default: the reference's policy key].",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout: each policy, its signature and what it accepts.",
)
def check_command(policy_file: str, public_key: str | None, as_json: bool) -> int:
    """Check a policy file: syntax, the loading rules, each signature, and what it accepts.

    Exit 0 when every policy loads and its signature verifies under the key,
    1 when a signature is missing or does not verify (a TVS with
    --enable_policy_signature would refuse the file), 2 when the file cannot
    be read or does not load.

    \b
    Examples:
      hats policy check policy.txtpb
      hats policy check policy.txtpb --public-key policy-key.pub
    """
    from hats.attestation import policy
    from hats.attestation.policykey import describe_key, read_policy_public_key

    try:
        key = policy.REFERENCE_POLICY_KEY
        if public_key is not None:
            key = read_policy_public_key(public_key, "--public-key")
        text = _read(policy_file, "policy").decode("utf-8", errors="replace")
        policies = policy.load_policies(text, policy_file, accept_insecure=True)
    except HatsError as exc:
        exc.exit_code = 2
        raise
    key_name = describe_key(key)
    entries: list[dict[str, Any]] = []
    for index, item in enumerate(policies.policies):
        try:
            policy.verify_policy_signature(item, key)
        except PolicyError as exc:
            signature = f"{'unsigned' if not item.signature else 'does not verify'} ({exc})"
            signed_ok = False
        else:
            signature = f"verifies under {key_name}"
            signed_ok = True
        entries.append(
            {
                "index": index,
                "description": item.description,
                "insecure": item.measurement.stage0_measurement.WhichOneof("type") == "insecure",
                "signature_ok": signed_ok,
                "signature": signature,
                "accepts": describe_policy(item),
            }
        )
    ok = all(entry["signature_ok"] for entry in entries)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "file": policy_file,
                    "public_key": key_name,
                    "ok": ok,
                    "policies": entries,
                    "hats_version": hats.__version__,
                },
                indent=2,
            )
        )
    else:
        count = len(entries)
        click.echo(printable(f"{policy_file}: {count} polic{'y' if count == 1 else 'ies'}"))
        for entry in entries:
            title = f" ({entry['description']})" if entry["description"] else ""
            click.echo(printable(f"policy {entry['index']}{title}: signature {entry['signature']}"))
            click.echo("  accepts:")
            for line in entry["accepts"]:
                click.echo(printable(f"    {line}"))
    if not ok:
        click.echo(f"hats: {policy_file}: not every signature verifies under {key_name}", err=True)
        return 1
    return 0
