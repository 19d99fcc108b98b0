from google.protobuf import empty_pb2 as _empty_pb2
from hats.pb.oak.attestation.v1 import endorsement_pb2 as _endorsement_pb2
from hats.pb.oak.attestation.v1 import evidence_pb2 as _evidence_pb2
from hats.pb.oak.session.v1 import messages_pb2 as _messages_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetImageResponse(_message.Message):
    __slots__ = ("image_chunk",)
    IMAGE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    image_chunk: bytes
    def __init__(self, image_chunk: _Optional[bytes] = ...) -> None: ...

class GetApplicationConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: bytes
    def __init__(self, config: _Optional[bytes] = ...) -> None: ...

class SendAttestationEvidenceRequest(_message.Message):
    __slots__ = ("dice_evidence",)
    DICE_EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    dice_evidence: _evidence_pb2.Evidence
    def __init__(self, dice_evidence: _Optional[_Union[_evidence_pb2.Evidence, _Mapping]] = ...) -> None: ...
