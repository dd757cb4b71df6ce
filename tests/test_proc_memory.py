"""ProcMemory: readings through descriptors kept open are fresh, and the mark resets (Linux only)."""

import sys

import pytest

from scheduler_plugins.worker_memory import ProcMemory, parse_status_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc (Linux)")


def test_readings_follow_allocations_and_the_mark_resets():
    proc = ProcMemory()
    try:
        if not proc.has_mark:
            pytest.skip("clear_refs is not writable here")
        proc.reset_mark()
        before_rss, before_mark = proc.rss_bytes(), proc.mark_bytes()
        block = bytearray(64 * 2**20)  # zero pages: touch them so they are resident
        block[:: 4096] = b"x" * len(block[:: 4096])
        assert proc.rss_bytes() - before_rss >= 60 * 2**20
        assert proc.mark_bytes() - before_mark >= 60 * 2**20
        del block
        proc.reset_mark()
        assert proc.mark_bytes() < before_mark + 32 * 2**20  # the freed 64 MiB no longer count
    finally:
        proc.close()
    assert not proc.has_mark


def test_parse_status_bytes_reads_kb_fields_and_skips_missing_ones():
    data = b"Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"
    assert parse_status_bytes(data, "VmRSS", "VmHWM", "VmSwap") == {"VmRSS": 1024 * 1024, "VmHWM": 2048 * 1024}

