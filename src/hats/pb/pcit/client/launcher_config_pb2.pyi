from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CvmType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CVMTYPE_DEFAULT: _ClassVar[CvmType]
    CVMTYPE_SEVSNP: _ClassVar[CvmType]
CVMTYPE_DEFAULT: CvmType
CVMTYPE_SEVSNP: CvmType

class LauncherConfig(_message.Message):
    __slots__ = ("cvm_config",)
    CVM_CONFIG_FIELD_NUMBER: _ClassVar[int]
    cvm_config: CvmConfig
    def __init__(self, cvm_config: _Optional[_Union[CvmConfig, _Mapping]] = ...) -> None: ...

class CvmConfig(_message.Message):
    __slots__ = ("cvm_type", "runc_runtime_bundle", "hats_system_bundle", "num_cpus", "ramdrive_size_kb", "ram_size_kb", "debug_telnet_port", "vmm_binary", "network_config", "virtio_guest_cid")
    CVM_TYPE_FIELD_NUMBER: _ClassVar[int]
    RUNC_RUNTIME_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    HATS_SYSTEM_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    NUM_CPUS_FIELD_NUMBER: _ClassVar[int]
    RAMDRIVE_SIZE_KB_FIELD_NUMBER: _ClassVar[int]
    RAM_SIZE_KB_FIELD_NUMBER: _ClassVar[int]
    DEBUG_TELNET_PORT_FIELD_NUMBER: _ClassVar[int]
    VMM_BINARY_FIELD_NUMBER: _ClassVar[int]
    NETWORK_CONFIG_FIELD_NUMBER: _ClassVar[int]
    VIRTIO_GUEST_CID_FIELD_NUMBER: _ClassVar[int]
    cvm_type: CvmType
    runc_runtime_bundle: str
    hats_system_bundle: str
    num_cpus: int
    ramdrive_size_kb: int
    ram_size_kb: int
    debug_telnet_port: int
    vmm_binary: str
    network_config: NetworkConfig
    virtio_guest_cid: int
    def __init__(self, cvm_type: _Optional[_Union[CvmType, str]] = ..., runc_runtime_bundle: _Optional[str] = ..., hats_system_bundle: _Optional[str] = ..., num_cpus: _Optional[int] = ..., ramdrive_size_kb: _Optional[int] = ..., ram_size_kb: _Optional[int] = ..., debug_telnet_port: _Optional[int] = ..., vmm_binary: _Optional[str] = ..., network_config: _Optional[_Union[NetworkConfig, _Mapping]] = ..., virtio_guest_cid: _Optional[int] = ...) -> None: ...

class NetworkConfig(_message.Message):
    __slots__ = ("inbound_only", "inbound_and_outbound", "virtual_bridge")
    INBOUND_ONLY_FIELD_NUMBER: _ClassVar[int]
    INBOUND_AND_OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_BRIDGE_FIELD_NUMBER: _ClassVar[int]
    inbound_only: InboundOnly
    inbound_and_outbound: InboundAndOutbound
    virtual_bridge: VirtualBridge
    def __init__(self, inbound_only: _Optional[_Union[InboundOnly, _Mapping]] = ..., inbound_and_outbound: _Optional[_Union[InboundAndOutbound, _Mapping]] = ..., virtual_bridge: _Optional[_Union[VirtualBridge, _Mapping]] = ...) -> None: ...

class InboundOnly(_message.Message):
    __slots__ = ("host_enclave_app_proxy_port",)
    HOST_ENCLAVE_APP_PROXY_PORT_FIELD_NUMBER: _ClassVar[int]
    host_enclave_app_proxy_port: int
    def __init__(self, host_enclave_app_proxy_port: _Optional[int] = ...) -> None: ...

class InboundAndOutbound(_message.Message):
    __slots__ = ("host_enclave_app_proxy_port",)
    HOST_ENCLAVE_APP_PROXY_PORT_FIELD_NUMBER: _ClassVar[int]
    host_enclave_app_proxy_port: int
    def __init__(self, host_enclave_app_proxy_port: _Optional[int] = ...) -> None: ...

class VirtualBridge(_message.Message):
    __slots__ = ("virtual_bridge_device", "cvm_ip_addr", "cvm_gateway_addr")
    VIRTUAL_BRIDGE_DEVICE_FIELD_NUMBER: _ClassVar[int]
    CVM_IP_ADDR_FIELD_NUMBER: _ClassVar[int]
    CVM_GATEWAY_ADDR_FIELD_NUMBER: _ClassVar[int]
    virtual_bridge_device: str
    cvm_ip_addr: str
    cvm_gateway_addr: str
    def __init__(self, virtual_bridge_device: _Optional[str] = ..., cvm_ip_addr: _Optional[str] = ..., cvm_gateway_addr: _Optional[str] = ...) -> None: ...
