"""daskflow benchmarks.

Design note: everything performance-related lives here and is re-measurable.

* ``bench_*.py`` — airspeed velocity (asv) suites; ``asv run --python=same --quick``
  runs them in the current environment (see ``asv.conf.json`` and BENCHMARKS.md).
* ``peers/`` — the side-by-side comparison with Dagster and plain Dask
  (``python -m benchmarks.peers.compare``).
* The other scripts (``overhead.py``, ``accuracy.py``, ``replay_all.py``,
  ``steering_*.py``) belong to the issues that make those claims.

asv imports every module under this package while discovering benchmarks, so
modules here must import without side effects and without optional extras
(import those lazily). The helpers below are shared by the suites: a suite whose
dependency is missing raises ``NotImplementedError`` from ``setup``, which asv
reports as "skipped" instead of failing.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import shutil
import tempfile
from types import ModuleType

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def require(module_name: str, *attributes: str) -> ModuleType:
    """Import ``module_name`` (and check ``attributes`` exist) or raise ``NotImplementedError``.

    asv treats ``NotImplementedError`` raised in ``setup`` as "skip this
    benchmark", so a suite for a part that is not built (or not installed) is
    skipped cleanly rather than reported as failed.
    """
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NotImplementedError(f"{module_name} is not importable: {exc}") from exc
    missing = [name for name in attributes if not hasattr(module, name)]
    if missing:
        raise NotImplementedError(f"{module_name} lacks {', '.join(missing)}")
    return module


class IsolatedHome:
    """A throw-away daskflow home (catalog, storage, history, models) for one benchmark.

    Sets ``DASKFLOW_HOME`` (inherited by worker processes started afterwards) and
    ``daskflow.home`` in dask.config; :meth:`close` restores both and deletes the
    directory.
    """

    def __init__(self, prefix: str = "daskflow-bench-") -> None:
        import dask.config

        self.path = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
        self._previous_env = os.environ.get("DASKFLOW_HOME")
        self._previous_config = dask.config.get("daskflow.home", default=None)
        os.environ["DASKFLOW_HOME"] = str(self.path)
        dask.config.set({"daskflow.home": str(self.path)})

    def close(self) -> None:
        import dask.config

        if self._previous_env is None:
            os.environ.pop("DASKFLOW_HOME", None)
        else:
            os.environ["DASKFLOW_HOME"] = self._previous_env
        dask.config.set({"daskflow.home": self._previous_config})
        shutil.rmtree(self.path, ignore_errors=True)


def workloads_dir() -> pathlib.Path:
    """The shared traces: ``$DASKFLOW_WORKLOADS``, else ``../shared/workloads`` beside the repo.

    Raises ``NotImplementedError`` (asv: skip) when neither exists.
    """
    candidates = []
    if os.environ.get("DASKFLOW_WORKLOADS"):
        candidates.append(pathlib.Path(os.environ["DASKFLOW_WORKLOADS"]))
    candidates.append(REPO_ROOT.parent / "shared" / "workloads")
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.json")):
            return candidate
    raise NotImplementedError(
        "workload traces not found; set DASKFLOW_WORKLOADS to the directory of trace JSON files"
    )


def run_in_subprocess(module_name: str, function_name: str, timeout_s: float = 900, **kwargs) -> object:
    """``module.function(**kwargs)`` in a fresh Python process; returns its JSON-able result.

    Why: asv runs ``setup_cache`` in a process whose ``__main__`` is asv's own
    runner and whose ``benchmarks`` package is importable only through asv's
    import hook, and worker processes that ``LocalCluster`` spawns from there
    never come up. A plain child process (``benchmarks`` reachable through a
    symlink on ``PYTHONPATH``; the daskflow under test still comes from the
    environment, not from the working tree) behaves like a user's script.
    """
    import json
    import subprocess
    import sys

    link_dir = pathlib.Path(tempfile.mkdtemp(prefix="daskflow-bench-path-"))
    try:
        (link_dir / "benchmarks").symlink_to(pathlib.Path(__file__).resolve().parent, target_is_directory=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(link_dir)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        code = ("import json, sys\n"
                f"from {module_name} import {function_name} as target\n"
                "result = target(**json.loads(sys.argv[1]))\n"
                "print('\\n@@RESULT@@' + json.dumps(result))\n")
        completed = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], cwd=link_dir, env=env,
                                   capture_output=True, text=True, timeout=timeout_s, check=False)
    finally:
        shutil.rmtree(link_dir, ignore_errors=True)
    marker = completed.stdout.rfind("@@RESULT@@")
    if completed.returncode != 0 or marker < 0:
        raise RuntimeError(f"{module_name}.{function_name} failed in a subprocess (exit {completed.returncode}):\n"
                           f"{completed.stderr[-4000:]}")
    return json.loads(completed.stdout[marker + len("@@RESULT@@"):])
