from google.protobuf import any_pb2 as _any_pb2
from hats.pb.oak import digest_pb2 as _digest_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventLog(_message.Message):
    __slots__ = ("encoded_events",)
    ENCODED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    encoded_events: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, encoded_events: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("tag", "event")
    TAG_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    tag: str
    event: _any_pb2.Any
    def __init__(self, tag: _Optional[str] = ..., event: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class Stage0Measurements(_message.Message):
    __slots__ = ("setup_data_digest", "kernel_measurement", "ram_disk_digest", "memory_map_digest", "acpi_digest", "kernel_cmdline")
    SETUP_DATA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    KERNEL_MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    RAM_DISK_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MAP_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ACPI_DIGEST_FIELD_NUMBER: _ClassVar[int]
    KERNEL_CMDLINE_FIELD_NUMBER: _ClassVar[int]
    setup_data_digest: bytes
    kernel_measurement: bytes
    ram_disk_digest: bytes
    memory_map_digest: bytes
    acpi_digest: bytes
    kernel_cmdline: str
    def __init__(self, setup_data_digest: _Optional[bytes] = ..., kernel_measurement: _Optional[bytes] = ..., ram_disk_digest: _Optional[bytes] = ..., memory_map_digest: _Optional[bytes] = ..., acpi_digest: _Optional[bytes] = ..., kernel_cmdline: _Optional[str] = ...) -> None: ...

class SystemLayerData(_message.Message):
    __slots__ = ("system_image",)
    SYSTEM_IMAGE_FIELD_NUMBER: _ClassVar[int]
    system_image: _digest_pb2.RawDigest
    def __init__(self, system_image: _Optional[_Union[_digest_pb2.RawDigest, _Mapping]] = ...) -> None: ...

class ContainerLayerData(_message.Message):
    __slots__ = ("bundle", "config", "hybrid_encryption_public_key", "signing_public_key", "session_binding_public_key")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    HYBRID_ENCRYPTION_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNING_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SESSION_BINDING_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    bundle: _digest_pb2.RawDigest
    config: _digest_pb2.RawDigest
    hybrid_encryption_public_key: bytes
    signing_public_key: bytes
    session_binding_public_key: bytes
    def __init__(self, bundle: _Optional[_Union[_digest_pb2.RawDigest, _Mapping]] = ..., config: _Optional[_Union[_digest_pb2.RawDigest, _Mapping]] = ..., hybrid_encryption_public_key: _Optional[bytes] = ..., signing_public_key: _Optional[bytes] = ..., session_binding_public_key: _Optional[bytes] = ...) -> None: ...
