from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class OpaqueMessage(_message.Message):
    __slots__ = ("binary_message",)
    BINARY_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    binary_message: bytes
    def __init__(self, binary_message: _Optional[bytes] = ...) -> None: ...
