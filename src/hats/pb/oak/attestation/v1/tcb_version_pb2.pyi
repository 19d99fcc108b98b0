from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TcbVersion(_message.Message):
    __slots__ = ("boot_loader", "tee", "snp", "microcode", "fmc")
    BOOT_LOADER_FIELD_NUMBER: _ClassVar[int]
    TEE_FIELD_NUMBER: _ClassVar[int]
    SNP_FIELD_NUMBER: _ClassVar[int]
    MICROCODE_FIELD_NUMBER: _ClassVar[int]
    FMC_FIELD_NUMBER: _ClassVar[int]
    boot_loader: int
    tee: int
    snp: int
    microcode: int
    fmc: int
    def __init__(self, boot_loader: _Optional[int] = ..., tee: _Optional[int] = ..., snp: _Optional[int] = ..., microcode: _Optional[int] = ..., fmc: _Optional[int] = ...) -> None: ...
