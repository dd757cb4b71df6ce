"""Loading is robust (#16.6): only the pipeline's own files travel by value; tracebacks keep file names.

The layout under test, the common one that broke::

    proj/
      pipe.py                  # the pipeline
      helpers.py               # a real sibling module      -> by value
      localpkg/__init__.py     # a sibling package          -> by value
      .venv/pyvenv.cfg         # a virtualenv in the same folder
      .venv/lib/python3.11/site-packages/fakepkg/__init__.py  -> by reference
"""

from __future__ import annotations

import pickle
import sys
import textwrap
import traceback

import cloudpickle
import pytest

from daskflow.loading import dumps_by_value, is_sibling_module, load_definitions

PIPE = """
from daskflow.definitions import asset
import fakepkg
import helpers
import localpkg


@asset
def numbers():
    return [helpers.double(1), fakepkg.VALUE, localpkg.VALUE]


@asset
def total(numbers):
    return sum(numbers)
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    site = proj / ".venv" / "lib" / "python3.11" / "site-packages"
    (site / "fakepkg").mkdir(parents=True)
    (proj / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    (site / "fakepkg" / "__init__.py").write_text("VALUE = 40\n")
    (proj / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (proj / "localpkg").mkdir()
    (proj / "localpkg" / "__init__.py").write_text("VALUE = 0\n")
    (proj / "pipe.py").write_text(textwrap.dedent(PIPE))
    monkeypatch.syspath_prepend(str(site))
    names = ("fakepkg", "helpers", "localpkg")
    yield proj
    for name in names:
        module = sys.modules.pop(name, None)
        if module is not None and name in cloudpickle.list_registry_pickle_by_value():
            cloudpickle.unregister_pickle_by_value(module)
    sys.path[:] = [p for p in sys.path if p != str(proj)]


def test_siblings_are_shipped_by_value_and_virtualenv_packages_are_not(project):
    load_definitions(str(project / "pipe.py"))
    registry = cloudpickle.list_registry_pickle_by_value()
    assert "helpers" in registry and "localpkg" in registry
    assert "fakepkg" not in registry


def test_is_sibling_module_decides_by_location_not_prefix(project):
    load_definitions(str(project / "pipe.py"))
    assert is_sibling_module(sys.modules["helpers"], str(project))
    assert is_sibling_module(sys.modules["localpkg"], str(project))
    assert not is_sibling_module(sys.modules["fakepkg"], str(project))  # under proj/, but in a venv
    assert not is_sibling_module(sys.modules["json"], str(project))
    assert not is_sibling_module(pytest, str(project))


def test_site_packages_without_pyvenv_cfg_is_never_a_sibling(tmp_path, monkeypatch):
    """A pipeline directory that *is* a site-packages folder ships nothing by value."""
    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "sitepkg_x1.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(site))
    import importlib

    module = importlib.import_module("sitepkg_x1")
    try:
        assert not is_sibling_module(module, str(site))
    finally:
        sys.modules.pop("sitepkg_x1", None)


def test_dumps_by_value_keeps_the_pipeline_file_name_in_tracebacks(tmp_path):
    """cloudpickle writes "<dynamic-code>"; the pipeline's file and line must survive the trip."""
    path = tmp_path / "pipe_raises.py"
    path.write_text("from daskflow.definitions import asset\n\n\n@asset\ndef broken():\n    raise ValueError('boom')\n")
    defs = load_definitions(str(path))
    function = pickle.loads(dumps_by_value(defs.assets[0])).fn  # the spec, as tasks ship it
    with pytest.raises(ValueError) as info:
        function()
    frames = traceback.extract_tb(info.value.__traceback__)
    assert (frames[-1].filename, frames[-1].lineno) == (str(path), 6)
    plain = pickle.loads(cloudpickle.dumps(defs.assets[0])).fn  # what cloudpickle alone does
    with pytest.raises(ValueError) as info:
        plain()
    assert traceback.extract_tb(info.value.__traceback__)[-1].filename == "<dynamic-code>"


def test_nested_functions_keep_their_file_name_too(tmp_path):
    path = tmp_path / "pipe_nested.py"
    path.write_text("def outer():\n    def inner():\n        raise KeyError('k')\n    return inner\n")
    import importlib.util

    spec = importlib.util.spec_from_file_location("daskflow_pipeline_nested_t", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    inner = pickle.loads(dumps_by_value(module.outer))()
    with pytest.raises(KeyError) as info:
        inner()
    assert traceback.extract_tb(info.value.__traceback__)[-1].filename == str(path)


E2E_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[2])   # the venv's site-packages, as an activated venv would have it
from daskflow.loading import load_definitions
load_definitions(sys.argv[1])     # pandas is first imported here, from inside the pipeline's folder
import cloudpickle, pandas
registry = cloudpickle.list_registry_pickle_by_value()
print("pandas-from", pandas.__file__)
print("by-value", sorted(registry))
from daskflow.execution import materialize
result = materialize(sys.argv[1], progress=False, workers=1)
print("errors", [r.error for r in result.records if r.error])
sys.exit(0 if result.ok and "pandas" not in registry and "helpers_e2e" in registry else 3)
"""


@pytest.mark.slow
def test_pipeline_beside_a_virtualenv_imports_pandas_and_runs_end_to_end(tmp_path, daskflow_home):
    """`import pandas` from ``proj/.venv`` in a pipeline at ``proj/pipe.py``: materialize, embedded cluster.

    pandas is linked into the fake venv's site-packages, so it is imported from a
    path under the pipeline's folder, as in the bug report (which shipped pandas
    by value and failed with ``cannot pickle 'PyCapsule' object``).
    """
    import os
    import pathlib
    import subprocess

    import pandas

    proj = tmp_path / "proj"
    site = proj / ".venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (proj / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (site / "pandas").symlink_to(pathlib.Path(pandas.__file__).parent, target_is_directory=True)
    (proj / "helpers_e2e.py").write_text("def frame(pd):\n    return pd.DataFrame({'x': [1, 2, 3]})\n")
    (proj / "pipe.py").write_text(textwrap.dedent("""
        import pandas as pd
        from daskflow.definitions import asset
        import helpers_e2e


        @asset
        def table():
            return helpers_e2e.frame(pd)


        @asset
        def doubled(table):
            return table.assign(x=table["x"] * 2)
    """))
    env = {**os.environ, "DASKFLOW_HOME": str(daskflow_home)}
    done = subprocess.run([sys.executable, "-c", E2E_SCRIPT, str(proj / "pipe.py"), str(site)], env=env,
                          capture_output=True, text=True, timeout=240, cwd=str(tmp_path), check=False)
    assert f"pandas-from {site}" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
