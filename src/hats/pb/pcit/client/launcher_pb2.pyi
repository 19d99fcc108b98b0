from google.protobuf import empty_pb2 as _empty_pb2
from hats.pb.pcit.tvs import tvs_pb2 as _tvs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FetchOrchestratorMetadataResponse(_message.Message):
    __slots__ = ("tee_certificate", "tvs_authentication_key", "private_key_wrapping_keys")
    TEE_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    TVS_AUTHENTICATION_KEY_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_WRAPPING_KEYS_FIELD_NUMBER: _ClassVar[int]
    tee_certificate: bytes
    tvs_authentication_key: bytes
    private_key_wrapping_keys: PrivateKeyWrappingKeys
    def __init__(self, tee_certificate: _Optional[bytes] = ..., tvs_authentication_key: _Optional[bytes] = ..., private_key_wrapping_keys: _Optional[_Union[PrivateKeyWrappingKeys, _Mapping]] = ...) -> None: ...

class PrivateKeyWrappingKeys(_message.Message):
    __slots__ = ("primary", "active")
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    primary: bytes
    active: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, primary: _Optional[bytes] = ..., active: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ForwardingTvsMessage(_message.Message):
    __slots__ = ("tvs_id", "opaque_message")
    TVS_ID_FIELD_NUMBER: _ClassVar[int]
    OPAQUE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    tvs_id: int
    opaque_message: _tvs_pb2.OpaqueMessage
    def __init__(self, tvs_id: _Optional[int] = ..., opaque_message: _Optional[_Union[_tvs_pb2.OpaqueMessage, _Mapping]] = ...) -> None: ...
