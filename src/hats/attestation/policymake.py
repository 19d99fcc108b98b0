"""``hats policy make``'s rules: one policy from artifacts, options and a ``--like`` evidence.

:func:`make_policy_text` takes a :class:`PolicyRequest` (the options, parsed)
and returns a :class:`MadePolicy` (the file's text, every value with its
provenance, the warnings); the CLI only parses options, prints and writes.
It reads the artifacts (stage0, kernel, initrd, image, bundles, evidence, key).

Rules, in the order they are checked:

1. **Usage** (:class:`PolicyUsageError`, exit 2): the system image (file or
   digest, not both) and at least one bundle are required and never copied
   from ``--like``; an artifact and the option for the same value are
   exclusive (``--stage0``/``--amd-sha384``, ``--kernel``/
   ``--kernel-image-sha256`` and ``--kernel-setup-data-sha256``,
   ``--initrd``/``--init-ram-fs-sha256``, ``--cmdline``/
   ``--kernel-cmdline-regex``); the stage0 options need ``--stage0``, which
   needs ``--vcpus``, is not for ``--insecure``, and with the QEMU VMM needs
   the CPU (``--cpu`` or ``--cpu-from``).
2. **Precedence**: the ``--like`` evidence's values are put first (not
   verified; an evidence without SEV-SNP needs ``--insecure``), then the
   values computed from artifacts, then the explicit options; a later value
   replaces an earlier one (:class:`~hats.attestation.provenance.ReferenceValues`).
   The SEV-SNP TCB minimum comes from ``--min-tcb`` or the evidence, never a
   default. ``--insecure`` drops the SEV-SNP values.
3. **Required**: every value of :data:`NEEDED_VALUES` (less the SEV-SNP two
   when insecure) must be there, else one usage error lists what is missing.
4. **The command line is anchored**: a ``kernel_cmd_line_regex`` that is
   open-ended (:func:`hats.attestation.policy.cmdline_regex_risk`, F10) is
   refused (:class:`~hats.attestation.errors.PolicyError`) unless
   ``allow_open_cmdline_regex``; then it is a warning.
5. **Disagreement with ``--like``**: every value computed or given that the
   ``--like`` evidence contradicts is one warning line ("the policy will not
   accept it"): a digest that differs, or a command-line regex that does not
   match the evidence's command line (a regex that matches it, whatever its
   text, is no disagreement).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import hats
from hats.attestation import measure
from hats.attestation.errors import PolicyError
from hats.errors import HatsError
from hats.hashing import file_sha256, read_failure

if TYPE_CHECKING:
    from hats.attestation import provenance, verify
    from hats.pb.pcit.tvs import appraisal_policies_pb2 as policies_pb2

#: Each value the policy needs → the options that give it.
NEEDED_VALUES = {
    "amd_sev.sha384": "--stage0 STAGE0_BIN --vcpus N --cpu-from EVIDENCE, or --amd-sha384 HEX",
    "amd_sev.min_tcb_version": "--min-tcb B/T/S/M",
    "kernel_image_sha256": "--kernel BZIMAGE or --kernel-image-sha256 HEX",
    "kernel_setup_data_sha256": "--kernel BZIMAGE or --kernel-setup-data-sha256 HEX",
    "init_ram_fs_sha256": "--initrd FILE or --init-ram-fs-sha256 HEX",
    "memory_map_sha256": "--memory-map-sha256 HEX",
    "acpi_table_sha256": "--acpi-table-sha256 HEX",
    "kernel_cmd_line_regex": "--cmdline TEXT or --kernel-cmdline-regex REGEX",
}
_SEV_VALUES = ("amd_sev.sha384", "amd_sev.min_tcb_version")
_CMDLINE = "kernel_cmd_line_regex"

#: ``(cpu, cpu_from)`` → the CPU signature (or None) and where it came from.
CpuResolver = Callable[[str | None, str | None], tuple[measure.CpuSignature | None, str]]


class PolicyUsageError(HatsError):
    """Options that do not make a policy (rules 1 and 3): a usage error."""

    exit_code = 2


@dataclass(frozen=True)
class Stage0Options:
    """``--stage0`` and the options that go with it (as given)."""

    path: str | None = None
    vcpus: int | None = None
    cpu: str | None = None
    cpu_from: str | None = None
    vmm: str | None = None
    guest_features: int | None = None


@dataclass(frozen=True)
class PolicyRequest:
    """The options of ``hats policy make``, parsed (digests normalised, the TCB a ``Tcb``)."""

    system_image: str | None = None
    system_image_sha256: str | None = None
    bundles: tuple[str, ...] = ()
    bundle_digests: tuple[str, ...] = ()
    stage0: Stage0Options = Stage0Options()
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    like: str | None = None
    amd_sha384: str | None = None
    min_tcb: verify.Tcb | None = None
    kernel_image_sha256: str | None = None
    kernel_setup_data_sha256: str | None = None
    init_ram_fs_sha256: str | None = None
    memory_map_sha256: str | None = None
    acpi_table_sha256: str | None = None
    kernel_cmdline_regex: str | None = None
    allow_open_cmdline_regex: bool = False
    insecure: bool = False
    description: str = ""
    sign_key: str | None = None


@dataclass
class MadePolicy:
    """A policy made: the file's ``text``, its values with provenance, and the warnings."""

    text: str
    values: provenance.ReferenceValues
    signed: bool
    insecure: bool
    open_regex_warning: str | None = None
    warnings: list[str] = field(default_factory=list)

    def stderr_warnings(self) -> list[str]:
        """Every warning line, the open-ended regex first."""
        first = [] if self.open_regex_warning is None else [self.open_regex_warning]
        return first + self.warnings


