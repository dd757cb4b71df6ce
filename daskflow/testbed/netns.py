"""The system side of a test bed: ``ip`` and ``tc`` commands, nothing else.

Design note. One bridge in the root namespace is the emulated switch; each
emulated host is a network namespace joined to it by a veth pair::

    root ns:  bridge <token>br  198.18.S.1/24  (scheduler, client)
                 |-- <token>r00 ==veth== <token>n00 in netns <token>h00  198.18.S.10/24
                 |-- <token>r01 ==veth== <token>n01 in netns <token>h01  198.18.S.11/24

Host-to-host traffic is switched by the bridge (no IP forwarding, no sysctl
changed). A link's bandwidth is limited with a ``tbf`` qdisc on *both* veth
ends (the host-side end shapes what the host sends, the bridge-side end what
it receives), so a transfer from host A to host B crosses A's uplink and B's
downlink, like two hosts behind one switch.

Latency: this kernel has no ``netem`` (nor ``fq``, ``cake``, ``fq_codel``;
only ``tbf`` and ``htb`` were found), and without ``fq`` an eBPF earliest-
departure-time delay has no qdisc to honour it. So link latency is NOT
emulated on the wire: the per-host file servers add it to each response
(:mod:`daskflow.testbed.fileserver`), and worker-to-worker transfers get the
bandwidth limit only. :func:`netem_available` says whether a kernel offers it;
when it does, the test bed adds ``netem delay`` under the ``tbf``.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Sequence

from daskflow.testbed.errors import TestBedError, TestBedUnavailable

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 20.0


def run(args: Sequence[str], *, check: bool = True, timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run one ``ip``/``tc`` command; a failure raises TestBedError naming the command and its error."""
    try:
        result = subprocess.run(list(args), check=False, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError as exc:
        raise TestBedUnavailable(f"test bed: {args[0]!r} not found; install iproute2 (ip, tc)") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestBedError(f"test bed: `{' '.join(args)}` did not finish in {timeout_s:.0f} s") from exc
    if check and result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise TestBedError(f"test bed: `{' '.join(args)}` failed: {message[-1] if message else result.returncode}")
    return result


def unavailable_reason() -> str | None:
    """Why this machine cannot run a test bed, or ``None`` when it can (root and iproute2 present)."""
    import os

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the multi-host test bed needs root (network namespaces, veth, tc); run as root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the multi-host test bed needs {tool!r} (iproute2); install iproute2"
    result = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        return f"`ip netns list` failed ({result.stderr.strip()}); network namespaces are not usable here"
    return None


# --------------------------------------------------------------------------- listing


def list_netns() -> list[str]:
    """Names of the network namespaces ``ip netns`` knows."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_links() -> list[str]:
    """Names of the root namespace's network interfaces (veth peers without their ``@peer``)."""
    out = run(["ip", "-json", "link", "show"]).stdout
    return [entry["ifname"] for entry in json.loads(out or "[]")]


def used_subnets() -> set[int]:
    """The /24s of 198.18.0.0/15 already configured on some root-namespace interface."""
    from daskflow.testbed.naming import subnet_of_address

    out = run(["ip", "-json", "-4", "addr", "show"]).stdout
    used = set()
    for entry in json.loads(out or "[]"):
        for info in entry.get("addr_info", []):
            subnet = subnet_of_address(info.get("local", ""))
            if subnet is not None:
                used.add(subnet)
    return used


def netns_pids(netns: str) -> list[int]:
    """Pids of the processes running inside ``netns`` (empty when it is gone)."""
    result = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


# --------------------------------------------------------------------------- building


def add_bridge(name: str, address: str, prefix_length: int) -> None:
    run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "addr", "add", f"{address}/{prefix_length}", "dev", name])
    run(["ip", "link", "set", name, "up"])


def add_host(netns: str, bridge: str, bridge_side: str, host_side: str, address: str, prefix_length: int) -> None:
    """Create ``netns`` and a veth pair from ``bridge`` into it; give the host end ``address``."""
    run(["ip", "netns", "add", netns])
    run(["ip", "link", "add", bridge_side, "type", "veth", "peer", "name", host_side, "netns", netns])
    run(["ip", "link", "set", bridge_side, "master", bridge])
    run(["ip", "link", "set", bridge_side, "up"])
    in_ns = ["ip", "-n", netns]
    run([*in_ns, "link", "set", "lo", "up"])
    run([*in_ns, "addr", "add", f"{address}/{prefix_length}", "dev", host_side])
    run([*in_ns, "link", "set", host_side, "up"])


def tbf_args(rate_mbit: float) -> list[str]:
    """``tbf`` parameters for ``rate_mbit``: a burst of ~4 ms of traffic (>= 64 KiB so GSO frames pass)."""
    rate_bytes_s = rate_mbit * 1e6 / 8
    burst = max(64 * 1024, int(rate_bytes_s * 0.004))
    return ["tbf", "rate", f"{rate_mbit:g}mbit", "burst", str(burst), "latency", "50ms"]


def limit_link(device: str, rate_mbit: float | None, latency_ms: float, netns: str | None = None) -> None:
    """Shape ``device``'s egress to ``rate_mbit`` (``None``: unlimited), plus netem delay where available."""
    prefix = ["tc"] if netns is None else ["tc", "-n", netns]
    if rate_mbit:
        run([*prefix, "qdisc", "add", "dev", device, "root", "handle", "1:", *tbf_args(rate_mbit)])
    if latency_ms > 0 and netem_available():
        parent = ["parent", "1:1"] if rate_mbit else ["root"]
        run([*prefix, "qdisc", "add", "dev", device, *parent, "handle", "10:", "netem", "delay", f"{latency_ms:g}ms"])


_NETEM: bool | None = None


def netem_available() -> bool:
    """Whether this kernel has the ``netem`` qdisc (probed once on a throwaway dummy device)."""
    global _NETEM
    if _NETEM is None:
        probe = "dfnetemprobe"  # not the test-bed prefix: cleanup never sees it
        if run(["ip", "link", "add", probe, "type", "dummy"], check=False).returncode != 0:
            _NETEM = False
        else:
            try:
                result = run(["tc", "qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms"], check=False)
                _NETEM = result.returncode == 0
            finally:
                run(["ip", "link", "del", probe], check=False)
    return _NETEM


# --------------------------------------------------------------------------- tearing down


def delete_netns(netns: str) -> None:
    """Delete ``netns`` (its veth end goes with it, and the peer with that); missing is fine."""
    run(["ip", "netns", "del", netns], check=False)


def delete_link(name: str) -> None:
    """Delete a root-namespace interface (a bridge or a veth end); missing is fine."""
    run(["ip", "link", "del", name], check=False)
