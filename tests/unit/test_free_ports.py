"""The ports tests give their services: distinct, bindable, and outside the kernel's ephemeral
range, so no outgoing connection can hold one between the pick and the service's bind (CI once
lost a run to a simulator that could not bind the port it was given)."""

from __future__ import annotations

import socket

from tests.support.processes import _ephemeral_range, free_port, free_ports


def test_ports_are_distinct_across_calls_and_outside_the_ephemeral_range() -> None:
    low, high = _ephemeral_range()
    ports = free_ports(40) + [free_port() for _ in range(40)]
    assert len(set(ports)) == len(ports)
    assert not [p for p in ports if low <= p <= high]


def test_a_port_something_listens_on_is_never_handed_out() -> None:
    taken = []
    try:
        for port in free_ports(5):  # hold five, then ask for the whole range's worth
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            s.listen()
            taken.append(s)
        held = {s.getsockname()[1] for s in taken}
        assert not held & set(free_ports(200))
    finally:
        for s in taken:
            s.close()


def test_every_port_handed_out_can_be_bound() -> None:
    for port in free_ports(10):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