def check_usage(request: PolicyRequest) -> None:
    """Rule 1, except the CPU (checked when stage0 is measured)."""
    if request.system_image is not None and request.system_image_sha256 is not None:
        raise PolicyUsageError("give one of --system-image and --system-image-sha256")
    image_missing = request.system_image is None and request.system_image_sha256 is None
    bundles_missing = not request.bundles and not request.bundle_digests
    if image_missing or bundles_missing:
        needs = []
        if image_missing:
            needs.append("system_image_sha256 (--system-image FILE or --system-image-sha256 HEX)")
        if bundles_missing:
            needs.append(
                "container_binary_sha256 (--bundle FILE or --bundle-sha256 HEX, repeatable)"
            )
        raise PolicyUsageError(f"missing {'; '.join(needs)}: never copied from --like")
    stage0 = request.stage0
    for artifact, artifact_name, option, option_name in (
        (stage0.path, "--stage0", request.amd_sha384, "--amd-sha384"),
        (request.kernel, "--kernel", request.kernel_image_sha256, "--kernel-image-sha256"),
        (
            request.kernel,
            "--kernel",
            request.kernel_setup_data_sha256,
            "--kernel-setup-data-sha256",
        ),
        (request.initrd, "--initrd", request.init_ram_fs_sha256, "--init-ram-fs-sha256"),
        (request.cmdline, "--cmdline", request.kernel_cmdline_regex, "--kernel-cmdline-regex"),
    ):
        if artifact is not None and option is not None:
            raise PolicyUsageError(f"give one of {artifact_name} and {option_name}")
    stage0_options = {
        "--vcpus": stage0.vcpus,
        "--cpu": stage0.cpu,
        "--cpu-from": stage0.cpu_from,
        "--vmm": stage0.vmm,
        "--guest-features": stage0.guest_features,
    }
    if stage0.path is None:
        stray = [name for name, value in stage0_options.items() if value is not None]
        if stray:
            raise PolicyUsageError(f"{', '.join(stray)} need --stage0")
    elif request.insecure:
        raise PolicyUsageError("--stage0 measures an SEV-SNP launch: not with --insecure")
    elif stage0.vcpus is None:
        raise PolicyUsageError("--stage0 needs --vcpus")


def _file_sha256(path: str) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise HatsError(f"{path}: cannot read: {read_failure(exc)}") from None


def _put_like(values: provenance.ReferenceValues, like: str, *, insecure: bool) -> str:
    """The --like evidence's root and kernel values, as copied values; its command line."""
    from hats.attestation import policy, provenance, verify
    from hats.attestation.evidencefile import load_evidence

    measurements = verify.extract_root_and_kernel(load_evidence(like))
    if measurements.amd_measurement is None and not insecure:
        raise PolicyError(
            f"{like}: the evidence is {measurements.platform}; an insecure policy needs --insecure"
        )

    def copied(how: str) -> provenance.Provenance:
        return provenance.Provenance("evidence", like, how)

    if measurements.amd_measurement is not None:
        values.put(
            "amd_sev.sha384",
            measurements.amd_measurement,
            copied("the SEV-SNP report's MEASUREMENT"),
        )
    if measurements.reported_tcb is not None:
        values.put(
            "amd_sev.min_tcb_version",
            measurements.reported_tcb,
            copied("the SEV-SNP report's REPORTED_TCB"),
        )
    for name in (
        "kernel_image_sha256",
        "kernel_setup_data_sha256",
        "init_ram_fs_sha256",
        "memory_map_sha256",
        "acpi_table_sha256",
    ):
        values.put(name, getattr(measurements, name), copied("its Stage0 event (event 0)"))
    values.put(
        _CMDLINE,
        policy.cmdline_regex_for(measurements.kernel_cmdline),
        copied(
            "its Stage0 event's kernel command line, anchored, only the launcher port free"
            f" ({policy.PORT_REGEX})"
        ),
    )
    return measurements.kernel_cmdline


