from hats.pb.oak.attestation.v1 import reference_value_pb2 as _reference_value_pb2
from hats.pb.oak.attestation.v1 import tcb_version_pb2 as _tcb_version_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppraisalPolicies(_message.Message):
    __slots__ = ("policies", "stage0_binary_sha256_to_blob")
    class Stage0BinarySha256ToBlobEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    STAGE0_BINARY_SHA256_TO_BLOB_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[AppraisalPolicy]
    stage0_binary_sha256_to_blob: _containers.ScalarMap[str, bytes]
    def __init__(self, policies: _Optional[_Iterable[_Union[AppraisalPolicy, _Mapping]]] = ..., stage0_binary_sha256_to_blob: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class AppraisalPolicy(_message.Message):
    __slots__ = ("description", "measurement", "signature")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    description: str
    measurement: Measurement
    signature: _containers.RepeatedCompositeFieldContainer[Signature]
    def __init__(self, description: _Optional[str] = ..., measurement: _Optional[_Union[Measurement, _Mapping]] = ..., signature: _Optional[_Iterable[_Union[Signature, _Mapping]]] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("signature", "signer")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    signature: str
    signer: str
    def __init__(self, signature: _Optional[str] = ..., signer: _Optional[str] = ...) -> None: ...

class Measurement(_message.Message):
    __slots__ = ("stage0_measurement", "kernel_image_sha256", "kernel_setup_data_sha256", "init_ram_fs_sha256", "memory_map_sha256", "acpi_table_sha256", "kernel_cmd_line_regex", "system_image_sha256", "container_binary_sha256")
    STAGE0_MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    KERNEL_IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SETUP_DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    INIT_RAM_FS_SHA256_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MAP_SHA256_FIELD_NUMBER: _ClassVar[int]
    ACPI_TABLE_SHA256_FIELD_NUMBER: _ClassVar[int]
    KERNEL_CMD_LINE_REGEX_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_BINARY_SHA256_FIELD_NUMBER: _ClassVar[int]
    stage0_measurement: Stage0Measurement
    kernel_image_sha256: str
    kernel_setup_data_sha256: str
    init_ram_fs_sha256: str
    memory_map_sha256: str
    acpi_table_sha256: str
    kernel_cmd_line_regex: str
    system_image_sha256: str
    container_binary_sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stage0_measurement: _Optional[_Union[Stage0Measurement, _Mapping]] = ..., kernel_image_sha256: _Optional[str] = ..., kernel_setup_data_sha256: _Optional[str] = ..., init_ram_fs_sha256: _Optional[str] = ..., memory_map_sha256: _Optional[str] = ..., acpi_table_sha256: _Optional[str] = ..., kernel_cmd_line_regex: _Optional[str] = ..., system_image_sha256: _Optional[str] = ..., container_binary_sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class Stage0Measurement(_message.Message):
    __slots__ = ("amd_sev", "insecure", "amd_sev_dynamic")
    AMD_SEV_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    AMD_SEV_DYNAMIC_FIELD_NUMBER: _ClassVar[int]
    amd_sev: AmdSev
    insecure: _reference_value_pb2.InsecureReferenceValues
    amd_sev_dynamic: AmdSevDynamic
    def __init__(self, amd_sev: _Optional[_Union[AmdSev, _Mapping]] = ..., insecure: _Optional[_Union[_reference_value_pb2.InsecureReferenceValues, _Mapping]] = ..., amd_sev_dynamic: _Optional[_Union[AmdSevDynamic, _Mapping]] = ...) -> None: ...

class AmdSev(_message.Message):
    __slots__ = ("sha384", "min_tcb_version")
    SHA384_FIELD_NUMBER: _ClassVar[int]
    MIN_TCB_VERSION_FIELD_NUMBER: _ClassVar[int]
    sha384: str
    min_tcb_version: _tcb_version_pb2.TcbVersion
    def __init__(self, sha384: _Optional[str] = ..., min_tcb_version: _Optional[_Union[_tcb_version_pb2.TcbVersion, _Mapping]] = ...) -> None: ...

class AmdSevDynamic(_message.Message):
    __slots__ = ("stage0_ovmf_binary_hash", "min_tcb_version", "cpu_info", "vcpu_count")
    STAGE0_OVMF_BINARY_HASH_FIELD_NUMBER: _ClassVar[int]
    MIN_TCB_VERSION_FIELD_NUMBER: _ClassVar[int]
    CPU_INFO_FIELD_NUMBER: _ClassVar[int]
    VCPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    stage0_ovmf_binary_hash: _containers.RepeatedScalarFieldContainer[str]
    min_tcb_version: _tcb_version_pb2.TcbVersion
    cpu_info: _containers.RepeatedCompositeFieldContainer[CpuInfo]
    vcpu_count: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, stage0_ovmf_binary_hash: _Optional[_Iterable[str]] = ..., min_tcb_version: _Optional[_Union[_tcb_version_pb2.TcbVersion, _Mapping]] = ..., cpu_info: _Optional[_Iterable[_Union[CpuInfo, _Mapping]]] = ..., vcpu_count: _Optional[_Iterable[int]] = ...) -> None: ...

class CpuInfo(_message.Message):
    __slots__ = ("family", "model", "stepping")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEPPING_FIELD_NUMBER: _ClassVar[int]
    family: int
    model: int
    stepping: int
    def __init__(self, family: _Optional[int] = ..., model: _Optional[int] = ..., stepping: _Optional[int] = ...) -> None: ...
