"""The generated protobuf/gRPC code (``hats.pb``) against the spec and real artefacts.

Real data: the HATs evidence from a Genoa CVM (binary and text form) and the
appraisal policy written for it (``tests/data/hats-evidence``). Facts:
wire-protocol.md §3 (services, messages, field numbers, method paths) and §7.2
(appraisal policies), system-image.md §5.2 (launcher config).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from google.protobuf import any_pb2, descriptor, descriptor_pool, empty_pb2, message, text_format
from google.protobuf.unknown_fields import UnknownFieldSet

import shared_data
from hats.pb.oak import digest_pb2
from hats.pb.oak.attestation.v1 import (
    dice_pb2,
    endorsement_pb2,
    eventlog_pb2,
    evidence_pb2,
    tcb_version_pb2,
)
from hats.pb.oak.containers import interfaces_pb2, interfaces_pb2_grpc
from hats.pb.oak.containers.v1 import orchestrator_crypto_pb2, orchestrator_crypto_pb2_grpc
from hats.pb.oak.key_provisioning.v1 import key_provisioning_pb2, key_provisioning_pb2_grpc
from hats.pb.oak.session.v1 import messages_pb2
from hats.pb.pcit.client import launcher_config_pb2, launcher_pb2, launcher_pb2_grpc
from hats.pb.pcit.server_common import orchestrator_pb2, orchestrator_pb2_grpc
from hats.pb.pcit.tvs import appraisal_policies_pb2, tvs_messages_pb2, tvs_pb2, tvs_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
EVIDENCE_FILES = sorted(shared_data.EVIDENCE.glob("*.binarypb"))
POLICY_FILE = shared_data.EVIDENCE / "on-perm-reference.txtpb"

# --- evidence ----------------------------------------------------------------------------


def unknown_field_paths(msg: message.Message, path: str = "") -> list[str]:
    """Every place in ``msg`` (recursively) holding fields our schema does not declare."""
    unknown = len(UnknownFieldSet(msg))
    found = [f"{path or msg.DESCRIPTOR.full_name}: {unknown} unknown"] if unknown else []
    for field, value in msg.ListFields():
        if field.type != descriptor.FieldDescriptor.TYPE_MESSAGE:
            continue
        items = value if field.is_repeated else [value]
        for i, item in enumerate(items):
            if isinstance(item, message.Message):
                found += unknown_field_paths(item, f"{path}.{field.name}[{i}]")
    return found


def test_evidence_files_exist() -> None:
    names = [p.name for p in EVIDENCE_FILES]
    assert names == ["evidence_v1_genoa.binarypb", "evidence_v2_genoa.binarypb"]


@pytest.mark.parametrize("path", EVIDENCE_FILES, ids=lambda p: p.stem)
def test_evidence_reencodes_byte_identically(path: Path) -> None:
    data = path.read_bytes()
    evidence = evidence_pb2.Evidence.FromString(data)
    assert unknown_field_paths(evidence) == []
    assert evidence.SerializeToString() == data
    assert evidence.SerializeToString(deterministic=True) == data
    # The shape wire-protocol.md §2.1 describes for this evidence.
    assert evidence.root_layer.platform == evidence_pb2.AMD_SEV_SNP
    assert len(evidence.root_layer.remote_attestation_report) == 1184
    report_data = evidence.root_layer.remote_attestation_report[0x50:0x70]
    assert report_data == hashlib.sha256(evidence.root_layer.eca_public_key).digest()
    assert len(evidence.layers) == len(evidence.event_log.encoded_events) == 3
    assert evidence.application_keys.group_signing_public_key_certificate == b""


EVENT_PAYLOADS: dict[str, type[message.Message]] = {
    "Stage0": eventlog_pb2.Stage0Measurements,
    "stage1": eventlog_pb2.SystemLayerData,
    "ORCHESTRATOR": eventlog_pb2.ContainerLayerData,
}


def events_of(evidence: evidence_pb2.Evidence) -> dict[str, Any]:
    """tag → decoded payload, checking that each event re-encodes byte-identically."""
    out: dict[str, Any] = {}
    for encoded in evidence.event_log.encoded_events:
        event = eventlog_pb2.Event.FromString(encoded)
        assert event.SerializeToString() == encoded
        payload_type = EVENT_PAYLOADS[event.tag]
        assert event.event.type_url == f"type.googleapis.com/{payload_type.DESCRIPTOR.full_name}"
        payload = payload_type()
        assert event.event.Unpack(payload)
        assert payload.SerializeToString() == event.event.value
        assert unknown_field_paths(event) == unknown_field_paths(payload) == []
        out[event.tag] = payload
    assert list(out) == ["Stage0", "stage1", "ORCHESTRATOR"]
    return out


@pytest.mark.parametrize("path", EVIDENCE_FILES, ids=lambda p: p.stem)
def test_evidence_events_decode_into_the_layer_messages(path: Path) -> None:
    evidence = evidence_pb2.Evidence.FromString(path.read_bytes())
    events = events_of(evidence)
    container = events["ORCHESTRATOR"]
    assert container.config.sha2_256 == hashlib.sha256(b"").digest()
    assert len(container.bundle.sha2_256) == 32
    assert len(container.hybrid_encryption_public_key) == 32
    assert len(container.signing_public_key) == len(container.session_binding_public_key) == 65
    assert len(events["stage1"].system_image.sha2_256) == 32
    assert events["Stage0"].kernel_cmdline.startswith(" console=ttyS0 ")


@pytest.mark.parametrize("path", EVIDENCE_FILES, ids=lambda p: p.stem)
def test_evidence_text_twin_parses_to_the_same_message(path: Path) -> None:
    evidence = evidence_pb2.Evidence.FromString(path.read_bytes())
    text = path.with_suffix(".txtpb").read_text(encoding="utf-8")
    parsed = text_format.Parse(text, evidence_pb2.Evidence())
    assert parsed == evidence
    assert parsed.SerializeToString() == path.read_bytes()
    assert text_format.MessageToString(evidence) == text


def test_dice_data_round_trip() -> None:
    evidence = evidence_pb2.Evidence.FromString(EVIDENCE_FILES[0].read_bytes())
    dice = dice_pb2.DiceData(
        evidence=evidence,
        certificate_authority=dice_pb2.CertificateAuthority(eca_private_key=b"\x01" * 32),
    )
    body = dice.SerializeToString()
    assert dice_pb2.DiceData.FromString(body) == dice
    assert body.startswith(b"\x0a")  # field 1, length-delimited: the evidence comes first


def test_orchestrator_endorsements_encode_as_in_the_spec() -> None:
    endorsements = endorsement_pb2.Endorsements(
        oak_containers=endorsement_pb2.OakContainersEndorsements()
    )
    assert endorsements.SerializeToString() == b"\x12\x00"
    endorsed = messages_pb2.EndorsedEvidence(endorsements=endorsements)
    assert endorsed.SerializeToString() == b"\x12\x02\x12\x00"


def test_messages_without_spec_fields_keep_what_they_carry() -> None:
    """Declared-empty messages (fields not in the spec) re-encode what they received."""
    # RootLayerEndorsements.stage0 carrying field 1 (bytes) and field 2 (varint) we do not declare.
    wire = b"\x0a\x03DER" + b"\x12\x07" + b"\x0a\x03abc\x10\x05"
    parsed = endorsement_pb2.RootLayerEndorsements.FromString(wire)
    assert parsed.tee_certificate == b"DER"
    assert parsed.SerializeToString() == wire
    group_keys = key_provisioning_pb2.GroupKeys.FromString(b"\x0a\x04\x0a\x02\x01\x02")
    assert group_keys.SerializeToString() == b"\x0a\x04\x0a\x02\x01\x02"


# --- appraisal policy --------------------------------------------------------------------

#: The hard-coded policy verification key of the reference TVS (wire-protocol.md §7.2).
POLICY_KEY = bytes.fromhex(
    "048fa2c25d3d3368b23f7877c9ac84866f440f9dd7a94e7ca5440ef1bc611f77db"
    "2940cca2233d06c9cfbf503ee73fdf5cf1f4c637f376bb7daaf637faf05656e4"
)


def load_policies() -> appraisal_policies_pb2.AppraisalPolicies:
    text = POLICY_FILE.read_text(encoding="utf-8")
    return text_format.Parse(text, appraisal_policies_pb2.AppraisalPolicies())


def test_policy_parses_as_appraisal_policies() -> None:
    text = POLICY_FILE.read_text(encoding="utf-8")
    policies = load_policies()
    assert len(policies.policies) == 1
    measurement = policies.policies[0].measurement
    in_file = re.findall(r'system_image_sha256: "([0-9a-f]{64})"', text)
    assert in_file == [measurement.system_image_sha256]
    assert measurement.system_image_sha256 == (
        "3c59bd10c2b890ff152cc57fdca0633693acbb04982da90c670de6530fa8a836"
    )
    assert measurement.stage0_measurement.WhichOneof("type") == "amd_sev"
    tcb = measurement.stage0_measurement.amd_sev.min_tcb_version
    assert (tcb.boot_loader, tcb.tee, tcb.snp, tcb.microcode) == (10, 0, 25, 84)
    assert policies.policies[0].signature[0].signer == "hats"
    # Text form round trip through the binary encoding.
    again = appraisal_policies_pb2.AppraisalPolicies.FromString(policies.SerializeToString())
    assert again == policies


def test_policy_signature_verifies_over_the_parsed_fields() -> None:
    """§7.2's signed byte string, built from our parsed fields, verifies: every value is right."""
    policy = load_policies().policies[0]
    m = policy.measurement
    sev = m.stage0_measurement.amd_sev
    tcb = sev.min_tcb_version
    signed = bytes.fromhex(sev.sha384) + b"".join(
        v.to_bytes(4, "big") for v in (tcb.boot_loader, tcb.tee, tcb.snp, tcb.microcode)
    )
    for digest in (
        m.kernel_image_sha256,
        m.kernel_setup_data_sha256,
        m.init_ram_fs_sha256,
        m.memory_map_sha256,
        m.acpi_table_sha256,
    ):
        signed += bytes.fromhex(digest)
    signed += m.kernel_cmd_line_regex.encode()
    signed += bytes.fromhex(m.system_image_sha256)
    signed += b"".join(bytes.fromhex(d) for d in m.container_binary_sha256)
    raw = bytes.fromhex(policy.signature[0].signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), POLICY_KEY)
    key.verify(der, signed, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("path", EVIDENCE_FILES, ids=lambda p: p.stem)
def test_policy_measurements_match_the_evidence_events(path: Path) -> None:
    """The policy digests map onto the event fields as §3.9 says (v2 differs in the image only)."""
    m = load_policies().policies[0].measurement
    events = events_of(evidence_pb2.Evidence.FromString(path.read_bytes()))
    stage0 = events["Stage0"]
    assert stage0.kernel_measurement.hex() == m.kernel_image_sha256
    assert stage0.setup_data_digest.hex() == m.kernel_setup_data_sha256
    assert stage0.ram_disk_digest.hex() == m.init_ram_fs_sha256
    assert stage0.memory_map_digest.hex() == m.memory_map_sha256
    assert stage0.acpi_digest.hex() == m.acpi_table_sha256
    assert re.fullmatch(m.kernel_cmd_line_regex, stage0.kernel_cmdline)
    assert [events["ORCHESTRATOR"].bundle.sha2_256.hex()] == list(m.container_binary_sha256)
    image = events["stage1"].system_image.sha2_256.hex()
    assert (image == m.system_image_sha256) == path.stem.startswith("evidence_v1")


# --- launcher config ---------------------------------------------------------------------

LAUNCHER_CONFIG = """
cvm_config {
  cvm_type: CVMTYPE_SEVSNP
  runc_runtime_bundle: "bundle.tar"
  hats_system_bundle: "./system_bundle_test_single.tar"
  num_cpus: 4
  ramdrive_size_kb: 10485760
  ram_size_kb: 8000000
  vmm_binary: "/usr/bin/echo"
  network_config { inbound_only { host_enclave_app_proxy_port: 8079 } }
  virtio_guest_cid: 38291
}
"""


def test_launcher_config_text_format() -> None:
    config = text_format.Parse(LAUNCHER_CONFIG, launcher_config_pb2.LauncherConfig())
    cvm = config.cvm_config
    assert cvm.cvm_type == launcher_config_pb2.CVMTYPE_SEVSNP
    assert cvm.network_config.WhichOneof("network_mode") == "inbound_only"
    assert cvm.network_config.inbound_only.host_enclave_app_proxy_port == 8079
    assert cvm.HasField("virtio_guest_cid") and cvm.virtio_guest_cid == 38291
    assert not launcher_config_pb2.CvmConfig().HasField("virtio_guest_cid")
    bridge = text_format.Parse(
        'virtual_bridge { virtual_bridge_device: "br0" cvm_ip_addr: "10.0.0.5" '
        'cvm_gateway_addr: "10.0.0.1" }',
        launcher_config_pb2.NetworkConfig(),
    )
    assert bridge.virtual_bridge.cvm_gateway_addr == "10.0.0.1"


# --- method paths (§3.10) ----------------------------------------------------------------

SPEC_METHOD_PATHS = """
/pcit.client.LauncherService/FetchOrchestratorMetadata
/pcit.client.LauncherService/VerifyReport
/pcit.tvs.TeeVerificationService/VerifyReport
/pcit.server_common.HatsOrchestrator/GetKeys
/oak.containers.Launcher/{GetOakSystemImage,GetContainerBundle,GetApplicationConfig,GetEndorsements,SendAttestationEvidence,NotifyAppReady}
/oak.containers.Orchestrator/{GetApplicationConfig,NotifyAppReady,GetEndorsedEvidence}
/oak.containers.v1.OrchestratorCrypto/{DeriveSessionKeys,Sign,BindSession}
/oak.key_provisioning.v1.KeyProvisioning/GetGroupKeys
"""


def spec_paths() -> set[str]:
    """Expand the §3.10 block (quoted above, one line split in two) into full method paths."""
    paths: set[str] = set()
    for token in SPEC_METHOD_PATHS.split():
        service, _, methods = token[1:].partition("/")
        for method in methods.strip("{}").split(","):
            paths.add(f"/{service}/{method}")
    return paths


PB2_WITH_SERVICES: list[ModuleType] = [
    launcher_pb2,
    tvs_pb2,
    orchestrator_pb2,
    interfaces_pb2,
    orchestrator_crypto_pb2,
    key_provisioning_pb2,
]


def test_method_paths_match_the_spec_exactly() -> None:
    generated: set[str] = set()
    for module in PB2_WITH_SERVICES:
        for service in module.DESCRIPTOR.services_by_name.values():
            generated |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    assert len(spec_paths()) == 17
    assert generated == spec_paths()


#: (path, client streaming, server streaming, request type, response type) from §3.2–§3.8.
METHOD_SHAPES = [
    ("/pcit.client.LauncherService/FetchOrchestratorMetadata", False, False,
     "google.protobuf.Empty", "pcit.client.FetchOrchestratorMetadataResponse"),
    ("/pcit.client.LauncherService/VerifyReport", True, True,
     "pcit.client.ForwardingTvsMessage", "pcit.tvs.OpaqueMessage"),
    ("/pcit.tvs.TeeVerificationService/VerifyReport", True, True,
     "pcit.tvs.OpaqueMessage", "pcit.tvs.OpaqueMessage"),
    ("/pcit.server_common.HatsOrchestrator/GetKeys", False, False,
     "google.protobuf.Empty", "pcit.server_common.GetKeysResponse"),
    ("/oak.containers.Launcher/GetOakSystemImage", False, True,
     "google.protobuf.Empty", "oak.containers.GetImageResponse"),
    ("/oak.containers.Launcher/GetContainerBundle", False, True,
     "google.protobuf.Empty", "oak.containers.GetImageResponse"),
    ("/oak.containers.Launcher/GetApplicationConfig", False, False,
     "google.protobuf.Empty", "oak.containers.GetApplicationConfigResponse"),
    ("/oak.containers.Launcher/GetEndorsements", False, False,
     "google.protobuf.Empty", "oak.attestation.v1.Endorsements"),
    ("/oak.containers.Launcher/SendAttestationEvidence", False, False,
     "oak.containers.SendAttestationEvidenceRequest", "google.protobuf.Empty"),
    ("/oak.containers.Launcher/NotifyAppReady", False, False,
     "google.protobuf.Empty", "google.protobuf.Empty"),
    ("/oak.containers.Orchestrator/GetApplicationConfig", False, False,
     "google.protobuf.Empty", "oak.containers.GetApplicationConfigResponse"),
    ("/oak.containers.Orchestrator/NotifyAppReady", False, False,
     "google.protobuf.Empty", "google.protobuf.Empty"),
    ("/oak.containers.Orchestrator/GetEndorsedEvidence", False, False,
     "google.protobuf.Empty", "oak.session.v1.EndorsedEvidence"),
    ("/oak.containers.v1.OrchestratorCrypto/DeriveSessionKeys", False, False,
     "oak.containers.v1.DeriveSessionKeysRequest", "oak.containers.v1.DeriveSessionKeysResponse"),
    ("/oak.containers.v1.OrchestratorCrypto/Sign", False, False,
     "oak.containers.v1.SignRequest", "oak.containers.v1.SignResponse"),
    ("/oak.containers.v1.OrchestratorCrypto/BindSession", False, False,
     "oak.containers.v1.BindSessionRequest", "oak.containers.v1.BindSessionResponse"),
    ("/oak.key_provisioning.v1.KeyProvisioning/GetGroupKeys", False, False,
     "oak.key_provisioning.v1.GetGroupKeysRequest", "oak.key_provisioning.v1.GetGroupKeysResponse"),
]  # fmt: skip


@pytest.mark.parametrize("shape", METHOD_SHAPES, ids=lambda s: s[0])
def test_method_shapes(shape: tuple[str, bool, bool, str, str]) -> None:
    path, client_streaming, server_streaming, request, response = shape
    service_name, _, method_name = path[1:].partition("/")
    service = descriptor_pool.Default().FindServiceByName(service_name)
    method = service.methods_by_name[method_name]
    assert (method.client_streaming, method.server_streaming) == (
        client_streaming,
        server_streaming,
    )
    assert method.input_type.full_name == request
    assert method.output_type.full_name == response


class RecordingChannel:
    """Stands in for a grpc.Channel: records what the generated stubs register."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[str, Callable[..., Any], Callable[..., Any]]] = {}

    def _record(self, kind: str) -> Callable[..., object]:
        def register(
            path: str,
            request_serializer: Callable[..., Any],
            response_deserializer: Callable[..., Any],
            **_: object,
        ) -> object:
            self.calls[path] = (kind, request_serializer, response_deserializer)
            return object()

        return register

    def __getattr__(self, kind: str) -> Callable[..., object]:
        if kind in {"unary_unary", "unary_stream", "stream_unary", "stream_stream"}:
            return self._record(kind)
        raise AttributeError(kind)


def test_generated_stubs_call_the_spec_paths() -> None:
    channel = RecordingChannel()
    for make_stub in (
        launcher_pb2_grpc.LauncherServiceStub,
        tvs_pb2_grpc.TeeVerificationServiceStub,
        orchestrator_pb2_grpc.HatsOrchestratorStub,
        interfaces_pb2_grpc.LauncherStub,
        interfaces_pb2_grpc.OrchestratorStub,
        orchestrator_crypto_pb2_grpc.OrchestratorCryptoStub,
        key_provisioning_pb2_grpc.KeyProvisioningStub,
    ):
        make_stub(cast(grpc.Channel, channel))
    assert set(channel.calls) == spec_paths()
    kinds = {
        (False, False): "unary_unary",
        (False, True): "unary_stream",
        (True, True): "stream_stream",
    }
    for path, client_streaming, server_streaming, _, response in METHOD_SHAPES:
        kind, _, deserialize = channel.calls[path]
        assert kind == kinds[(client_streaming, server_streaming)]
        assert getattr(deserialize, "__self__").DESCRIPTOR.full_name == response  # noqa: B009


def test_servicers_register_the_spec_paths() -> None:
    handlers: dict[str, set[str]] = {}

    class RecordingServer:
        def add_generic_rpc_handlers(self, generic: object) -> None:
            pass

        def add_registered_method_handlers(self, service: str, methods: dict[str, Any]) -> None:
            handlers[service] = set(methods)

    for add, servicer in (
        (launcher_pb2_grpc.add_LauncherServiceServicer_to_server,
         launcher_pb2_grpc.LauncherServiceServicer),
        (tvs_pb2_grpc.add_TeeVerificationServiceServicer_to_server,
         tvs_pb2_grpc.TeeVerificationServiceServicer),
        (orchestrator_pb2_grpc.add_HatsOrchestratorServicer_to_server,
         orchestrator_pb2_grpc.HatsOrchestratorServicer),
        (interfaces_pb2_grpc.add_LauncherServicer_to_server,
         interfaces_pb2_grpc.LauncherServicer),
        (interfaces_pb2_grpc.add_OrchestratorServicer_to_server,
         interfaces_pb2_grpc.OrchestratorServicer),
        (orchestrator_crypto_pb2_grpc.add_OrchestratorCryptoServicer_to_server,
         orchestrator_crypto_pb2_grpc.OrchestratorCryptoServicer),
        (key_provisioning_pb2_grpc.add_KeyProvisioningServicer_to_server,
         key_provisioning_pb2_grpc.KeyProvisioningServicer),
    ):  # fmt: skip
        add(servicer(), cast(grpc.Server, RecordingServer()))  # type: ignore[arg-type]
    registered = {f"/{s}/{m}" for s, methods in handlers.items() for m in methods}
    assert registered == spec_paths()


class Keys(orchestrator_pb2_grpc.HatsOrchestratorServicer):
    def GetKeys(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> orchestrator_pb2.GetKeysResponse:
        return orchestrator_pb2.GetKeysResponse(
            keys=[orchestrator_pb2.Key(key_id="64", public_key="pk", private_key=b"secret")]
        )


class EchoTvs(tvs_pb2_grpc.TeeVerificationServiceServicer):
    def VerifyReport(
        self, request_iterator: Iterator[tvs_pb2.OpaqueMessage], context: grpc.ServicerContext
    ) -> Iterator[tvs_pb2.OpaqueMessage]:
        for request in request_iterator:
            yield tvs_pb2.OpaqueMessage(binary_message=request.binary_message[::-1])


def test_generated_services_over_a_unix_socket(tmp_path: Path) -> None:
    """A real grpcio server and client, on a UDS like the orchestrator's IPC socket."""
    address = f"unix:{tmp_path / 's'}"
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    orchestrator_pb2_grpc.add_HatsOrchestratorServicer_to_server(Keys(), server)
    tvs_pb2_grpc.add_TeeVerificationServiceServicer_to_server(EchoTvs(), server)
    assert server.add_insecure_port(address) == 1
    server.start()
    try:
        with grpc.insecure_channel(address) as channel:
            keys = orchestrator_pb2_grpc.HatsOrchestratorStub(channel).GetKeys(
                empty_pb2.Empty(), timeout=10
            )
            assert [(k.key_id, k.private_key) for k in keys.keys] == [("64", b"secret")]
            replies = tvs_pb2_grpc.TeeVerificationServiceStub(channel).VerifyReport(
                iter([tvs_pb2.OpaqueMessage(binary_message=b"abc")]), timeout=10
            )
            assert [r.binary_message for r in replies] == [b"cba"]
            crypto = orchestrator_crypto_pb2_grpc.OrchestratorCryptoStub(channel)
            with pytest.raises(grpc.RpcError) as failure:
                crypto.Sign(orchestrator_crypto_pb2.SignRequest(), timeout=10)
            assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)


