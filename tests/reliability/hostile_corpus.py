"""The hostile-input corpus: pipeline files, trace files and argv lists that must fail cleanly.

Shared by :mod:`test_hostile_cli` (each case through ``click.testing.CliRunner``)
and RELIABILITY.md's counts. Every case is ``(id, argv, allowed exit codes)``;
``{d}`` in an argv is replaced by the directory the files below are written to.
No case may start a cluster: each fails while parsing arguments, loading the
pipeline, planning the selection or validating the trace.
"""

from __future__ import annotations

import json
import pathlib
import textwrap

HEAD = "import daskflow\nfrom daskflow import asset, Definitions, StaticPartitions, DailyPartitions, HourlyPartitions\n"

PIPELINES: dict[str, str] = {
    "ok.py": "@asset\ndef a():\n    return 1\n",
    "syntax.py": "def (:\n",
    "import_error.py": "import nonexistent_pkg_zz_daskflow\n",
    "raises.py": "raise RuntimeError('at import time')\n",
    "exits.py": "import sys\nsys.exit(3)\n",
    "recursion.py": "def f():\n    return f()\nf()\n",
    "no_assets.py": "x = 1\n",
    "empty.py": "",
    "two_defs.py": "@asset\ndef a():\n    return 1\nd1 = Definitions(assets=[a])\nd2 = Definitions(assets=[a])\n",
    "cycle.py": "@asset\ndef a(b):\n    return b\n@asset\ndef b(a):\n    return a\n",
    "unknown_param.py": "@asset\ndef a(missing_upstream):\n    return 1\n",
    "bad_name.py": "@asset(name='bad name!')\ndef a():\n    return 1\n",
    "duplicate.py": "@asset(name='x')\ndef a():\n    return 1\n@asset(name='x')\ndef b():\n    return 2\n",
    "retries_negative.py": "@asset(retries=-1)\ndef a():\n    return 1\n",
    "retries_str.py": "@asset(retries='3')\ndef a():\n    return 1\n",
    "daily_year_9999_end.py": "@asset(partitions=DailyPartitions('9999-12-01', '9999-12-31'))\ndef a():\n    return 1\n",
    "daily_feb_29_2023.py": "@asset(partitions=DailyPartitions('2023-02-29', '2023-03-05'))\ndef a():\n    return 1\n",
    "daily_garbage.py": "@asset(partitions=DailyPartitions('garbage'))\ndef a():\n    return 1\n",
    "daily_month_13.py": "@asset(partitions=DailyPartitions('2024-13-01'))\ndef a():\n    return 1\n",
    "daily_reversed.py": "@asset(partitions=DailyPartitions('2024-02-01', '2024-01-01'))\ndef a():\n    return 1\n",
    "daily_int.py": "@asset(partitions=DailyPartitions(20240101))\ndef a():\n    return 1\n",
    "daily_huge_year.py": "@asset(partitions=DailyPartitions('99999-01-01'))\ndef a():\n    return 1\n",
    "hourly_9999_last.py": "@asset(partitions=HourlyPartitions('9999-12-31T00', '9999-12-31T23'))\ndef a():\n    return 1\n",
    "hourly_century.py": "@asset(partitions=HourlyPartitions('1950-01-01', '2049-12-31T23'))\ndef a():\n    return 1\n",
    "daily_century.py": "@asset(partitions=DailyPartitions('1925-01-01', '2024-12-31'))\ndef a():\n    return 1\n",
    "hourly_millennium.py": "@asset(partitions=HourlyPartitions('1000-01-01', '2999-12-31'))\ndef a():\n    return 1\n",
    "static_300k.py": "@asset(partitions=StaticPartitions([f'k{i}' for i in range(300_000)]))\ndef a():\n    return 1\n",
    "static_empty.py": "@asset(partitions=StaticPartitions([]))\ndef a():\n    return 1\n",
    "static_string.py": "@asset(partitions=StaticPartitions('eu'))\ndef a():\n    return 1\n",
    "static_duplicate.py": "@asset(partitions=StaticPartitions(['eu', 'eu']))\ndef a():\n    return 1\n",
    "static_slash.py": "@asset(partitions=StaticPartitions(['a/b']))\ndef a():\n    return 1\n",
    "static_nonstr.py": "@asset(partitions=StaticPartitions([1, 2]))\ndef a():\n    return 1\n",
    "static_whitespace.py": "@asset(partitions=StaticPartitions([' eu']))\ndef a():\n    return 1\n",
    "partitions_int.py": "@asset(partitions=5)\ndef a():\n    return 1\n",
    "mismatched.py": ("@asset(partitions=StaticPartitions(['a']))\ndef up():\n    return 1\n"
                      "@asset(partitions=StaticPartitions(['b']))\ndef down(up):\n    return up\n"),
    "daily.py": "@asset(partitions=DailyPartitions('2024-01-01', '2024-01-31'))\ndef a():\n    return 1\n",
    "year_one.py": "@asset(partitions=DailyPartitions('0001-01-01', '0001-01-03'))\ndef a():\n    return 1\n",
    "wide.py": ("P = StaticPartitions([f'p{i}' for i in range(5000)])\n"
                + "".join(f"@asset(partitions=P, name='a{i}')\ndef f{i}():\n    return 1\n" for i in range(5))),
}
RAW_FILES: dict[str, bytes] = {
    "nul_bytes.py": b"x = 1\x00\n",
    "latin1.py": "# caf\xe9\nx = '\xe9'\n".encode("latin-1"),
    "not_python.txt": b"hello\n",
}

