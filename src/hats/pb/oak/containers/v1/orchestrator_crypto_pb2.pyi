from hats.pb.oak.crypto.v1 import crypto_pb2 as _crypto_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_ORIGIN_UNSPECIFIED: _ClassVar[KeyOrigin]
    INSTANCE: _ClassVar[KeyOrigin]
    GROUP: _ClassVar[KeyOrigin]
KEY_ORIGIN_UNSPECIFIED: KeyOrigin
INSTANCE: KeyOrigin
GROUP: KeyOrigin

class DeriveSessionKeysRequest(_message.Message):
    __slots__ = ("key_origin", "serialized_encapsulated_public_key")
    KEY_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SERIALIZED_ENCAPSULATED_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    key_origin: KeyOrigin
    serialized_encapsulated_public_key: bytes
    def __init__(self, key_origin: _Optional[_Union[KeyOrigin, str]] = ..., serialized_encapsulated_public_key: _Optional[bytes] = ...) -> None: ...

class DeriveSessionKeysResponse(_message.Message):
    __slots__ = ("session_keys",)
    SESSION_KEYS_FIELD_NUMBER: _ClassVar[int]
    session_keys: _crypto_pb2.SessionKeys
    def __init__(self, session_keys: _Optional[_Union[_crypto_pb2.SessionKeys, _Mapping]] = ...) -> None: ...

class SignRequest(_message.Message):
    __slots__ = ("key_origin", "message")
    KEY_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    key_origin: KeyOrigin
    message: bytes
    def __init__(self, key_origin: _Optional[_Union[KeyOrigin, str]] = ..., message: _Optional[bytes] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("signature",)
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    signature: _crypto_pb2.Signature
    def __init__(self, signature: _Optional[_Union[_crypto_pb2.Signature, _Mapping]] = ...) -> None: ...

class BindSessionRequest(_message.Message):
    __slots__ = ("transcript", "additional_data")
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_DATA_FIELD_NUMBER: _ClassVar[int]
    transcript: bytes
    additional_data: bytes
    def __init__(self, transcript: _Optional[bytes] = ..., additional_data: _Optional[bytes] = ...) -> None: ...

class BindSessionResponse(_message.Message):
    __slots__ = ("signature",)
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    signature: _crypto_pb2.Signature
    def __init__(self, signature: _Optional[_Union[_crypto_pb2.Signature, _Mapping]] = ...) -> None: ...
