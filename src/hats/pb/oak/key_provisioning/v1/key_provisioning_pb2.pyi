from hats.pb.oak.attestation.v1 import endorsement_pb2 as _endorsement_pb2
from hats.pb.oak.attestation.v1 import evidence_pb2 as _evidence_pb2
from hats.pb.oak.crypto.v1 import crypto_pb2 as _crypto_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetGroupKeysRequest(_message.Message):
    __slots__ = ("evidence", "endorsements")
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    ENDORSEMENTS_FIELD_NUMBER: _ClassVar[int]
    evidence: _evidence_pb2.Evidence
    endorsements: _endorsement_pb2.Endorsements
    def __init__(self, evidence: _Optional[_Union[_evidence_pb2.Evidence, _Mapping]] = ..., endorsements: _Optional[_Union[_endorsement_pb2.Endorsements, _Mapping]] = ...) -> None: ...

class GetGroupKeysResponse(_message.Message):
    __slots__ = ("group_keys",)
    GROUP_KEYS_FIELD_NUMBER: _ClassVar[int]
    group_keys: GroupKeys
    def __init__(self, group_keys: _Optional[_Union[GroupKeys, _Mapping]] = ...) -> None: ...

class GroupKeys(_message.Message):
    __slots__ = ("encrypted_encryption_private_key",)
    ENCRYPTED_ENCRYPTION_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    encrypted_encryption_private_key: _crypto_pb2.EncryptedRequest
    def __init__(self, encrypted_encryption_private_key: _Optional[_Union[_crypto_pb2.EncryptedRequest, _Mapping]] = ...) -> None: ...
