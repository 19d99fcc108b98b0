from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SessionKeys(_message.Message):
    __slots__ = ("request_key", "response_key")
    REQUEST_KEY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_KEY_FIELD_NUMBER: _ClassVar[int]
    request_key: bytes
    response_key: bytes
    def __init__(self, request_key: _Optional[bytes] = ..., response_key: _Optional[bytes] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("signature",)
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    def __init__(self, signature: _Optional[bytes] = ...) -> None: ...

class EncryptedRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