GOOD_TASK = {"id": "a", "category": "c", "runtime_s": 1.0, "parents": []}


def _trace(**task_fields):
    return {"tasks": [{**GOOD_TASK, **task_fields}]}


TRACES: dict[str, str] = {
    "not_json.json": "{not json",
    "empty.json": "",
    "list.json": "[]",
    "number.json": "42",
    "no_tasks.json": "{}",
    "tasks_empty.json": '{"tasks": []}',
    "tasks_dict.json": '{"tasks": {"a": 1}}',
    "task_not_object.json": '{"tasks": [1, 2]}',
    "missing_id.json": json.dumps({"tasks": [{"category": "c", "runtime_s": 1}]}),
    "id_int.json": json.dumps(_trace(id=5)),
    "category_missing.json": json.dumps({"tasks": [{"id": "a", "runtime_s": 1}]}),
    "runtime_negative.json": json.dumps(_trace(runtime_s=-1)),
    "runtime_string.json": json.dumps(_trace(runtime_s="1")),
    "runtime_bool.json": json.dumps(_trace(runtime_s=True)),
    "runtime_nan.json": '{"tasks": [{"id": "a", "category": "c", "runtime_s": NaN}]}',
    "runtime_inf.json": '{"tasks": [{"id": "a", "category": "c", "runtime_s": 1e400}]}',
    "memory_negative.json": json.dumps(_trace(memory_bytes=-5)),
    "memory_float.json": json.dumps(_trace(memory_bytes=1.5)),
    "cores_zero.json": json.dumps(_trace(cores=0)),
    "parents_string.json": json.dumps(_trace(parents="b")),
    "parents_unknown.json": json.dumps(_trace(parents=["zz"])),
    "parents_repeated.json": json.dumps({"tasks": [GOOD_TASK, {**GOOD_TASK, "id": "b", "parents": ["a", "a"]}]}),
    "parent_after_child.json": json.dumps({"tasks": [{**GOOD_TASK, "id": "b", "parents": ["a"]}, GOOD_TASK]}),
    "duplicate_id.json": json.dumps({"tasks": [GOOD_TASK, GOOD_TASK]}),
    "self_parent.json": json.dumps(_trace(parents=["a"])),
    "name_dict.json": json.dumps({"name": {"x": 1}, "tasks": [GOOD_TASK]}),
    "deep_nesting.json": "[" * 100_000 + "]" * 100_000,
    "deep_object.json": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "all_zero_runtime.json": json.dumps(_trace(runtime_s=0)),
}


