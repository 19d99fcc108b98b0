from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RawDigest(_message.Message):
    __slots__ = ("psha2", "sha1", "sha2_256", "sha2_512", "sha3_512", "sha3_384", "sha3_256", "sha3_224", "sha2_384")
    PSHA2_FIELD_NUMBER: _ClassVar[int]
    SHA1_FIELD_NUMBER: _ClassVar[int]
    SHA2_256_FIELD_NUMBER: _ClassVar[int]
    SHA2_512_FIELD_NUMBER: _ClassVar[int]
    SHA3_512_FIELD_NUMBER: _ClassVar[int]
    SHA3_384_FIELD_NUMBER: _ClassVar[int]
    SHA3_256_FIELD_NUMBER: _ClassVar[int]
    SHA3_224_FIELD_NUMBER: _ClassVar[int]
    SHA2_384_FIELD_NUMBER: _ClassVar[int]
    psha2: bytes
    sha1: bytes
    sha2_256: bytes
    sha2_512: bytes
    sha3_512: bytes
    sha3_384: bytes
    sha3_256: bytes
    sha3_224: bytes
    sha2_384: bytes
    def __init__(self, psha2: _Optional[bytes] = ..., sha1: _Optional[bytes] = ..., sha2_256: _Optional[bytes] = ..., sha2_512: _Optional[bytes] = ..., sha3_512: _Optional[bytes] = ..., sha3_384: _Optional[bytes] = ..., sha3_256: _Optional[bytes] = ..., sha3_224: _Optional[bytes] = ..., sha2_384: _Optional[bytes] = ...) -> None: ...
