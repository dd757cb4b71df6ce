"""Names and addresses of one test bed: pure functions, no system calls.

Design note. Every object a test bed creates carries one *token* that says
who created it, so leftovers of a dead test bed can be found and removed by
name alone (:func:`daskflow.testbed.cleanup.cleanup_stale`)::

    token  = "dftb" + pid (base 36, 5 chars) + instance counter (base 36, 2 chars)
    bridge = token + "br"          veth (bridge side) = token + "r" + NN
    netns  = token + "h" + NN      veth (host side)   = token + "n" + NN

An interface name holds at most 15 characters (IFNAMSIZ - 1); these hold 14.
The pid is the one of the Python process that owns the test bed: when it no
longer runs, everything carrying its token is stale.

Addresses: each test bed takes one free /24 of ``198.18.0.0/15`` (RFC 2544,
reserved for network benchmarking; no other non-loopback range is used):
``198.18.S.1`` for the bridge (the scheduler and client side) and
``198.18.S.(10 + i)`` for host ``i``. The /24 is the first one not already
configured on this machine, starting at a pid-derived offset so that two test
beds started at once rarely even try the same one (a lock makes it certain).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable

from daskflow.testbed.errors import TestBedError

PREFIX = "dftb"
NETWORK = ipaddress.ip_network("198.18.0.0/15")
SUBNETS = 512  # /24s in 198.18.0.0/15
FIRST_HOST_OCTET = 10
MAX_HOSTS = 64
IFNAME_MAX = 15
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PID_CHARS = 5  # 36**5 > 4194304 (the largest Linux pid)
_COUNTER_CHARS = 2


def base36(number: int, width: int) -> str:
    """``number`` in base 36, zero-padded to ``width`` (ValueError when it does not fit)."""
    if number < 0:
        raise ValueError(f"base36: negative number {number}")
    digits = []
    while number:
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError(f"base36: {text!r} does not fit in {width} characters")
    return text.rjust(width, "0")


def make_token(pid: int, counter: int) -> str:
    """The token of the ``counter``-th test bed of process ``pid``."""
    return PREFIX + base36(pid, _PID_CHARS) + base36(counter % 36**_COUNTER_CHARS, _COUNTER_CHARS)


TOKEN_LENGTH = len(PREFIX) + _PID_CHARS + _COUNTER_CHARS


def token_of(name: str) -> str | None:
    """The token a test-bed object name starts with, or ``None`` for other names."""
    if not name.startswith(PREFIX) or len(name) < TOKEN_LENGTH:
        return None
    token = name[:TOKEN_LENGTH]
    if any(c not in _DIGITS for c in token[len(PREFIX):]):
        return None
    return token


def pid_of(name: str) -> int | None:
    """The owner pid encoded in a test-bed object name, or ``None`` for other names."""
    token = token_of(name)
    if token is None:
        return None
    return int(token[len(PREFIX) : len(PREFIX) + _PID_CHARS], 36)


@dataclasses.dataclass(frozen=True)
class BedNames:
    """Every system name and address one test bed uses (plain data)."""

    token: str
    subnet: int  # third octet offset: 0..511 inside 198.18.0.0/15

    @property
    def bridge(self) -> str:
        return f"{self.token}br"

    def netns(self, index: int) -> str:
        return f"{self.token}h{_index(index)}"

    def veth_bridge_side(self, index: int) -> str:
        return f"{self.token}r{_index(index)}"

    def veth_host_side(self, index: int) -> str:
        return f"{self.token}n{_index(index)}"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return subnet_network(self.subnet)

    @property
    def hub_address(self) -> str:
        """The bridge's address: where the scheduler listens."""
        return str(self.network.network_address + 1)

    def host_address(self, index: int) -> str:
        _index(index)
        return str(self.network.network_address + FIRST_HOST_OCTET + index)

    @property
    def prefix_length(self) -> int:
        return self.network.prefixlen


def _index(index: int) -> str:
    if not 0 <= index < MAX_HOSTS:
        raise ValueError(f"test bed host index {index} out of range 0..{MAX_HOSTS - 1}")
    return f"{index:02d}"


def subnet_network(subnet: int) -> ipaddress.IPv4Network:
    """The ``subnet``-th /24 of 198.18.0.0/15."""
    if not 0 <= subnet < SUBNETS:
        raise ValueError(f"test bed subnet {subnet} out of range 0..{SUBNETS - 1}")
    base = int(NETWORK.network_address) + subnet * 256
    return ipaddress.ip_network(f"{ipaddress.ip_address(base)}/24")


def subnet_of_address(address: str) -> int | None:
    """Which /24 of 198.18.0.0/15 ``address`` lies in (``None`` outside the range)."""
    try:
        ip = ipaddress.ip_address(address.split("/")[0])
    except ValueError:
        return None
    if ip not in NETWORK:
        return None
    return (int(ip) - int(NETWORK.network_address)) // 256


def choose_subnet(used: Iterable[int], pid: int, counter: int) -> int:
    """The first /24 not in ``used``, probing from an offset derived from ``pid`` and ``counter``.

    >>> choose_subnet({49}, pid=7, counter=0)  # 7 * 7 + 0 = 49 is taken
    50
    """
    taken = set(used)
    start = (pid * 7 + counter) % SUBNETS
    for step in range(SUBNETS):
        candidate = (start + step) % SUBNETS
        if candidate not in taken:
            return candidate
    raise TestBedError("no free /24 left in 198.18.0.0/15: remove stale test beds (daskflow.testbed.cleanup_stale())")
