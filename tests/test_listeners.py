"""RunListeners fan-out: required listeners fail the run, optional ones warn once (no cluster)."""

from __future__ import annotations

import warnings

import pytest

from daskflow.listeners import ListenerError, RunListener, RunListeners, load_listener
from daskflow.progress import RunProgress
from daskflow.run_result import AssetRecord, RunResult


class Collect(RunListener):
    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def asset_failed(self, run, record):
        self.log.append((self.name, record.asset))


class Broken(RunListener):
    def asset_failed(self, run, record):
        raise ValueError("boom")


def test_required_listeners_run_first_and_their_errors_propagate():
    log: list = []
    fanout = RunListeners(required=[Collect("writer", log)], optional=[Collect("bar", log)])
    fanout.asset_failed(None, AssetRecord("a", None, "failed"))
    assert log == [("writer", "a"), ("bar", "a")]
    with pytest.raises(ValueError, match="boom"):
        RunListeners(required=[Broken()]).asset_failed(None, AssetRecord("a", None, "failed"))


def test_an_optional_listener_error_is_one_warning_and_later_listeners_still_run():
    log: list = []
    fanout = RunListeners(optional=[Broken(), Collect("after", log)])
    with pytest.warns(RuntimeWarning, match="Broken raised ValueError: boom in asset_failed") as caught:
        for asset in ("a", "b", "c"):
            fanout.asset_failed(None, AssetRecord(asset, None, "failed"))
    assert len(caught) == 1 and log == [("after", "a"), ("after", "b"), ("after", "c")]


def test_while_aborting_required_errors_are_warnings():
    fanout = RunListeners(required=[Broken()])
    fanout.aborting = True
    with pytest.warns(RuntimeWarning, match="Broken"):
        fanout.asset_failed(None, AssetRecord("a", None, "failed"))


def test_the_base_listener_ignores_every_event():
    listener = RunListener()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RunListeners(optional=[listener]).run_finished(None, RunResult("r", "success", []))


def test_load_listener_builds_classes_and_names_bad_strings():
    assert isinstance(load_listener("daskflow.progress:RunProgress"), RunProgress)
    assert isinstance(load_listener("daskflow.progress.RunProgress"), RunProgress)
    with pytest.raises(ListenerError, match="'nowhere.module:X'.*cannot be imported"):
        load_listener("nowhere.module:X")
