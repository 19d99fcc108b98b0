"""The ip= option stage1 applies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hats.stage1.network import (
    IpConfigError,
    choose_device,
    find_ip_option,
    parse_ip_option,
)
from hats.vm.qemu import IP_CONFIG


def test_reference_modes() -> None:
    inbound = parse_ip_option(IP_CONFIG["inbound_only"])
    assert (inbound.cidr, inbound.gateway, inbound.device) == ("10.0.2.15/24", "", "enp0s1")
    outbound = parse_ip_option(IP_CONFIG["inbound_and_outbound"])
    assert outbound.gateway == "10.0.2.2"


def test_find_takes_the_last() -> None:
    assert find_ip_option(["quiet", "ip=1.2.3.4", "ip=5.6.7.8::::::off"]) == "5.6.7.8::::::off"
    assert find_ip_option(["quiet"]) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("dhcp", "is not an IPv4 address"),
        ("10.0.2.15::::::dhcp", "only static"),
        ("10.0.2.15:::255.0.255.0", "not a netmask"),
        ("10.0.2.15::gw:255.255.255.0", "not an IPv4 address"),
    ],
)
def test_errors(value: str, message: str) -> None:
    with pytest.raises(IpConfigError, match=message):
        parse_ip_option(value)


def test_choose_device() -> None:
    assert choose_device("enp0s1", ["eth0", "lo"]) == "eth0"
    assert choose_device("eth1", ["eth0", "eth1", "lo"]) == "eth1"
    with pytest.raises(IpConfigError, match="no network interface"):
        choose_device("enp0s1", ["lo"])


@given(st.integers(0, 32), st.ip_addresses(v=4))
def test_any_prefix(prefix: int, address: object) -> None:
    import ipaddress

    mask = str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)
    config = parse_ip_option(f"{address}:::{mask}::eth0:off")
    assert config.prefix_length == prefix and config.address == str(address)
