"""Storage faults on real mounts: a full and a read-only tmpfs as the storage root.

Root only (``mount -t tmpfs``); skipped otherwise. Each run goes through the
CLI against the module's shared cluster and must give exit status 1, one
clear error line (no traceback), no partial or temp file and no catalog row
for the asset that could not be written; the rows that were written match
their files. The mount is always unmounted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from daskflow.catalog import Catalog

from .conftest import write_pipeline
from .fault_checks import (
    assert_catalog_matches_disk,
    assert_one_line_error,
    cli,
    cli_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PIPELINE = '''
from daskflow.definitions import asset


@asset(io="json")
def small():
    return [1, 2, 3]


@asset(io="json")
def big(small):
    return ["x" * 1000] * 3000  # 3 MB: more than the 1 MiB mount


@asset(io="json")
def after(big):
    return len(big)
'''


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def tmpfs(path, size: str = "1m"):
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


pytestmark.append(pytest.mark.skipif(not _can_mount(), reason="tmpfs mounts need root"))


def _run(tmp_path, home, storage, address):
    path = write_pipeline(tmp_path, PIPELINE)
    env = cli_env(home, DASK_DASKFLOW__STORAGE__URL=str(storage))
    return cli(["run", path, "--address", address], env)


def test_a_full_storage_gives_one_error_no_partial_file_and_no_row(reliability_cluster, daskflow_home, tmp_path):
    with tmpfs(tmp_path / "full") as mount:
        storage = mount / "data"
        done = _run(tmp_path, daskflow_home, storage, reliability_cluster.scheduler_address)
        assert done.returncode == 1, done.stdout + done.stderr
        assert_one_line_error(done.stderr, contains="No space left on device")
        assert "big failed: StorageError" in done.stderr
        catalog = Catalog()
        rows = assert_catalog_matches_disk(catalog, storage)
        assert sorted(m.asset_key for m in rows) == ["small"]
        assert not (storage / "big").exists() or list((storage / "big").rglob("*.*")) == []
        assert [r.status for r in catalog.runs(limit=None)] == ["failure"]


def test_a_read_only_storage_gives_one_error_and_no_row(reliability_cluster, daskflow_home, tmp_path):
    with tmpfs(tmp_path / "ro") as mount:
        storage = mount / "data"
        storage.mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        done = _run(tmp_path, daskflow_home, storage, reliability_cluster.scheduler_address)
        assert done.returncode == 1, done.stdout + done.stderr
        assert_one_line_error(done.stderr, contains="Read-only file system")
        assert "small failed: StorageError" in done.stderr
        catalog = Catalog()
        assert assert_catalog_matches_disk(catalog, storage) == []
        assert list(storage.rglob("*")) == []
        assert [r.status for r in catalog.runs(limit=None)] == ["failure"]
