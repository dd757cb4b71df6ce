"""Remove what dead test beds left behind: namespaces, links, processes, temp dirs.

Design note. Everything a test bed creates is named after its token, which
encodes the owner's pid (:mod:`daskflow.testbed.naming`). A token is *stale*
when that pid no longer runs. Live test beds, of this process or another, are
never touched. (A pid reused by an unrelated process keeps its stale objects
until that process ends: harmless, they only take one /24.)
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import tempfile

from daskflow.testbed import netns, processes
from daskflow.testbed.naming import pid_of, token_of


@dataclasses.dataclass
class CleanupReport:
    """What :func:`cleanup_stale` removed."""

    tokens: list[str] = dataclasses.field(default_factory=list)
    netns: list[str] = dataclasses.field(default_factory=list)
    links: list[str] = dataclasses.field(default_factory=list)
    pids: list[int] = dataclasses.field(default_factory=list)
    temp_dirs: list[str] = dataclasses.field(default_factory=list)


def _stale(name: str) -> str | None:
    token = token_of(name)
    if token is None:
        return None
    pid = pid_of(name)
    return token if pid is not None and not processes.pid_alive(pid) else None


def cleanup_stale(temp_root: str | pathlib.Path | None = None) -> CleanupReport:
    """Remove the leftovers of every test bed whose owner process is gone; return what was removed.

    >>> cleanup_stale().netns  # doctest: +SKIP
    []
    """
    report = CleanupReport()
    namespaces = [(ns, _stale(ns)) for ns in netns.list_netns()]
    links = [(link, _stale(link)) for link in netns.list_links()]
    root = pathlib.Path(temp_root or tempfile.gettempdir())
    temp_dirs = [(path, _stale(path.name)) for path in root.iterdir() if path.is_dir()] if root.is_dir() else []
    tokens = sorted({t for _, t in (*namespaces, *links, *temp_dirs) if t})
    report.tokens = tokens
    for ns, token in namespaces:
        if token:
            report.pids += processes.kill_pids(netns.netns_pids(ns), grace_s=0)
    for token in tokens:
        report.pids += processes.kill_pids(processes.processes_with_token(token), grace_s=0)
    for ns, token in namespaces:
        if token:
            netns.delete_netns(ns)
            report.netns.append(ns)
    # veth ends first (a bridge-side end may outlive its namespace), bridges last
    for link, token in sorted(links, key=lambda item: item[0].endswith("br")):
        if token and link in netns.list_links():
            netns.delete_link(link)
            report.links.append(link)
    for path, token in temp_dirs:
        if token:
            shutil.rmtree(path, ignore_errors=True)
            report.temp_dirs.append(str(path))
    return report