def _put_stage0(
    values: provenance.ReferenceValues, stage0: Stage0Options, resolve_cpu: CpuResolver
) -> None:
    """``amd_sev.sha384`` computed from the stage0 binary (see ``hats measure stage0``)."""
    from hats.attestation import provenance

    assert stage0.path is not None and stage0.vcpus is not None
    vmm = stage0.vmm or "qemu"
    signature, cpu_source = resolve_cpu(stage0.cpu, stage0.cpu_from)
    if vmm == "qemu" and signature is None:
        raise PolicyUsageError("--stage0 needs --cpu or --cpu-from (the QEMU VMM measures it)")
    features = measure.DEFAULT_GUEST_FEATURES
    if stage0.guest_features is not None:
        features = stage0.guest_features
    result = measure.snp_launch_measurement(
        stage0.path, vcpus=stage0.vcpus, cpu=signature, vmm=vmm, guest_features=features
    )
    how = f"SEV-SNP launch digest (file SHA-256 {result.firmware_sha256}), {result.inputs()}"
    if result.cpu is not None:
        how += f", CPU from {cpu_source}"
    values.put("amd_sev.sha384", result.sha384, provenance.Provenance("computed", stage0.path, how))


def _put_artifacts(values: provenance.ReferenceValues, request: PolicyRequest) -> None:
    """The kernel, initrd and command-line values computed from artifacts."""
    from hats.attestation import policy, provenance

    if request.kernel is not None:
        kernel = request.kernel
        digests = measure.kernel_digests(measure.read_file(kernel, "kernel"), kernel)
        values.put(
            "kernel_image_sha256",
            digests.kernel_image_sha256,
            provenance.Provenance(
                "computed", kernel, f"SHA-256 after the {digests.setup_size} setup bytes"
            ),
        )
        values.put(
            "kernel_setup_data_sha256",
            digests.kernel_setup_data_sha256,
            provenance.Provenance(
                "computed",
                kernel,
                f"SHA-256 of the {digests.setup_size} setup bytes as QEMU patches them",
            ),
        )
    if request.initrd is not None:
        values.put(
            "init_ram_fs_sha256",
            measure.file_sha256(request.initrd, "initrd"),
            provenance.Provenance("computed", request.initrd, "SHA-256 of the file"),
        )
    if request.cmdline is not None:
        values.put(
            _CMDLINE,
            policy.cmdline_regex_for(request.cmdline),
            provenance.Provenance(
                "computed",
                "--cmdline",
                f"the command line {provenance.quoted(request.cmdline)} anchored, only the"
                f" launcher port free ({policy.PORT_REGEX})",
            ),
        )


def _put_options(values: provenance.ReferenceValues, request: PolicyRequest) -> None:
    from hats.attestation import provenance

    for name, option, given in (
        ("amd_sev.sha384", "--amd-sha384", request.amd_sha384),
        ("kernel_image_sha256", "--kernel-image-sha256", request.kernel_image_sha256),
        (
            "kernel_setup_data_sha256",
            "--kernel-setup-data-sha256",
            request.kernel_setup_data_sha256,
        ),
        ("init_ram_fs_sha256", "--init-ram-fs-sha256", request.init_ram_fs_sha256),
        ("memory_map_sha256", "--memory-map-sha256", request.memory_map_sha256),
        ("acpi_table_sha256", "--acpi-table-sha256", request.acpi_table_sha256),
        (_CMDLINE, "--kernel-cmdline-regex", request.kernel_cmdline_regex),
    ):
        if given is not None:
            values.put(name, given, provenance.Provenance("option", option))
    if request.min_tcb is not None:
        values.put(
            "amd_sev.min_tcb_version",
            request.min_tcb,
            provenance.Provenance("option", "--min-tcb"),
        )


def _judge_cmdline(values: provenance.ReferenceValues, like_cmdline: str) -> None:
    """Rule 5 for the command line: a disagreement is a regex that does not match it."""
    from hats.attestation import policy

    item = values.values.get(_CMDLINE)
    if item is None or item.provenance.kind == "evidence":
        return
    disagrees = not policy.cmdline_matches(item.value, like_cmdline)
    shown = item.evidence_value or policy.cmdline_regex_for(like_cmdline)
    values.values[_CMDLINE] = dataclasses.replace(item, evidence_value=shown if disagrees else None)


