from hats.pb.oak.attestation.v1 import endorsement_pb2 as _endorsement_pb2
from hats.pb.oak.attestation.v1 import evidence_pb2 as _evidence_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EndorsedEvidence(_message.Message):
    __slots__ = ("evidence", "endorsements")
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    ENDORSEMENTS_FIELD_NUMBER: _ClassVar[int]
    evidence: _evidence_pb2.Evidence
    endorsements: _endorsement_pb2.Endorsements
    def __init__(self, evidence: _Optional[_Union[_evidence_pb2.Evidence, _Mapping]] = ..., endorsements: _Optional[_Union[_endorsement_pb2.Endorsements, _Mapping]] = ...) -> None: ...