def write_corpus(directory: pathlib.Path) -> pathlib.Path:
    """Write every pipeline and trace file of the corpus into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in PIPELINES.items():
        (directory / name).write_text(HEAD + textwrap.dedent(body))
    for name, data in RAW_FILES.items():
        (directory / name).write_bytes(data)
    for name, text in TRACES.items():
        (directory / name).write_text(text)
    (directory / "dir.py").mkdir(exist_ok=True)
    return directory


BAD = (2,)

# -- argv cases ----------------------------------------------------------------
CASES: list[tuple[str, list[str], tuple[int, ...]]] = []


def case(case_id: str, argv: list[str], codes: tuple[int, ...] = BAD) -> None:
    CASES.append((case_id, argv, codes))


# pipeline files that must not load
for _name in ["syntax", "import_error", "raises", "exits", "recursion", "no_assets", "empty", "two_defs", "cycle",
              "unknown_param", "bad_name", "duplicate", "retries_negative", "retries_str", "daily_year_9999_end",
              "daily_feb_29_2023", "daily_garbage", "daily_month_13", "daily_reversed", "daily_int",
              "daily_huge_year", "hourly_9999_last", "static_empty", "static_string", "static_duplicate",
              "static_slash", "static_nonstr", "static_whitespace", "partitions_int", "mismatched",
              "hourly_millennium"]:
    case(f"run-{_name}", ["run", f"{{d}}/{_name}.py"])
    case(f"assets-{_name}", ["assets", f"{{d}}/{_name}.py"])
for _name in ["nul_bytes.py", "latin1.py", "not_python.txt", "dir.py", "missing.py"]:
    case(f"run-{_name}", ["run", f"{{d}}/{_name}"])
case("run-module-missing", ["run", "no_such_module_zz.pipeline"])
case("run-module-os", ["run", "os"])
case("run-empty-pipeline", ["run", ""])
case("run-whitespace-pipeline", ["run", "   "])

# oversized selections: refused by daskflow.execution.max-tasks-per-run before a graph is built
for _name in ["hourly_century", "daily_century", "static_300k", "wide"]:
    case(f"run-too-big-{_name}", ["run", f"{{d}}/{_name}.py"])
case("run-too-big-range", ["run", "{d}/hourly_century.py", "-p", "1950-01-01T00...2049-12-31T23"])

# hostile partition selections on a valid partitioned pipeline
for _i, _sel in enumerate(["", ",,,", "...", "2024-01-05...2024-01-01", "x" * 10_000, "2024-01-01...",
                           "...2024-01-01", "2024-02-30", "2024-1-1", "0001-01-01", "9999-12-31", "2024-01-01T00",
                           "2024-01-01,nope", "\x00", "2024-01-01......2024-01-02", "☃"]):
    case(f"run-partition-{_i}", ["run", "{d}/daily.py", "--partition", _sel])
case("run-select-unknown", ["run", "{d}/ok.py", "--select", "nope"])
case("run-select-garbage", ["run", "{d}/ok.py", "--select", "+++(("])

# CLI arguments
for _value in ["0", "-1", "abc", "99999999", "99999", "1.5", ""]:
    case(f"run-workers-{_value or 'empty'}", ["run", "{d}/ok.py", "--workers", _value])
for _i, _address in enumerate(["", " ", "tcp://", "tcp://:8786", "http://127.0.0.1:8786", "tcp://127.0.0.1:99999",
                               "tcp://127.0.0.1:0", "tcp://127.0.0.1:-1", "tcp://a b:1", "127.0.0.1",
                               "tcp://127.0.0.1:1", "tcp://[::1:1", "::::", "tcp://h:8786/path", "x" * 5000]):
    case(f"run-address-{_i}", ["run", "{d}/ok.py", "--address", _address])
    case(f"explain-address-{_i}", ["explain", "k", "--address", _address])
    case(f"decisions-address-{_i}", ["decisions", "--address", _address])
# without a cluster, explain / decisions answer from the durable audit (issue #13): 0 or one clear line
case("explain-no-address", ["explain", "some-key"], (0, 2))
case("decisions-no-address", ["decisions"], (0, 2))
case("decisions-run-no-address", ["decisions", "--run", "abc"], (0, 2))
case("cluster-status-no-cluster", ["cluster", "status"])
case("cluster-status-dead", ["cluster", "status", "--address", "tcp://127.0.0.1:1"])
case("cluster-down-no-cluster", ["cluster", "down"])
case("cluster-down-grace-negative", ["cluster", "down", "--grace", "-1"])
for _option, _value in [("--workers", "0"), ("--workers", "-1"), ("--workers", "5000"), ("--threads", "0"), ("--scheduler-port", "99999"),
                        ("--scheduler-port", "-1"), ("--scheduler-port", "abc"), ("--dashboard-port", "70000"),
                        ("--memory-limit", "-1"), ("--memory-limit", "abc"), ("--memory-limit", "1000PB"),
                        ("--memory-limit", "nan"), ("--memory-limit", "inf"), ("--memory-limit", "1e30"),
                        ("--tls-cert", "/nonexistent.pem")]:
    case(f"cluster-up{_option}={_value}", ["cluster", "up", _option, _value])
case("cluster-worker-empty-address", ["cluster", "worker", ""])
case("cluster-worker-bad-address", ["cluster", "worker", "http://x:1"])
case("cluster-worker-threads-0", ["cluster", "worker", "tcp://127.0.0.1:8786", "--threads", "0"])
case("cluster-scheduler-port", ["cluster", "scheduler", "--port", "99999"])
for _value in ["-1", "0", "abc", "1e9"]:
    case(f"runs-limit-{_value}", ["runs", "--limit", _value])
case("runs-unknown-id", ["runs", "deadbeef"])
case("runs-empty-home", ["runs"], (0,))
case("lineage-depth-negative", ["lineage", "a", "--depth", "-1"])
case("lineage-unknown", ["lineage", "nope"])
case("lineage-bad-pipeline", ["lineage", "a", "--pipeline", "{d}/syntax.py"])
case("assets-ok-empty-home", ["assets", "{d}/ok.py"], (0,))
case("assets-year-one", ["assets", "{d}/year_one.py"], (0,))
case("config-show", ["config", "show"], (0,))
case("model-rounds-0", ["model", "train", "--rounds", "0"])
case("model-rounds-negative", ["model", "train", "--rounds", "-5"])
case("model-since-garbage", ["model", "train", "--since", "garbage"])
case("model-since-overflow", ["model", "eval", "--since", "99999999999d"])
case("model-show-missing", ["model", "show", "--model", "{d}/no-model"], (1, 2))
case("unknown-command", ["frobnicate"])
case("unknown-option", ["run", "--frob"])

# traces
for _name in TRACES:
    case(f"bench-trace-{_name}", ["bench", "replay", f"{{d}}/{_name}"])
for _spec in ["skewed-bag:x", "skewed-bag:1:x", "skewed-bag:-1", "skewed-bag:1:0", "skewed-bag:1:99999999",
              "memory-pressure:1:2:3", "memory-pressure:", "skewed-bag::", "nonexistent.json"]:
    case(f"bench-spec-{_spec}", ["bench", "replay", _spec])
for _option, _value in [("--workers", "0"), ("--memory-limit", "lots"), ("--target-seconds", "0"),
                        ("--time-scale", "-1"), ("--repeat", "0"), ("--timeout", "0"), ("--mode", "fast")]:
    case(f"bench-{_option}={_value}", ["bench", "replay", "skewed-bag", _option, _value])


def fault_class(case_id: str) -> str:
    """The RELIABILITY.md fault class of a corpus case."""
    if case_id.startswith("bench"):
        return "traces"
    if "too-big" in case_id or "partition" in case_id or any(
            word in case_id for word in ("daily", "hourly", "static", "mismatched", "year")):
        return "partitions"
    if "address" in case_id or case_id.startswith("cluster-status"):
        return "addresses / cluster file"
    if case_id.startswith(("run-", "assets-", "lineage-bad")) and not any(w in case_id for w in ("workers", "select")):
        return "pipeline files"
    return "CLI arguments"


def run_as_subprocesses(checkout: str, timeout_s: float = 25.0, parallel: int = 2) -> dict:
    """Every case as ``python -m daskflow.cli`` with ``PYTHONPATH=checkout``: counts per fault class.

    How RELIABILITY.md's "before" column was measured (against a checkout of
    main). A case that starts a background cluster (an old version accepting a
    bad port) is stopped with ``daskflow cluster down`` in its own home.
    """
    import collections
    import concurrent.futures
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import threading

    base = pathlib.Path(tempfile.mkdtemp(prefix="daskflow-corpus-"))
    files = write_corpus(base / "files")
    stats: dict = collections.defaultdict(collections.Counter)
    bad: list = []
    lock = threading.Lock()

    def one(item) -> None:
        case_id, argv, codes = item
        argv = [a.replace("{d}", str(files)) for a in argv]
        if any("\x00" in a for a in argv):  # argv cannot carry NUL; in-process tests cover it
            return
        home = base / "homes" / str(abs(hash(case_id)))
        home.mkdir(parents=True)
        env = {**os.environ, "PYTHONPATH": checkout, "DASKFLOW_HOME": str(home)}
        proc = subprocess.Popen([sys.executable, "-m", "daskflow.cli", *argv], env=env, cwd=str(home),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                text=True, errors="replace")
        try:
            output, _ = proc.communicate(timeout=timeout_s)
            outcome = ("traceback" if "Traceback" in output else "survived" if proc.returncode in codes
                       else f"exit {proc.returncode}")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            outcome = "hang"
        if (home / "cluster.json").exists():
            subprocess.run([sys.executable, "-m", "daskflow.cli", "cluster", "down", "--grace", "5"], env=env,
                           cwd=str(home), capture_output=True, timeout=120, check=False)
        created = argv[0] in ("runs", "lineage", "assets", "explain", "decisions", "config") and any(home.iterdir())
        with lock:
            counter = stats[fault_class(case_id)]
            counter["tried"] += 1
            counter[outcome] += 1
            counter["created files"] += int(created)
            if outcome != "survived":
                bad.append((case_id, outcome))

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, CASES))
    return {"stats": {k: dict(v) for k, v in stats.items()}, "bad": sorted(bad)}


if __name__ == "__main__":
    # python -m tests.reliability.hostile_corpus            -> the case counts per class (RELIABILITY.md)
    # python -m tests.reliability.hostile_corpus CHECKOUT   -> run every case as a subprocess against CHECKOUT
    import collections
    import json
    import sys

    if len(sys.argv) > 1:
        print(json.dumps(run_as_subprocesses(sys.argv[1]), indent=1))
        sys.exit(0)
    counts = collections.Counter(fault_class(case_id) for case_id, _, _ in CASES)
    for name, n in sorted(counts.items()):
        print(f"{name:28s} {n}")
    print(f"{'total':28s} {len(CASES)}")
