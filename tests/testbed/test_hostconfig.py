"""What a worker knows about its host: speed, slowdown, URLs (pure)."""

import pytest

from daskflow.testbed.hostconfig import (
    ENV_CONFIG,
    ENV_HOST,
    ENV_SPEED,
    ENV_STORAGE,
    HostConfig,
    Slowdown,
    current_duration_s,
    current_host,
    current_speed,
    effective_speed,
    emulated_duration_s,
    host_url,
    parse_slowdown,
    read_clock,
    write_clock,
)


def config(**kw):
    base = {"name": "h2", "index": 2, "address": "198.18.0.12", "storage_dir": "/s", "url": "http://198.18.0.12:8000/",
            "host_urls": {"h1": "http://198.18.0.11:8000/", "h2": "http://198.18.0.12:8000/"}}
    return HostConfig(**{**base, **kw})


def test_speed_without_slowdown_is_the_factor():
    assert effective_speed(config(speed=0.5), now=1e9, epoch=0.0) == 0.5


def test_slowdown_applies_from_its_time_after_the_epoch():
    cfg = config(speed=1.0, slowdown_at_s=30.0, slowdown_factor=4.0)
    assert effective_speed(cfg, now=129.9, epoch=100.0) == 1.0
    assert effective_speed(cfg, now=130.0, epoch=100.0) == 0.25
    assert effective_speed(cfg, now=1e9, epoch=None) == 1.0  # no clock, no start epoch: never
    started = config(speed=1.0, slowdown_at_s=30.0, slowdown_factor=4.0, start_epoch=100.0)
    assert effective_speed(started, now=129.0) == 1.0 and effective_speed(started, now=131.0) == 0.25
    assert effective_speed(started, now=131.0, epoch=200.0) == 1.0  # a restarted clock moves it


def test_emulated_duration_across_the_slowdown():
    """speed 0.5, then 4x slower (0.125) from t=10:   |--- 0.5 ---|10|--- 0.125 ---"""
    cfg = config(speed=0.5, slowdown_at_s=10.0, slowdown_factor=4.0)
    assert emulated_duration_s(cfg, start=0.0, work_s=2.0, epoch=0.0) == 4.0  # ends before the switch
    assert emulated_duration_s(cfg, start=10.0, work_s=1.0, epoch=0.0) == 8.0  # all after it
    assert emulated_duration_s(cfg, start=8.0, work_s=2.0, epoch=0.0) == 2.0 + 1.0 / 0.125  # straddles it
    assert emulated_duration_s(config(speed=2.0), start=0.0, work_s=3.0) == 1.5
    assert emulated_duration_s(cfg, start=0.0, work_s=0.0, epoch=0.0) == 0.0


def test_parse_slowdown():
    assert parse_slowdown("2@30:4") == Slowdown(2, 30.0, 4.0)
    assert parse_slowdown("h3@0:1.5") == Slowdown(3, 0.0, 1.5)
    for bad in ("2:30@4", "x@1:2", "1@-1:2", "1@1:0", ""):
        with pytest.raises(ValueError, match="HOST@SECONDS:FACTOR|must be"):
            parse_slowdown(bad)


def test_environment_round_trip_and_current_speed(tmp_path):
    clock = tmp_path / "clock"
    write_clock(clock, 1000.0)
    assert read_clock(clock) == 1000.0
    cfg = config(speed=0.5, slowdown_at_s=10.0, slowdown_factor=2.0, clock_path=str(clock))
    env = cfg.environment()
    assert env[ENV_HOST] == "h2" and env[ENV_STORAGE] == "/s" and float(env[ENV_SPEED]) == 0.5
    assert current_host(env) == cfg
    assert current_speed(now=1005.0, environ=env) == 0.5
    assert current_speed(now=1010.0, environ=env) == 0.25
    assert current_speed(now=1010.0, environ={}) == 1.0
    assert current_duration_s(1.0, start=1010.0, environ=env) == 4.0
    assert current_duration_s(1.0, start=1010.0, environ={}) == 1.0
    assert current_host({}) is None
    assert read_clock(tmp_path / "missing") is None
    assert ENV_CONFIG in env


def test_host_url_from_object_name_or_environment(monkeypatch):
    cfg = config()
    assert host_url(cfg, "/a b/c.bin") == "http://198.18.0.12:8000/a%20b/c.bin"
    assert host_url("h1", "x", cfg.host_urls) == "http://198.18.0.11:8000/x"
    monkeypatch.setenv(ENV_CONFIG, cfg.to_json())
    assert host_url("h1", "y") == "http://198.18.0.11:8000/y"
    with pytest.raises(KeyError, match="h9"):
        host_url("h9", "y")