#: Code using the generated stubs; ``# E: code`` marks the errors mypy --strict must report.
TYPED_USAGE = """
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from hats.pb.pcit.client import launcher_pb2, launcher_pb2_grpc
from hats.pb.pcit.server_common import orchestrator_pb2, orchestrator_pb2_grpc
from hats.pb.pcit.tvs import tvs_pb2, tvs_pb2_grpc


def sync_client(channel: grpc.Channel) -> bytes:
    stub = launcher_pb2_grpc.LauncherServiceStub(channel)
    return stub.FetchOrchestratorMetadata(empty_pb2.Empty()).tvs_authentication_key


async def async_client(channel: grpc.aio.Channel) -> list[str]:
    response = await orchestrator_pb2_grpc.HatsOrchestratorStub(channel).GetKeys(empty_pb2.Empty())
    return [key.key_id for key in response.keys]


async def async_stream(channel: grpc.aio.Channel) -> bytes:
    async def requests() -> AsyncIterator[launcher_pb2.ForwardingTvsMessage]:
        yield launcher_pb2.ForwardingTvsMessage(tvs_id=1)

    out = b""
    async for reply in launcher_pb2_grpc.LauncherServiceStub(channel).VerifyReport(requests()):
        out += reply.binary_message
    return out


class Keys(orchestrator_pb2_grpc.HatsOrchestratorServicer):
    def GetKeys(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> orchestrator_pb2.GetKeysResponse:
        return orchestrator_pb2.GetKeysResponse()


class AsyncKeys(orchestrator_pb2_grpc.HatsOrchestratorServicer):
    async def GetKeys(
        self,
        request: empty_pb2.Empty,
        context: grpc.aio.ServicerContext[empty_pb2.Empty, orchestrator_pb2.GetKeysResponse],
    ) -> orchestrator_pb2.GetKeysResponse:
        return orchestrator_pb2.GetKeysResponse()


class AsyncTvs(tvs_pb2_grpc.TeeVerificationServiceServicer):
    async def VerifyReport(
        self,
        request_iterator: AsyncIterator[tvs_pb2.OpaqueMessage],
        context: grpc.aio.ServicerContext[tvs_pb2.OpaqueMessage, tvs_pb2.OpaqueMessage],
    ) -> AsyncIterator[tvs_pb2.OpaqueMessage]:
        async for request in request_iterator:
            yield request


def serve(server: grpc.Server, aio_server: grpc.aio.Server) -> None:
    orchestrator_pb2_grpc.add_HatsOrchestratorServicer_to_server(Keys(), server)
    orchestrator_pb2_grpc.add_HatsOrchestratorServicer_to_server(AsyncKeys(), aio_server)
    tvs_pb2_grpc.add_TeeVerificationServiceServicer_to_server(AsyncTvs(), aio_server)


def wrong(channel: grpc.Channel, it: Iterator[tvs_pb2.OpaqueMessage]) -> int:
    stub = launcher_pb2_grpc.LauncherServiceStub(channel)
    stub.FetchOrchestratorMetadata(launcher_pb2.ForwardingTvsMessage())  # E: arg-type
    tvs_pb2_grpc.TeeVerificationServiceStub(channel).VerifyReport(it).tvs_id  # E: attr-defined
    return stub.FetchOrchestratorMetadata(empty_pb2.Empty()).tee_certificate  # E: return-value
"""


