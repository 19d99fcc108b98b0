from hats.pb.oak.attestation.v1 import evidence_pb2 as _evidence_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CertificateAuthority(_message.Message):
    __slots__ = ("eca_private_key",)
    ECA_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    eca_private_key: bytes
    def __init__(self, eca_private_key: _Optional[bytes] = ...) -> None: ...

class DiceData(_message.Message):
    __slots__ = ("evidence", "certificate_authority")
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    evidence: _evidence_pb2.Evidence
    certificate_authority: CertificateAuthority
    def __init__(self, evidence: _Optional[_Union[_evidence_pb2.Evidence, _Mapping]] = ..., certificate_authority: _Optional[_Union[CertificateAuthority, _Mapping]] = ...) -> None: ...
