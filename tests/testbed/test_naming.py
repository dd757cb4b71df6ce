"""Names and /24s of a test bed: pure, no system calls."""

import ipaddress

import pytest

from daskflow.testbed.naming import (
    IFNAME_MAX,
    NETWORK,
    SUBNETS,
    BedNames,
    base36,
    choose_subnet,
    make_token,
    pid_of,
    subnet_network,
    subnet_of_address,
    token_of,
)


def test_token_encodes_pid_and_fits_interface_names():
    for pid in (1, 4242, 4194304):
        token = make_token(pid, 35)
        names = BedNames(token, 0)
        for name in (names.bridge, names.veth_bridge_side(63), names.veth_host_side(63), names.netns(63)):
            assert len(name) <= IFNAME_MAX
            assert pid_of(name) == pid
            assert token_of(name) == token


def test_instances_of_one_process_get_distinct_tokens():
    assert len({make_token(99, counter) for counter in range(50)}) == 50


def test_foreign_names_have_no_owner():
    for name in ("eth0", "lo", "dftb", "dftbXYZ!!!!!", "ifb0", "docker0"):
        assert pid_of(name) is None


def test_base36_rejects_what_does_not_fit():
    assert base36(35, 1) == "z"
    with pytest.raises(ValueError):
        base36(36, 1)


def test_addresses_stay_inside_the_benchmarking_range():
    for subnet in (0, 1, 255, 256, SUBNETS - 1):
        names = BedNames(make_token(1, 0), subnet)
        addresses = [names.hub_address] + [names.host_address(i) for i in range(64)]
        assert all(ipaddress.ip_address(a) in NETWORK for a in addresses)
        assert all(ipaddress.ip_address(a) in names.network for a in addresses)
        assert len(set(addresses)) == len(addresses)
        assert subnet_of_address(names.host_address(3)) == subnet
    assert subnet_network(SUBNETS - 1) == ipaddress.ip_network("198.19.255.0/24")
    with pytest.raises(ValueError):
        subnet_network(SUBNETS)
    assert subnet_of_address("10.0.0.1") is None
    assert subnet_of_address("not an address") is None


def test_choose_subnet_skips_used_ones_and_wraps():
    start = (5 * 7 + 0) % SUBNETS
    assert choose_subnet(set(), pid=5, counter=0) == start
    assert choose_subnet({start, start + 1}, pid=5, counter=0) == start + 2
    assert choose_subnet(set(range(1, SUBNETS)), pid=SUBNETS - 1, counter=0) == 0


def test_choose_subnet_fails_clearly_when_the_range_is_full():
    from daskflow.testbed import TestBedError

    with pytest.raises(TestBedError, match="cleanup_stale"):
        choose_subnet(set(range(SUBNETS)), pid=1, counter=0)


def test_host_index_out_of_range():
    names = BedNames(make_token(1, 0), 0)
    with pytest.raises(ValueError):
        names.netns(64)
