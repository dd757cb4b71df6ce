"""Stock semantics check: distributed's own scheduler tests with and without the daskflow plugins.

Runs the named test modules from a dask/distributed source tree twice — once
stock, once with ``distributed.scheduler.preload: [scheduler_plugins.preload]``
(set through ``DASK_DISTRIBUTED__SCHEDULER__PRELOAD``, which every scheduler
``gen_cluster`` starts reads) — each pass to junit-xml, then diffs the outcomes
and lists the tests that fail only with the plugins.

Not run in CI: it needs distributed's test sources, which the sdist does not
ship and CI cannot fetch. Get them from a checkout matching the installed
version, e.g.::

    git clone --depth 1 --branch 2026.8.0 https://github.com/dask/distributed /tmp/distributed
    python -m benchmarks.stock_semantics --source /tmp/distributed --out /tmp/stock

``--source`` is the directory that holds ``distributed/tests`` (and the
repository's top-level ``conftest.py``, which defines ``--runslow`` etc).
Exit status: 0 when no test fails only with the plugins, 1 otherwise, 2 on
bad arguments. CPU-heavy: several minutes per module on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

DEFAULT_MODULES = (
    "test_priorities", "test_resources", "test_reschedule", "test_steal", "test_scheduler", "test_worker_memory",
)
PRELOAD = '["scheduler_plugins.preload"]'
SOURCE_ENV = "DASKFLOW_STOCK_SEMANTICS_SOURCE"
REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config) -> None:
    """As a pytest plugin (``-p benchmarks.stock_semantics``): TLS test certificates from ``--source``.

    The installed distributed has no ``tests/`` folder, and ``utils_test.get_cert``
    looks for its ``*.pem`` files there; point it at the source tree instead.
    """
    source = os.environ.get(SOURCE_ENV)
    if not source:
        return
    from distributed import utils_test

    def get_cert(filename: str) -> str:
        path = os.path.join(source, "distributed", "tests", filename)
        assert os.path.exists(path), path
        return path

    utils_test.get_cert = get_cert


def outcomes(junit: Path) -> dict[str, str]:
    """``{test id: passed|failed|error|skipped}`` from one junit-xml file (missing file: empty)."""
    if not junit.exists():
        return {}
    result: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                break
        result[name] = outcome
    return result


def run_pass(source: Path, module: str, out: Path, label: str, preload: bool, timeout_s: int, extra: list[str]) -> Path:
    """One pytest pass over one module; returns its junit-xml path."""
    junit = out / f"{module}.{label}.xml"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("DASK_DISTRIBUTED__SCHEDULER__PRELOAD", None)
    env[SOURCE_ENV] = str(source.resolve())
    if preload:
        env["DASK_DISTRIBUTED__SCHEDULER__PRELOAD"] = PRELOAD
    command = [
        sys.executable, "-m", "pytest", f"distributed/tests/{module}.py", "-q", "-p", "no:cacheprovider", "-p", "benchmarks.stock_semantics",
        f"--junitxml={junit}", f"--timeout={timeout_s}", "-o", "junit_family=xunit1", *extra,
    ]
    with open(out / f"{module}.{label}.log", "w") as log:
        subprocess.run(command, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    return junit


def compare(without: dict[str, str], with_: dict[str, str]) -> dict:
    ok = ("passed", "skipped")
    only_with = sorted(t for t, o in with_.items() if o not in ok and without.get(t) in ok)
    only_without = sorted(t for t, o in without.items() if o not in ok and with_.get(t) in ok)
    return {
        "tests": len(set(without) | set(with_)),
        "passed_without": sum(o == "passed" for o in without.values()),
        "passed_with": sum(o == "passed" for o in with_.values()),
        "fail_only_with_plugins": only_with,
        "fail_only_without_plugins": only_without,
        "missing_with": sorted(set(without) - set(with_)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="directory holding distributed/tests")
    parser.add_argument("--modules", nargs="*", default=list(DEFAULT_MODULES))
    parser.add_argument("--out", type=Path, default=Path("stock-semantics"))
    parser.add_argument("--timeout", type=int, default=120, help="per-test timeout in seconds (pytest-timeout)")
    parser.add_argument("--passes", choices=("both", "with", "without", "compare"), default="both",
                        help="which passes to run (compare: only diff the junit files already in --out)")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, one string")
    args = parser.parse_args(argv)
    tests_dir = args.source / "distributed" / "tests"
    if not tests_dir.is_dir():
        print(f"error: {tests_dir} does not exist; pass --source with a dask/distributed checkout", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    extra = args.pytest_args.split()
    summary = {}
    failed = False
    for module in args.modules:
        if not (tests_dir / f"{module}.py").exists():
            print(f"error: {tests_dir / module}.py does not exist", file=sys.stderr)
            return 2
        paths = {}
        for label, preload in (("without", False), ("with", True)):
            if args.passes in (label, "both"):
                paths[label] = run_pass(args.source, module, args.out, label, preload, args.timeout, extra)
            else:
                paths[label] = args.out / f"{module}.{label}.xml"
        result = compare(outcomes(paths["without"]), outcomes(paths["with"]))
        summary[module] = result
        failed = failed or bool(result["fail_only_with_plugins"])
        print(f"{module}: {result['tests']} tests, passed without {result['passed_without']}, "
              f"with {result['passed_with']}, fail only with plugins: {len(result['fail_only_with_plugins'])}")
        for test in result["fail_only_with_plugins"]:
            print(f"  only with plugins: {test}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
