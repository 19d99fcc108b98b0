"""Launcher and server addresses → gRPC targets."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hats.transport import AddressError, parse_address


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("vsock://2:1061704822", "vsock:2:1061704822"),
        ("vsock://2:5000/", "vsock:2:5000"),
        ("vsock://:5000", "vsock:2:5000"),
        ("vsock://5000", "vsock:2:5000"),
        ("http://10.0.2.100:8080", "10.0.2.100:8080"),
        ("http://10.0.2.100:8080/", "10.0.2.100:8080"),
        ("localhost:4000", "localhost:4000"),
        ("[::1]:4000", "[::1]:4000"),
        ("unix:/run/x.sock", "unix:/run/x.sock"),
        ("unix:///run/x.sock", "unix:/run/x.sock"),
        ("unix:rel.sock", "unix:rel.sock"),
    ],
)
def test_targets(text: str, target: str) -> None:
    assert parse_address(text).grpc_target() == target


@pytest.mark.parametrize(
    "text",
    [
        "",
        "vsock://",
        "vsock://2:x",
        "vsock://2:1/a",
        "http://host",
        "host:99999",
        "unix:",
        "ftp://h:1",
        "h:1:2",
    ],
)
def test_bad_addresses_are_one_line_errors(text: str) -> None:
    with pytest.raises(AddressError) as err:
        parse_address(text)
    assert "\n" not in str(err.value)


@given(st.text(max_size=40))
def test_parser_raises_only_address_error(text: str) -> None:
    with contextlib.suppress(AddressError):
        parse_address(text)
