from hats.pb.oak.attestation.v1 import eventlog_pb2 as _eventlog_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TeePlatform(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEE_PLATFORM_UNSPECIFIED: _ClassVar[TeePlatform]
    AMD_SEV_SNP: _ClassVar[TeePlatform]
    INTEL_TDX: _ClassVar[TeePlatform]
    TEE_PLATFORM_NONE: _ClassVar[TeePlatform]
TEE_PLATFORM_UNSPECIFIED: TeePlatform
AMD_SEV_SNP: TeePlatform
INTEL_TDX: TeePlatform
TEE_PLATFORM_NONE: TeePlatform

class RootLayerEvidence(_message.Message):
    __slots__ = ("platform", "remote_attestation_report", "eca_public_key")
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ATTESTATION_REPORT_FIELD_NUMBER: _ClassVar[int]
    ECA_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    platform: TeePlatform
    remote_attestation_report: bytes
    eca_public_key: bytes
    def __init__(self, platform: _Optional[_Union[TeePlatform, str]] = ..., remote_attestation_report: _Optional[bytes] = ..., eca_public_key: _Optional[bytes] = ...) -> None: ...

class LayerEvidence(_message.Message):
    __slots__ = ("eca_certificate",)
    ECA_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    eca_certificate: bytes
    def __init__(self, eca_certificate: _Optional[bytes] = ...) -> None: ...

class ApplicationKeys(_message.Message):
    __slots__ = ("encryption_public_key_certificate", "signing_public_key_certificate", "group_encryption_public_key_certificate", "group_signing_public_key_certificate")
    ENCRYPTION_PUBLIC_KEY_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SIGNING_PUBLIC_KEY_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    GROUP_ENCRYPTION_PUBLIC_KEY_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIGNING_PUBLIC_KEY_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    encryption_public_key_certificate: bytes
    signing_public_key_certificate: bytes
    group_encryption_public_key_certificate: bytes
    group_signing_public_key_certificate: bytes
    def __init__(self, encryption_public_key_certificate: _Optional[bytes] = ..., signing_public_key_certificate: _Optional[bytes] = ..., group_encryption_public_key_certificate: _Optional[bytes] = ..., group_signing_public_key_certificate: _Optional[bytes] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("root_layer", "layers", "application_keys", "event_log")
    ROOT_LAYER_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_KEYS_FIELD_NUMBER: _ClassVar[int]
    EVENT_LOG_FIELD_NUMBER: _ClassVar[int]
    root_layer: RootLayerEvidence
    layers: _containers.RepeatedCompositeFieldContainer[LayerEvidence]
    application_keys: ApplicationKeys
    event_log: _eventlog_pb2.EventLog
    def __init__(self, root_layer: _Optional[_Union[RootLayerEvidence, _Mapping]] = ..., layers: _Optional[_Iterable[_Union[LayerEvidence, _Mapping]]] = ..., application_keys: _Optional[_Union[ApplicationKeys, _Mapping]] = ..., event_log: _Optional[_Union[_eventlog_pb2.EventLog, _Mapping]] = ...) -> None: ...
