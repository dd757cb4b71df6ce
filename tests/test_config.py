"""The ``daskflow`` config namespace: defaults, schema, env overrides."""

import pathlib
import subprocess
import sys

import dask.config
import yaml

from daskflow import config


def test_every_default_key_is_described_in_the_schema():
    schema = config.schema()["properties"]["daskflow"]["properties"]
    # the packaged file itself: other tests may have reset dask.config (distributed's test utilities do)
    defaults = yaml.safe_load(pathlib.Path(config.__file__).with_name("daskflow.yaml").read_text())["daskflow"]
    for section, values in defaults.items():
        assert section in schema, section
        if isinstance(values, dict):
            assert set(values) <= set(schema[section].get("properties", {})), section


def test_env_override_wins_over_packaged_default():
    code = "import daskflow, dask; print(dask.config.get('daskflow.steering.mode'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"DASK_DASKFLOW__STEERING__MODE": "shadow", "PATH": ""},
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "shadow"


def test_home_defaults_to_dot_daskflow_and_follows_env(tmp_path, monkeypatch):
    monkeypatch.delenv("DASKFLOW_HOME", raising=False)
    with dask.config.set({"daskflow.home": None}):
        monkeypatch.chdir(tmp_path)
        assert config.home() == tmp_path / ".daskflow"
        monkeypatch.setenv("DASKFLOW_HOME", str(tmp_path / "elsewhere"))
        assert config.home() == tmp_path / "elsewhere"