def test_grpc_stubs_type_check_strictly(tmp_path: Path) -> None:
    """The generated ``_pb2_grpc.pyi`` stubs make sync and aio use checkable by mypy --strict."""
    usage = tmp_path / "usage.py"
    usage.write_text(TYPED_USAGE, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(usage)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    reported = set(re.findall(r"usage\.py:(\d+): error: .*\[([\w-]+)\]$", proc.stdout, re.M))
    expected = {
        (str(number), line.rpartition("# E: ")[2])
        for number, line in enumerate(TYPED_USAGE.splitlines(), start=1)
        if "# E: " in line
    }
    assert reported == expected, proc.stdout + proc.stderr


# --- field numbers and types -------------------------------------------------------------

#: The messages as the spec quotes them (§3.2–§3.9, §7.2); each must match exactly:
#: same fields, numbers, types and labels, nothing extra.
SPEC_MESSAGES = """
pcit.client.FetchOrchestratorMetadataResponse { bytes tee_certificate = 1;
  bytes tvs_authentication_key = 2;
  pcit.client.PrivateKeyWrappingKeys private_key_wrapping_keys = 3; }
pcit.client.PrivateKeyWrappingKeys { bytes primary = 1; repeated bytes active = 2; }
pcit.client.ForwardingTvsMessage { int64 tvs_id = 1; pcit.tvs.OpaqueMessage opaque_message = 2; }
pcit.tvs.OpaqueMessage { bytes binary_message = 1; }
pcit.tvs.AttestReportRequest { pcit.tvs.InitSessionRequest init_session_request = 1;
  pcit.tvs.VerifyReportRequestEncrypted verify_report_request = 2; }
pcit.tvs.InitSessionRequest { bytes client_message = 1; bytes tvs_public_key = 2;
  bytes client_public_key = 3; }
pcit.tvs.VerifyReportRequestEncrypted { bytes client_message = 1; }
pcit.tvs.VerifyReportRequest { oak.attestation.v1.Evidence evidence = 1; bytes tee_certificate = 2;
  bytes signature = 3; }
pcit.tvs.AttestReportResponse { pcit.tvs.InitSessionResponse init_session_response = 1;
  pcit.tvs.VerifyReportResponseEncrypted verify_report_response = 2; }
pcit.tvs.InitSessionResponse { bytes response_for_client = 1; }
pcit.tvs.VerifyReportResponseEncrypted { bytes response_for_client = 1; }
pcit.tvs.VerifyReportResponse { repeated pcit.tvs.Secret secrets = 1; }
pcit.tvs.Secret { string key_id = 1; string public_key = 2; bytes private_key = 3; }
pcit.server_common.GetKeysResponse { repeated pcit.server_common.Key keys = 1; }
pcit.server_common.Key { string key_id = 1; string public_key = 2; bytes private_key = 3; }
oak.containers.GetImageResponse { bytes image_chunk = 1; }
oak.containers.GetApplicationConfigResponse { bytes config = 1; }
oak.containers.SendAttestationEvidenceRequest { oak.attestation.v1.Evidence dice_evidence = 2; }
oak.session.v1.EndorsedEvidence { oak.attestation.v1.Evidence evidence = 1;
  oak.attestation.v1.Endorsements endorsements = 2; }
oak.containers.v1.DeriveSessionKeysRequest { oak.containers.v1.KeyOrigin key_origin = 1;
  bytes serialized_encapsulated_public_key = 2; }
oak.containers.v1.DeriveSessionKeysResponse { oak.crypto.v1.SessionKeys session_keys = 1; }
oak.containers.v1.SignRequest { oak.containers.v1.KeyOrigin key_origin = 1; bytes message = 2; }
oak.containers.v1.SignResponse { oak.crypto.v1.Signature signature = 1; }
oak.containers.v1.BindSessionRequest { bytes transcript = 1; bytes additional_data = 2; }
oak.containers.v1.BindSessionResponse { oak.crypto.v1.Signature signature = 1; }
oak.crypto.v1.SessionKeys { bytes request_key = 1; bytes response_key = 4; }
oak.crypto.v1.Signature { bytes signature = 1; }
oak.key_provisioning.v1.GetGroupKeysRequest { oak.attestation.v1.Evidence evidence = 1;
  oak.attestation.v1.Endorsements endorsements = 2; }
oak.key_provisioning.v1.GetGroupKeysResponse { oak.key_provisioning.v1.GroupKeys group_keys = 1; }
oak.key_provisioning.v1.GroupKeys {
  oak.crypto.v1.EncryptedRequest encrypted_encryption_private_key = 1; }
oak.attestation.v1.RootLayerEvidence { oak.attestation.v1.TeePlatform platform = 1;
  bytes remote_attestation_report = 2; bytes eca_public_key = 3; }
oak.attestation.v1.LayerEvidence { bytes eca_certificate = 1; }
oak.attestation.v1.ApplicationKeys { bytes encryption_public_key_certificate = 1;
  bytes signing_public_key_certificate = 2; bytes group_encryption_public_key_certificate = 3;
  bytes group_signing_public_key_certificate = 4; }
oak.attestation.v1.EventLog { repeated bytes encoded_events = 2; }
oak.attestation.v1.Evidence { oak.attestation.v1.RootLayerEvidence root_layer = 1;
  repeated oak.attestation.v1.LayerEvidence layers = 2;
  oak.attestation.v1.ApplicationKeys application_keys = 3;
  oak.attestation.v1.EventLog event_log = 4; }
oak.attestation.v1.Event { string tag = 1; google.protobuf.Any event = 2; }
oak.attestation.v1.ContainerLayerData { oak.RawDigest bundle = 1; oak.RawDigest config = 2;
  bytes hybrid_encryption_public_key = 3; bytes signing_public_key = 4;
  bytes session_binding_public_key = 5; }
oak.attestation.v1.SystemLayerData { oak.RawDigest system_image = 1; }
oak.attestation.v1.CertificateAuthority { bytes eca_private_key = 1; }
oak.attestation.v1.DiceData { oak.attestation.v1.Evidence evidence = 1;
  oak.attestation.v1.CertificateAuthority certificate_authority = 2; }
oak.attestation.v1.TcbVersion { uint32 boot_loader = 1; uint32 tee = 2; uint32 snp = 3;
  uint32 microcode = 4; uint32 fmc = 5; }
oak.attestation.v1.Stage0Measurements { bytes setup_data_digest = 1; bytes kernel_measurement = 2;
  bytes ram_disk_digest = 3; bytes memory_map_digest = 4; bytes acpi_digest = 5;
  string kernel_cmdline = 6; }
oak.attestation.v1.InsecureReferenceValues { }
oak.RawDigest { bytes psha2 = 16; bytes sha1 = 17; bytes sha2_256 = 18; bytes sha2_512 = 19;
  bytes sha3_512 = 20; bytes sha3_384 = 21; bytes sha3_256 = 22; bytes sha3_224 = 23;
  bytes sha2_384 = 32; }
oak.Variant { bytes id = 1; bytes value = 2; }
oak.attestation.v1.Endorsements {
  oak.attestation.v1.OakRestrictedKernelEndorsements oak_restricted_kernel = 1;
  oak.attestation.v1.OakContainersEndorsements oak_containers = 2;
  oak.attestation.v1.CBEndorsements cb = 3; oak.Variant platform = 8; oak.Variant initial = 9;
  repeated oak.Variant events = 10; }
oak.attestation.v1.OakContainersEndorsements {
  oak.attestation.v1.RootLayerEndorsements root_layer = 1;
  oak.attestation.v1.KernelLayerEndorsements kernel_layer = 2;
  oak.attestation.v1.SystemLayerEndorsements system_layer = 3;
  oak.attestation.v1.ContainerLayerEndorsements container_layer = 4; }
oak.attestation.v1.RootLayerEndorsements { bytes tee_certificate = 1;
  oak.attestation.v1.TransparentReleaseEndorsement stage0 = 2; }
pcit.tvs.AppraisalPolicies { repeated pcit.tvs.AppraisalPolicy policies = 1;
  map<string, bytes> stage0_binary_sha256_to_blob = 2; }
pcit.tvs.AppraisalPolicy { string description = 1; pcit.tvs.Measurement measurement = 2;
  repeated pcit.tvs.Signature signature = 3; }
pcit.tvs.Signature { string signature = 1; string signer = 2; }
pcit.tvs.Measurement { pcit.tvs.Stage0Measurement stage0_measurement = 1;
  string kernel_image_sha256 = 2; string kernel_setup_data_sha256 = 3;
  string init_ram_fs_sha256 = 4; string memory_map_sha256 = 5; string acpi_table_sha256 = 6;
  string kernel_cmd_line_regex = 7; string system_image_sha256 = 8;
  repeated string container_binary_sha256 = 9; }
pcit.tvs.Stage0Measurement { pcit.tvs.AmdSev amd_sev = 1;
  oak.attestation.v1.InsecureReferenceValues insecure = 2;
  pcit.tvs.AmdSevDynamic amd_sev_dynamic = 3; }
pcit.tvs.AmdSev { string sha384 = 1; oak.attestation.v1.TcbVersion min_tcb_version = 2; }
pcit.tvs.AmdSevDynamic { repeated string stage0_ovmf_binary_hash = 1;
  oak.attestation.v1.TcbVersion min_tcb_version = 2; repeated pcit.tvs.CpuInfo cpu_info = 3;
  repeated uint32 vcpu_count = 4; }
pcit.tvs.CpuInfo { uint32 family = 1; uint32 model = 2; uint32 stepping = 3; }
pcit.client.NetworkConfig { pcit.client.InboundOnly inbound_only = 1;
  pcit.client.InboundAndOutbound inbound_and_outbound = 2;
  pcit.client.VirtualBridge virtual_bridge = 4; }
"""

SCALARS = {
    descriptor.FieldDescriptor.TYPE_BYTES: "bytes",
    descriptor.FieldDescriptor.TYPE_STRING: "string",
    descriptor.FieldDescriptor.TYPE_UINT32: "uint32",
    descriptor.FieldDescriptor.TYPE_INT64: "int64",
}


def type_of(field: descriptor.FieldDescriptor) -> str:
    """A field's declaration type as the spec writes it."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        entry = field.message_type.fields_by_name
        return f"map<{type_of(entry['key'])}, {type_of(entry['value'])}>"
    if field.message_type is not None:
        name = field.message_type.full_name
    elif field.enum_type is not None:
        name = field.enum_type.full_name
    else:
        name = SCALARS[field.type]
    return f"repeated {name}" if field.is_repeated else name


def spec_messages() -> dict[str, set[tuple[str, str, int]]]:
    parsed: dict[str, set[tuple[str, str, int]]] = {}
    for name, body in re.findall(r"([\w.]+) \{(.*?)\}", SPEC_MESSAGES, flags=re.S):
        fields = set()
        for decl in filter(None, (d.strip() for d in body.split(";"))):
            match = re.fullmatch(r"(.+) (\w+) = (\d+)", " ".join(decl.split()))
            assert match, decl
            fields.add((match[1], match[2], int(match[3])))
        parsed[name] = fields
    return parsed


@pytest.mark.parametrize("name", sorted(spec_messages()))
def test_message_fields_match_the_spec(name: str) -> None:
    message_descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    actual = {(type_of(f), f.name, f.number) for f in message_descriptor.fields}
    assert actual == spec_messages()[name]


def test_oneofs_match_the_spec() -> None:
    pool = descriptor_pool.Default()

    def oneofs(name: str) -> dict[str, list[str]]:
        message_descriptor = pool.FindMessageTypeByName(name)
        return {
            o.name: [f.name for f in o.fields]
            for o in message_descriptor.oneofs
            if not o.name.startswith("_")  # proto3 `optional` synthetic oneofs
        }

    assert oneofs("pcit.tvs.AttestReportRequest") == {
        "request": ["init_session_request", "verify_report_request"]
    }
    assert oneofs("pcit.tvs.AttestReportResponse") == {
        "response": ["init_session_response", "verify_report_response"]
    }
    assert oneofs("pcit.tvs.Stage0Measurement") == {
        "type": ["amd_sev", "insecure", "amd_sev_dynamic"]
    }
    assert oneofs("oak.attestation.v1.Endorsements") == {
        "type": ["oak_restricted_kernel", "oak_containers", "cb"]
    }
    assert oneofs("pcit.client.NetworkConfig") == {
        "network_mode": ["inbound_only", "inbound_and_outbound", "virtual_bridge"]
    }


def test_enums_match_the_spec() -> None:
    def values(enum: Any) -> dict[str, int]:
        return {v.name: v.number for v in enum.DESCRIPTOR.values}

    assert values(evidence_pb2.TeePlatform) == {
        "TEE_PLATFORM_UNSPECIFIED": 0,
        "AMD_SEV_SNP": 1,
        "INTEL_TDX": 2,
        "TEE_PLATFORM_NONE": 3,
    }
    assert values(orchestrator_crypto_pb2.KeyOrigin) == {
        "KEY_ORIGIN_UNSPECIFIED": 0,
        "INSTANCE": 1,
        "GROUP": 2,
    }
    assert values(launcher_config_pb2.CvmType) == {"CVMTYPE_DEFAULT": 0, "CVMTYPE_SEVSNP": 1}


def test_container_event_any_type_url() -> None:
    data = eventlog_pb2.ContainerLayerData(
        bundle=digest_pb2.RawDigest(sha2_256=hashlib.sha256(b"bundle").digest()),
        config=digest_pb2.RawDigest(sha2_256=hashlib.sha256(b"").digest()),
    )
    packed = any_pb2.Any()
    packed.Pack(data)
    assert packed.type_url == "type.googleapis.com/oak.attestation.v1.ContainerLayerData"
    # RawDigest.sha2_256 is field 18: tag bytes 0x92 0x01, length 32.
    assert data.bundle.SerializeToString()[:3] == b"\x92\x01\x20"
    event = eventlog_pb2.Event(tag="ORCHESTRATOR", event=packed)
    assert eventlog_pb2.Event.FromString(event.SerializeToString()) == event
    tcb = tcb_version_pb2.TcbVersion(boot_loader=10, snp=25, microcode=84)
    assert tcb.SerializeToString() == b"\x08\x0a\x18\x19\x20\x54"


def test_tvs_message_round_trip() -> None:
    evidence = evidence_pb2.Evidence.FromString(EVIDENCE_FILES[0].read_bytes())
    request = tvs_messages_pb2.VerifyReportRequest(evidence=evidence, signature=b"\x00" * 64)
    outer = tvs_messages_pb2.AttestReportRequest(
        verify_report_request=tvs_messages_pb2.VerifyReportRequestEncrypted(
            client_message=request.SerializeToString()
        )
    )
    forwarded = launcher_pb2.ForwardingTvsMessage(
        tvs_id=3, opaque_message=tvs_pb2.OpaqueMessage(binary_message=outer.SerializeToString())
    )
    back = launcher_pb2.ForwardingTvsMessage.FromString(forwarded.SerializeToString())
    inner = tvs_messages_pb2.AttestReportRequest.FromString(back.opaque_message.binary_message)
    assert inner.WhichOneof("request") == "verify_report_request"
    decoded = tvs_messages_pb2.VerifyReportRequest.FromString(
        inner.verify_report_request.client_message
    )
    assert decoded.evidence.SerializeToString() == EVIDENCE_FILES[0].read_bytes()


# --- OTLP and the toolchain --------------------------------------------------------------


def test_otlp_logs_service_comes_from_opentelemetry_proto() -> None:
    import google.protobuf
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2

    assert google.protobuf.__version__.split(".")[0] == "6"
    service = logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"]
    assert service.full_name == "opentelemetry.proto.collector.logs.v1.LogsService"
    assert [m.name for m in service.methods] == ["Export"]
    assert hasattr(logs_service_pb2_grpc, "LogsServiceStub")
    record = logs_pb2.LogRecord(
        body=common_pb2.AnyValue(string_value="hello"),
        attributes=[
            common_pb2.KeyValue(
                key="_SYSTEMD_UNIT", value=common_pb2.AnyValue(string_value="x.service")
            )
        ],
    )
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=[record])])]
    )
    again = logs_service_pb2.ExportLogsServiceRequest.FromString(request.SerializeToString())
    assert again.resource_logs[0].scope_logs[0].log_records[0].body.string_value == "hello"


def test_generated_code_needs_the_pinned_runtime() -> None:
    """The runtime guards in the generated code match the pyproject floors."""
    pb2 = Path(evidence_pb2.__file__).read_text(encoding="utf-8")
    assert "Protobuf Python Version: 6.33.5" in pb2
    grpc_module = Path(tvs_pb2_grpc.__file__).read_text(encoding="utf-8")
    assert "GRPC_GENERATED_VERSION = '1.81.1'" in grpc_module
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"protobuf>=6.33.5,<7"' in pyproject
    assert '"grpcio>=1.81.1,<2"' in pyproject
    assert '"grpcio-tools==1.81.1"' in pyproject


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_protos", ROOT / "scripts" / "generate_protos.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generate_check_passes_on_the_checked_in_tree() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "src/hats/pb is up to date with proto/"


def test_generate_check_names_the_first_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    generator = load_generator()
    copy = tmp_path / "src" / "hats" / "pb"
    shutil.copytree(generator.OUT_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    monkeypatch.setattr(generator, "OUT_DIR", copy)
    assert generator.main(["--check"]) == 0

    stale = copy / "pcit" / "tvs" / "tvs_pb2.py"
    stale.write_text(stale.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    extra = copy / "pcit" / "zz_extra_pb2.py"
    extra.write_text("", encoding="utf-8")
    capsys.readouterr()
    assert generator.main(["--check"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "src/hats/pb/pcit/tvs/tvs_pb2.py differs from a fresh generation; "
        "run .venv/bin/python scripts/generate_protos.py"
    ]

    # Regenerating into the copy makes it clean again and drops the extra file.
    assert generator.main([]) == 0
    assert not extra.exists()
    assert generator.main(["--check"]) == 0
