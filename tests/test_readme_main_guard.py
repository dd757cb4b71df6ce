"""A plain script that calls ``materialize()`` without the ``__main__`` guard gets ONE line saying so."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from daskflow.main_guard import unguarded_line

pytestmark = pytest.mark.timeout(120)


def test_unguarded_line_reads_the_script():
    source = textwrap.dedent("""\
        import daskflow
        daskflow.materialize("p.py")
        if __name__ == "__main__":
            daskflow.materialize("p.py")
        else:
            daskflow.materialize("p.py")
        def main():
            daskflow.materialize("p.py")
        if "__main__" == __name__:
            main()
        """)
    assert [unguarded_line(source, n) for n in (2, 4, 6, 8, 10)] == [True, False, True, False, False]


def run_script(tmp_path, body: str):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    env = {**os.environ, "DASKFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": os.getcwd()}
    env.pop("DASK_DASKFLOW__CLUSTER__FILE", None)
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=100,
                          cwd=tmp_path)


def test_unguarded_script_fails_with_one_line_before_any_worker_starts(tmp_path):
    completed = run_script(tmp_path, """\
        import daskflow

        @daskflow.asset
        def numbers():
            return [1, 2, 3]

        try:
            daskflow.materialize([numbers], progress=False)
        except daskflow.errors.DaskflowError as exc:
            print(f"{type(exc).__name__}: {exc}")
        """)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == (
        f"MainGuardError: {tmp_path / 'script.py'}:8 starts an embedded Dask cluster at import time; its worker "
        "processes re-import the script, so put the call under `if __name__ == \"__main__\":`")
    assert "Nanny failed" not in completed.stderr
