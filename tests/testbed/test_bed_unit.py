"""TestBed without a network: argument checks, the unavailable error, signal deferral."""

import os
import signal
import threading

import pytest

from daskflow.testbed import TestBed, TestBedUnavailable
from daskflow.testbed.bed import _nest, _signals_held


def test_not_root_is_a_clear_unavailable_error(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(TestBedUnavailable, match="needs root"):
        TestBed(hosts=1).start()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hosts": 0}, "hosts"),
        ({"hosts": 2, "host_speeds": [1.0]}, "one per host"),
        ({"hosts": 2, "host_speeds": [1.0, 0.0]}, "positive"),
        ({"hosts": 2, "slowdown": "2@1:2"}, "does not exist"),
        ({"hosts": 1, "slowdown": "nonsense"}, "HOST@SECONDS:FACTOR"),
        ({"hosts": 1, "link_mbit": 0}, "link_mbit"),
        ({"hosts": 1, "workers_per_host": 1, "scheduler": False}, "need a scheduler"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TestBed(**kwargs)


def test_config_keys_are_nested_for_the_processes():
    assert _nest({"a.b.c": 1, "a.d": 2, "e": 3}) == {"a": {"b": {"c": 1}, "d": 2}, "e": 3}


def test_ctrl_c_during_teardown_waits_for_its_end():
    assert threading.current_thread() is threading.main_thread()
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with _signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("teardown")  # not interrupted
        finished.append("after")  # the held signal arrives here, at the latest
    assert finished == ["teardown"]  # re-raised when the block ended


def test_signal_handlers_are_restored_after_the_block():
    before = signal.getsignal(signal.SIGINT)
    with _signals_held():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before
