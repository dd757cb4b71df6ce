"""Signals during a teardown are deferred until it ends, then re-raised (no cluster needed)."""

import os
import signal
import threading

import pytest

from daskflow.testbed.bed import _signals_held


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
