from hats.pb.oak import variant_pb2 as _variant_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Endorsements(_message.Message):
    __slots__ = ("oak_restricted_kernel", "oak_containers", "cb", "platform", "initial", "events")
    OAK_RESTRICTED_KERNEL_FIELD_NUMBER: _ClassVar[int]
    OAK_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    CB_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    oak_restricted_kernel: OakRestrictedKernelEndorsements
    oak_containers: OakContainersEndorsements
    cb: CBEndorsements
    platform: _variant_pb2.Variant
    initial: _variant_pb2.Variant
    events: _containers.RepeatedCompositeFieldContainer[_variant_pb2.Variant]
    def __init__(self, oak_restricted_kernel: _Optional[_Union[OakRestrictedKernelEndorsements, _Mapping]] = ..., oak_containers: _Optional[_Union[OakContainersEndorsements, _Mapping]] = ..., cb: _Optional[_Union[CBEndorsements, _Mapping]] = ..., platform: _Optional[_Union[_variant_pb2.Variant, _Mapping]] = ..., initial: _Optional[_Union[_variant_pb2.Variant, _Mapping]] = ..., events: _Optional[_Iterable[_Union[_variant_pb2.Variant, _Mapping]]] = ...) -> None: ...

class OakContainersEndorsements(_message.Message):
    __slots__ = ("root_layer", "kernel_layer", "system_layer", "container_layer")
    ROOT_LAYER_FIELD_NUMBER: _ClassVar[int]
    KERNEL_LAYER_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_LAYER_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_LAYER_FIELD_NUMBER: _ClassVar[int]
    root_layer: RootLayerEndorsements
    kernel_layer: KernelLayerEndorsements
    system_layer: SystemLayerEndorsements
    container_layer: ContainerLayerEndorsements
    def __init__(self, root_layer: _Optional[_Union[RootLayerEndorsements, _Mapping]] = ..., kernel_layer: _Optional[_Union[KernelLayerEndorsements, _Mapping]] = ..., system_layer: _Optional[_Union[SystemLayerEndorsements, _Mapping]] = ..., container_layer: _Optional[_Union[ContainerLayerEndorsements, _Mapping]] = ...) -> None: ...

class RootLayerEndorsements(_message.Message):
    __slots__ = ("tee_certificate", "stage0")
    TEE_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    STAGE0_FIELD_NUMBER: _ClassVar[int]
    tee_certificate: bytes
    stage0: TransparentReleaseEndorsement
    def __init__(self, tee_certificate: _Optional[bytes] = ..., stage0: _Optional[_Union[TransparentReleaseEndorsement, _Mapping]] = ...) -> None: ...

class OakRestrictedKernelEndorsements(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CBEndorsements(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KernelLayerEndorsements(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SystemLayerEndorsements(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ContainerLayerEndorsements(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TransparentReleaseEndorsement(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
