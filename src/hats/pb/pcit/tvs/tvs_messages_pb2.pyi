from hats.pb.oak.attestation.v1 import evidence_pb2 as _evidence_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttestReportRequest(_message.Message):
    __slots__ = ("init_session_request", "verify_report_request")
    INIT_SESSION_REQUEST_FIELD_NUMBER: _ClassVar[int]
    VERIFY_REPORT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    init_session_request: InitSessionRequest
    verify_report_request: VerifyReportRequestEncrypted
    def __init__(self, init_session_request: _Optional[_Union[InitSessionRequest, _Mapping]] = ..., verify_report_request: _Optional[_Union[VerifyReportRequestEncrypted, _Mapping]] = ...) -> None: ...

class InitSessionRequest(_message.Message):
    __slots__ = ("client_message", "tvs_public_key", "client_public_key")
    CLIENT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TVS_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    client_message: bytes
    tvs_public_key: bytes
    client_public_key: bytes
    def __init__(self, client_message: _Optional[bytes] = ..., tvs_public_key: _Optional[bytes] = ..., client_public_key: _Optional[bytes] = ...) -> None: ...

class VerifyReportRequestEncrypted(_message.Message):
    __slots__ = ("client_message",)
    CLIENT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    client_message: bytes
    def __init__(self, client_message: _Optional[bytes] = ...) -> None: ...

class VerifyReportRequest(_message.Message):
    __slots__ = ("evidence", "tee_certificate", "signature")
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    TEE_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    evidence: _evidence_pb2.Evidence
    tee_certificate: bytes
    signature: bytes
    def __init__(self, evidence: _Optional[_Union[_evidence_pb2.Evidence, _Mapping]] = ..., tee_certificate: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class AttestReportResponse(_message.Message):
    __slots__ = ("init_session_response", "verify_report_response")
    INIT_SESSION_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    VERIFY_REPORT_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    init_session_response: InitSessionResponse
    verify_report_response: VerifyReportResponseEncrypted
    def __init__(self, init_session_response: _Optional[_Union[InitSessionResponse, _Mapping]] = ..., verify_report_response: _Optional[_Union[VerifyReportResponseEncrypted, _Mapping]] = ...) -> None: ...

class InitSessionResponse(_message.Message):
    __slots__ = ("response_for_client",)
    RESPONSE_FOR_CLIENT_FIELD_NUMBER: _ClassVar[int]
    response_for_client: bytes
    def __init__(self, response_for_client: _Optional[bytes] = ...) -> None: ...

class VerifyReportResponseEncrypted(_message.Message):
    __slots__ = ("response_for_client",)
    RESPONSE_FOR_CLIENT_FIELD_NUMBER: _ClassVar[int]
    response_for_client: bytes
    def __init__(self, response_for_client: _Optional[bytes] = ...) -> None: ...

class VerifyReportResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[Secret]
    def __init__(self, secrets: _Optional[_Iterable[_Union[Secret, _Mapping]]] = ...) -> None: ...

class Secret(_message.Message):
    __slots__ = ("key_id", "public_key", "private_key")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    public_key: str
    private_key: bytes
    def __init__(self, key_id: _Optional[str] = ..., public_key: _Optional[str] = ..., private_key: _Optional[bytes] = ...) -> None: ...
