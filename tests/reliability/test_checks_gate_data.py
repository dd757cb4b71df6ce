"""Checks gate data (#16.1): a materialization whose blocking check failed is never served.

Pipeline (the check reads a flag file, so a test can make the data "bad" and then "good")::

    numbers --(blocking check numbers_ok)--> doubled
    numbers --(warning check numbers_small)

The four scenarios of the issue: ``assets`` shows ``check-failed``,
``only_stale`` re-runs the asset and its check, a downstream-only selection
refuses to read it (one line naming the check and the fix), and the
partitioned case gates only the failed partition.
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from daskflow.catalog import Catalog
from daskflow.cli import main
from daskflow.errors import SelectionError
from daskflow.execution import materialize

from .conftest import write_pipeline

pytestmark = pytest.mark.timeout(180)

PIPELINE = '''
import os
from daskflow.definitions import asset, asset_check, CheckResult
from daskflow.partitions import StaticPartitions

BAD = os.path.join("{markers}", "bad")


@asset(code_version="1", io="json")
def numbers():
    return [1, 2, 3]


@asset_check(asset=numbers, blocking=True)
def numbers_ok(numbers):
    return CheckResult(passed=not os.path.exists(BAD), message="bad flag set" if os.path.exists(BAD) else "ok")


@asset_check(asset=numbers, blocking=False)
def numbers_small(numbers):
    return CheckResult(passed=False, message="always warns")


@asset(code_version="1", io="json")
def doubled(numbers):
    open(os.path.join("{markers}", "doubled-ran"), "a").write("x")
    return [2 * n for n in numbers]


@asset(code_version="1", io="json", partitions=StaticPartitions(["eu", "us"]))
def regional(context):
    return [context.partition]


@asset_check(asset=regional, blocking=True)
def regional_ok(regional, context):
    bad = os.path.exists(os.path.join("{markers}", "bad-" + context.partition))
    return CheckResult(passed=not bad, message="bad partition" if bad else "ok")


@asset(code_version="1", io="json", partitions=StaticPartitions(["eu", "us"]))
def regional_copy(regional):
    return regional
'''


def _flag(tmp_path, name: str, on: bool) -> None:
    path = tmp_path / "markers" / name
    if on:
        path.write_text("1")
    elif path.exists():
        path.unlink()


def _assets(path: str) -> dict[str, dict]:
    result = CliRunner().invoke(main, ["assets", path, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {row["asset"]: row for row in json.loads(result.stdout)["assets"]}


def test_failed_blocking_check_is_shown_check_failed_and_only_stale_reruns_it(client, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, PIPELINE)
    _flag(tmp_path, "bad", True)
    first = materialize(path, selection="numbers,doubled", client=client, progress=False)
    assert not first.ok and first.record("doubled").status == "skipped"
    failed = Catalog().latest_materialization("numbers")
    assert (failed.check_status, failed.failed_check, failed.usable) == ("failed", "numbers_ok", False)

    rows = _assets(path)  # scenario 1: `daskflow assets` shows it check-failed, not fresh
    assert rows["numbers"]["status"] == "check-failed"
    assert {(f["check"], f["blocking"]) for f in rows["numbers"]["failed_checks"]} == {
        ("numbers_ok", True), ("numbers_small", False)}
    human = CliRunner().invoke(main, ["assets", path], catch_exceptions=False).stdout
    assert "check-failed (warning: numbers_small)" in human

    _flag(tmp_path, "bad", False)  # scenario 2: only_stale re-runs it AND its check, then downstream
    again = materialize(path, selection="numbers,doubled", only_stale=True, client=client, progress=False)
    assert again.ok, again.to_dict()
    assert again.record("numbers").status == "success" and again.record("doubled").status == "success"
    assert {c.check: c.status for c in again.checks if c.asset == "numbers"} == {
        "numbers_ok": "passed", "numbers_small": "failed"}
    good = Catalog().latest_materialization("numbers")
    assert good.id != failed.id and good.check_status == "passed" and good.usable
    assert _assets(path)["numbers"]["status"] == "fresh"  # a warning does not gate
    up_to_date = materialize(path, selection="numbers,doubled", only_stale=True, client=client, progress=False)
    assert {r.status for r in up_to_date.records} == {"stale-skipped"}


def test_downstream_only_selection_refuses_failed_check_data(client, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, PIPELINE)
    _flag(tmp_path, "bad", True)
    materialize(path, selection="numbers", client=client, progress=False)
    with pytest.raises(SelectionError) as info:  # scenario 3: not built from the bad data
        materialize(path, selection="doubled", client=client, progress=False)
    message = str(info.value)
    assert "numbers_ok" in message and "re-materialize" in message and "\n" not in message
    assert not (tmp_path / "markers" / "doubled-ran").exists()
    cli = CliRunner().invoke(main, ["run", path, "--select", "doubled"], catch_exceptions=False)
    assert cli.exit_code == 2 and cli.stderr.count("\n") == 1 and "numbers_ok" in cli.stderr
    assert Catalog().materializations(asset_key="doubled") == []


def test_partitioned_failed_check_gates_only_that_partition(client, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, PIPELINE)
    _flag(tmp_path, "bad-us", True)
    first = materialize(path, selection="regional,regional_copy", client=client, progress=False)
    assert first.record("regional_copy", "eu").status == "success"
    assert first.record("regional_copy", "us").status == "skipped"
    latest = Catalog().latest_materializations(["regional"])
    assert latest[("regional", "eu")].usable and not latest[("regional", "us")].usable
    with pytest.raises(SelectionError, match=r"regional\[us\].*regional_ok"):
        materialize(path, selection="regional_copy", client=client, progress=False)
    eu_only = materialize(path, selection="regional_copy", partitions="eu", client=client, progress=False)
    assert eu_only.ok
    _flag(tmp_path, "bad-us", False)
    fixed = materialize(path, selection="regional,regional_copy", only_stale=True, client=client, progress=False)
    assert fixed.ok
    statuses = {(r.asset, r.partition): r.status for r in fixed.records}
    assert statuses[("regional", "us")] == "success" and statuses[("regional", "eu")] == "stale-skipped"
    assert statuses[("regional_copy", "us")] == "success"
    stored = Catalog().latest_materialization("regional_copy", "us")
    assert json.loads(open(stored.path).read()) == ["us"] and os.path.exists(stored.path)


def test_a_check_that_never_finished_leaves_the_data_unusable(daskflow_home):
    catalog = Catalog()
    run = catalog.start_run(pipeline="p")
    mid = catalog.record_materialization(run.run_id, "a", {"path": "/x/a.json", "format": "json"},
                                         code_version="1", check_status="pending")
    assert not catalog.get_materialization(mid).usable
    catalog.set_check_status(mid, "passed")
    assert catalog.get_materialization(mid).usable