def collect_values(
    request: PolicyRequest, resolve_cpu: CpuResolver
) -> tuple[provenance.ReferenceValues, str | None]:
    """Rules 1 to 4: every value with its provenance, and the open-ended regex warning."""
    from hats.attestation import policy, provenance

    check_usage(request)
    values = provenance.ReferenceValues()
    like_cmdline = None
    if request.like is not None:
        like_cmdline = _put_like(values, request.like, insecure=request.insecure)
    if request.stage0.path is not None:
        _put_stage0(values, request.stage0, resolve_cpu)
    _put_artifacts(values, request)
    _put_options(values, request)
    if like_cmdline is not None:
        _judge_cmdline(values, like_cmdline)
    needed = dict(NEEDED_VALUES)
    if request.insecure:
        for name in _SEV_VALUES:
            values.values.pop(name, None)
            del needed[name]
    missing = [f"{name} ({options})" for name, options in needed.items() if not values.has(name)]
    if missing:
        raise PolicyUsageError(
            f"missing {len(missing)} value{'s' if len(missing) > 1 else ''}: {'; '.join(missing)};"
            " or copy those from an evidence with --like EVIDENCE"
        )
    risk = policy.cmdline_regex_risk(values.get(_CMDLINE))
    warning = None
    if risk is not None:
        if not request.allow_open_cmdline_regex:
            raise PolicyError(
                f"--kernel-cmdline-regex: {risk}; anchor it (^…:{policy.PORT_REGEX}$) or pass"
                " --allow-open-cmdline-regex"
            )
        warning = f"kernel_cmd_line_regex is open-ended: {risk}"
    return values, warning


def make_policy_text(request: PolicyRequest, resolve_cpu: CpuResolver) -> MadePolicy:
    """The policy file for ``request`` (module rules); nothing is written."""
    from hats.attestation import policy, provenance
    from hats.attestation.evidencefile import read_file
    from hats.keys.keygen import private_key_from_hex
    from hats.pb.pcit.tvs import appraisal_policies_pb2 as policies_pb2

    values, open_warning = collect_values(request, resolve_cpu)
    if request.system_image is not None:
        values.put(
            "system_image_sha256",
            _file_sha256(request.system_image),
            provenance.Provenance("computed", request.system_image, "SHA-256 of the file"),
        )
    else:
        values.put(
            "system_image_sha256",
            request.system_image_sha256,
            provenance.Provenance("option", "--system-image-sha256"),
        )
    containers = [
        *(
            (_file_sha256(path), provenance.Provenance("computed", path, "SHA-256 of the file"))
            for path in request.bundles
        ),
        *(
            (digest, provenance.Provenance("option", "--bundle-sha256"))
            for digest in request.bundle_digests
        ),
    ]
    for index, (digest, origin) in enumerate(containers):
        values.put(f"container_binary_sha256[{index}]", digest, origin)
    made = policy.make_policy(
        system_image_sha256=values.get("system_image_sha256"),
        container_sha256=[digest for digest, _ in containers],
        insecure=request.insecure,
        description=request.description,
        kernel_image_sha256=values.get("kernel_image_sha256"),
        kernel_setup_data_sha256=values.get("kernel_setup_data_sha256"),
        init_ram_fs_sha256=values.get("init_ram_fs_sha256"),
        memory_map_sha256=values.get("memory_map_sha256"),
        acpi_table_sha256=values.get("acpi_table_sha256"),
        kernel_cmd_line_regex=values.get(_CMDLINE),
        amd_sha384=None if request.insecure else values.get("amd_sev.sha384"),
        min_tcb=None if request.insecure else values.get("amd_sev.min_tcb_version"),
    )
    if request.sign_key is not None:
        key_text = read_file(request.sign_key, "signing key").decode("ascii", errors="replace")
        policy.sign_policy(made, private_key_from_hex(key_text))
    policies: policies_pb2.AppraisalPolicies = policies_pb2.AppraisalPolicies()
    policies.policies.append(made)
    header = values.comments(
        f"Made by hats {hats.__version__} (hats policy make). Where each value came from"
        " (informative: not covered by the signature):"
    )
    return MadePolicy(
        text=header + policy.format_policies(policies),
        values=values,
        signed=request.sign_key is not None,
        insecure=request.insecure,
        open_regex_warning=open_warning,
        warnings=values.warnings(),
    )


__all__ = [
    "NEEDED_VALUES",
    "MadePolicy",
    "PolicyRequest",
    "PolicyUsageError",
    "Stage0Options",
    "check_usage",
    "collect_values",
    "make_policy_text",
]
