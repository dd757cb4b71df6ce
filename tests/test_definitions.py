"""Pure unit tests for daskflow.definitions and daskflow.loading (no Dask)."""

from __future__ import annotations

import sys
import textwrap

import pytest

from daskflow.definitions import (
    AssetCheckSpec,
    AssetContext,
    AssetSpec,
    CheckResult,
    Definitions,
    asset,
    asset_check,
    check_spec_of,
    io_for_value,
    spec_of,
    to_check_result,
)
from daskflow.errors import AssetDefinitionError, PartitionError, PipelineLoadError
from daskflow.loading import definitions_from_module, load_definitions, module_name_for_file
from daskflow.partitions import DailyPartitions, StaticPartitions

pytestmark = pytest.mark.timeout(30)


# -- @asset ---------------------------------------------------------------------------

def test_bare_asset_records_spec_and_returns_the_same_function():
    def orders():
        """All orders."""
        return [1, 2]

    decorated = asset(orders)
    assert decorated is orders
    assert orders() == [1, 2]
    spec = orders.__daskflow_asset__
    assert isinstance(spec, AssetSpec)
    assert (spec.key, spec.name, spec.group, spec.ins, spec.io) == ("orders", "orders", "default", (), "auto")
    assert spec.description == "All orders."
    assert spec.fn is orders


def test_asset_with_arguments_records_every_option():
    parts = DailyPartitions("2024-01-01", "2024-01-03")

    @asset(group="sales", description="d", metadata={"owner": "ana"}, code_version="2",
           tags={"pool": "gpu"}, io="parquet", partitions=parts, retries=3)
    def daily(raw_orders, context):
        return raw_orders

    spec = spec_of(daily)
    assert spec.key == "sales/daily"
    assert spec.group == "sales"
    assert spec.ins == (("raw_orders", "raw_orders"),)
    assert spec.context_parameter == "context"
    assert (spec.description, spec.metadata, spec.code_version) == ("d", {"owner": "ana"}, "2")
    assert (spec.tags, spec.io, spec.partitions, spec.retries) == ({"pool": "gpu"}, "parquet", parts, 3)


def test_spec_is_frozen():
    @asset
    def a():
        return 1

    with pytest.raises(AttributeError):
        a.__daskflow_asset__.key = "b"


@pytest.mark.parametrize(
    "options, expected_key",
    [
        ({}, "revenue"),
        ({"group": "finance"}, "finance/revenue"),
        ({"key_prefix": "warehouse"}, "warehouse/revenue"),
        ({"key_prefix": ["lake", "gold"], "group": "finance"}, "lake/gold/revenue"),
        ({"name": "rev"}, "rev"),
        ({"key": "finance/monthly_revenue"}, "finance/monthly_revenue"),
    ],
)
def test_asset_key_string_form(options, expected_key):
    def revenue():
        return 0

    assert asset(**options)(revenue).__daskflow_asset__.key == expected_key


def test_key_option_sets_the_name_to_its_last_part():
    @asset(key="finance/monthly_revenue")
    def anything():
        return 0

    assert spec_of(anything).name == "monthly_revenue"


def test_ins_maps_a_parameter_to_a_full_key_and_deps_accepts_functions():
    @asset(group="raw")
    def orders():
        return []

    @asset(ins={"rows": "raw/orders"}, deps=[orders, "setup_tables"])
    def report(rows):
        return rows

    spec = spec_of(report)
    assert spec.ins == (("rows", "raw/orders"),)
    assert spec.deps == ("raw/orders", "setup_tables")


def test_ins_for_a_missing_parameter_names_the_asset_and_the_real_parameters():
    with pytest.raises(AssetDefinitionError) as info:
        @asset(ins={"orderz": "raw/orders"})
        def report(orders):
            return orders

    message = str(info.value)
    assert "'report'" in message and "['orderz']" in message and "['orders']" in message
    assert "Fix:" in message


def test_unknown_io_is_rejected_with_the_valid_choices():
    with pytest.raises(AssetDefinitionError, match=r"asset 'a'.*io='pickle'.*auto, parquet, json.*Fix"):
        @asset(io="pickle")
        def a():
            return 1


def test_schema_must_be_a_pyarrow_schema_and_not_json():
    import pyarrow as pa

    with pytest.raises(AssetDefinitionError, match=r"asset 'a'.*pyarrow.Schema, got dict.*Fix"):
        @asset(schema={"id": "int"})
        def a():
            return 1

    with pytest.raises(AssetDefinitionError, match=r"asset 'b'.*io='json'.*Fix"):
        @asset(schema=pa.schema([("id", pa.int64())]), io="json")
        def b():
            return 1

    schema = pa.schema([("id", pa.int64())])

    @asset(schema=schema)
    def c():
        return 1

    assert spec_of(c).schema is schema


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"retries": -1}, "retries must be an int >= 0"),
        ({"retries": True}, "retries must be an int >= 0"),
        ({"tags": {"pool": 1}}, "tags must map str to str"),
        ({"group": "bad group"}, "group 'bad group' is not a valid name"),
        ({"code_version": 2}, "code_version must be a string"),
        ({"name": "9lives"}, "name '9lives' is not a valid name"),
    ],
)
def test_invalid_options_are_rejected_naming_the_function(options, fragment):
    def my_asset():
        return 1

    with pytest.raises(AssetDefinitionError) as info:
        asset(**options)(my_asset)
    assert fragment in str(info.value)
    assert "my_asset" in str(info.value)
    assert "Fix" in str(info.value)


def test_star_args_and_positional_only_parameters_are_rejected():
    with pytest.raises(AssetDefinitionError, match=r"\*args.*not allowed.*Fix"):
        @asset
        def a(*args):
            return 1

    with pytest.raises(AssetDefinitionError, match="positional-only.*Fix"):
        @asset
        def b(x, /):
            return x


def test_partitions_list_becomes_static_and_bad_partitions_raise():
    @asset(partitions=["eu", "us"])
    def regional():
        return 1

    assert spec_of(regional).partitions == StaticPartitions(["eu", "us"])
    with pytest.raises(PartitionError, match="asset 'x'"):
        @asset(partitions="eu")
        def x():
            return 1


def test_asset_on_a_class_is_rejected():
    with pytest.raises(AssetDefinitionError, match="decorates functions"):
        asset(type("Thing", (), {}))


def test_io_for_value_auto_uses_parquet_for_tables_and_json_otherwise():
    import pandas as pd
    import pyarrow as pa

    auto = spec_of(asset(lambda: 0, name="auto_asset"))
    assert io_for_value(auto, pa.table({"a": [1]})) == "parquet"
    assert io_for_value(auto, pd.DataFrame({"a": [1]})) == "parquet"
    assert io_for_value(auto, {"a": 1}) == "json"
    assert io_for_value(auto, 3.5) == "json"
    forced = spec_of(asset(lambda: 0, name="forced", io="json"))
    assert io_for_value(forced, pa.table({"a": [1]})) == "json"
    with_schema = spec_of(asset(lambda: 0, name="typed", schema=pa.schema([("a", pa.int64())])))
    assert io_for_value(with_schema, {"a": [1]}) == "parquet"


# -- @asset_check -------------------------------------------------------------------------

def test_asset_check_records_a_spec_and_keeps_the_function():
    @asset(group="sales")
    def orders():
        return [1]

    @asset_check(asset=orders, blocking=False, name="has_rows")
    def check_orders(value, context):
        return len(value) > 0

    check = check_spec_of(check_orders)
    assert isinstance(check, AssetCheckSpec)
    assert (check.name, check.asset, check.blocking) == ("has_rows", "sales/orders", False)
    assert (check.value_parameter, check.context_parameter) == ("value", "context")
    assert check_orders([1], None) is True


def test_check_needs_exactly_one_value_parameter():
    with pytest.raises(AssetDefinitionError, match=r"exactly one value parameter.*'orders'.*\['a', 'b'\]"):
        @asset_check(asset="orders")
        def bad(a, b):
            return True


def test_check_results_normalize_from_bool_and_reject_other_types():
    import numpy as np

    assert to_check_result(True) == CheckResult(True)
    assert to_check_result(np.bool_(False)).passed is False
    result = CheckResult(False, "3 nulls", {"nulls": 3})
    assert to_check_result(result) is result

    @asset_check(asset="orders")
    def returns_text(orders):
        return "ok"

    with pytest.raises(AssetDefinitionError) as info:
        to_check_result("ok", check_spec_of(returns_text))
    assert "'returns_text'" in str(info.value) and "'orders'" in str(info.value)
    assert "expected a bool or CheckResult" in str(info.value)


def test_asset_context_is_plain_data():
    context = AssetContext(asset_key="a", partition="2024-01-01", run_id="r1")
    assert (context.asset_key, context.partition, context.attempt) == ("a", "2024-01-01", 0)


# -- Definitions ----------------------------------------------------------------------------

def test_definitions_collects_assets_and_checks_and_drops_repeats():
    @asset
    def a():
        return 1

    @asset_check(asset=a)
    def a_positive(a):
        return a > 0

    defs = Definitions(assets=[a, a, a_positive])
    assert [s.key for s in defs.assets] == ["a"]
    assert [c.name for c in defs.checks] == ["a_positive"]


def test_definitions_rejects_undecorated_objects_with_fix():
    def plain():
        return 1

    with pytest.raises(AssetDefinitionError, match=r"neither an @asset nor an @asset_check.*Fix: decorate"):
        Definitions(assets=[plain])


# -- loading -------------------------------------------------------------------------------

PIPELINE = """
from daskflow.definitions import asset, asset_check

@asset
def raw():
    return [1, 2, 3]

@asset(group="metrics")
def total(raw):
    return sum(raw)

@asset_check(asset=total)
def total_positive(total):
    return total > 0
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_load_file_discovers_decorated_functions(tmp_path):
    defs = load_definitions(write(tmp_path, "pipe_discover.py", PIPELINE))
    assert [s.key for s in defs.assets] == ["raw", "metrics/total"]
    assert [c.name for c in defs.checks] == ["total_positive"]
    assert defs.assets[0].fn.__module__ == module_name_for_file("pipe_discover.py")


def test_load_file_prefers_the_explicit_defs_object(tmp_path):
    text = PIPELINE + "\nfrom daskflow.definitions import Definitions\ndefs = Definitions(assets=[raw])\n"
    defs = load_definitions(write(tmp_path, "pipe_explicit.py", text))
    assert [s.key for s in defs.assets] == ["raw"]


def test_load_file_uses_a_single_definitions_under_any_name(tmp_path):
    text = PIPELINE + "\nfrom daskflow.definitions import Definitions\npipeline = Definitions(assets=[raw, total])\n"
    assert len(load_definitions(write(tmp_path, "pipe_single.py", text)).assets) == 2


def test_several_definitions_objects_ask_for_defs(tmp_path):
    text = PIPELINE + "\nfrom daskflow.definitions import Definitions\nd1 = Definitions()\nd2 = Definitions()\n"
    with pytest.raises(PipelineLoadError, match=r"several Definitions objects \(d1, d2\).*name the one to use 'defs'"):
        load_definitions(write(tmp_path, "pipe_several.py", text))


def test_load_module_object_and_module_name(tmp_path, monkeypatch):
    write(tmp_path, "pipe_module_f1.py", PIPELINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("pipe_module_f1")
    try:
        assert [s.key for s in load_definitions(module).assets] == ["raw", "metrics/total"]
        assert [s.key for s in load_definitions("pipe_module_f1").assets] == ["raw", "metrics/total"]
    finally:
        sys.modules.pop("pipe_module_f1", None)


def test_definitions_object_passes_through():
    defs = Definitions()
    assert load_definitions(defs) is defs


def test_syntax_error_is_one_line_with_file_line_and_fix(tmp_path):
    path = write(tmp_path, "pipe_syntax.py", "from daskflow import definitions\nx = = 1\n")
    with pytest.raises(PipelineLoadError) as info:
        load_definitions(path)
    message = str(info.value)
    assert "\n" not in message
    assert f"{path}:2" in message and "SyntaxError" in message and "Fix:" in message
    assert module_name_for_file(path) not in sys.modules


def test_exception_while_importing_names_file_line_and_error(tmp_path):
    path = write(tmp_path, "pipe_raises.py", "import os\n\nraise RuntimeError('no database')\n")
    with pytest.raises(PipelineLoadError) as info:
        load_definitions(path)
    message = str(info.value)
    assert f"{path}:3" in message and "RuntimeError: no database" in message and "Fix:" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_missing_file_names_path_and_working_directory(tmp_path):
    with pytest.raises(PipelineLoadError, match=r"'missing/pipe.py' does not exist \(working directory .*Fix"):
        load_definitions("missing/pipe.py")


def test_directory_and_non_python_file_are_rejected(tmp_path):
    with pytest.raises(PipelineLoadError, match="is a directory"):
        load_definitions(str(tmp_path) + "/")
    with pytest.raises(PipelineLoadError, match="is not a .py file"):
        load_definitions(write(tmp_path, "pipe.txt", "x = 1"))


def test_unknown_module_name_suggests_a_path_or_pythonpath():
    with pytest.raises(PipelineLoadError, match=r"'no_such_pkg_f1.pipe' was not found.*Fix: pass a .py file path"):
        load_definitions("no_such_pkg_f1.pipe")


def test_module_without_assets_explains_how_to_declare_them(tmp_path):
    with pytest.raises(PipelineLoadError, match=r"defines no assets.*@daskflow.asset.*defs = "):
        load_definitions(write(tmp_path, "pipe_empty.py", "x = 1\n"))


def test_module_object_without_assets_is_an_error():
    import json

    with pytest.raises(PipelineLoadError, match="defines no assets"):
        definitions_from_module(json)


def test_functions_of_a_loaded_file_travel_by_value_through_dask_pickling(tmp_path):
    """Workers cannot import ``daskflow_pipeline_<stem>``: Dask must ship the functions by value.

    Dask tries plain pickle first and falls back to cloudpickle when that fails;
    plain pickle must fail (it would pickle a reference to an unimportable module).
    """
    import pickle

    from distributed.protocol import pickle as dask_pickle

    defs = load_definitions(write(tmp_path, "pipe_pickle_f1.py", PIPELINE))
    total = defs.assets[1].fn
    assert module_name_for_file("pipe_pickle_f1.py") not in sys.modules
    with pytest.raises(pickle.PicklingError):
        pickle.dumps(total)
    task = dask_pickle.loads(dask_pickle.dumps((total, [1, 2])))
    assert task[0](task[1]) == 3
    assert task[0].__daskflow_asset__.key == "metrics/total"


def test_names_follow_identifier_rules_so_parameters_can_name_assets():
    with pytest.raises(AssetDefinitionError, match="'raw-orders' is not a valid name.*Python identifier"):
        asset(name="raw-orders")(lambda: 1)
    with pytest.raises(AssetDefinitionError, match="key part 'my lake'"):
        asset(key="my lake/orders")(lambda: 1)


def test_code_version_of_prefers_declared_and_else_fingerprints_code(tmp_path):
    from daskflow.definitions import code_version_of

    first = load_definitions(write(tmp_path, "pipe_code_v1.py", PIPELINE)).assets[1]
    same = load_definitions(write(tmp_path, "pipe_code_v1.py", PIPELINE)).assets[1]
    edited_text = PIPELINE.replace("sum(raw)", "sum(raw) + 1")
    edited = load_definitions(write(tmp_path, "pipe_code_v1.py", edited_text)).assets[1]
    assert code_version_of(first) == code_version_of(same)
    assert code_version_of(first).startswith("code:")
    assert code_version_of(first) != code_version_of(edited)
    assert code_version_of(spec_of(asset(name="versioned", code_version="v3")(lambda: 1))) == "v3"


def test_a_bare_package_name_is_imported_not_read_as_a_directory(tmp_path, monkeypatch):
    package = tmp_path / "pipe_pkg_f1"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(PIPELINE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert [s.key for s in load_definitions("pipe_pkg_f1").assets] == ["raw", "metrics/total"]
    finally:
        sys.modules.pop("pipe_pkg_f1", None)


def test_name_that_contradicts_key_is_rejected():
    with pytest.raises(AssetDefinitionError, match="name='a' contradicts key='g/b'.*Fix: pass only key="):
        asset(name="a", key="g/b")(lambda: 1)


def test_code_fingerprint_ignores_comments_and_position_but_not_constants(tmp_path):
    from daskflow.definitions import code_version_of

    base = "from daskflow.definitions import asset\n@asset\ndef a():\n    return {'x', 'y'}\n"
    moved = ("from daskflow.definitions import asset\n\n\n# a comment\n"
             "@asset\ndef a():\n    # why\n    return {'x', 'y'}\n")
    changed = base.replace("'y'", "'z'")
    versions = [code_version_of(load_definitions(write(tmp_path, "pipe_fp.py", text)).assets[0])
                for text in (base, moved, changed)]
    assert versions[0] == versions[1] != versions[2]


def test_callable_without_a_name_needs_name_option():
    import functools

    def scaled(factor):
        return factor

    partial = functools.partial(scaled, factor=2)
    with pytest.raises(AssetDefinitionError, match=r"name None is not a valid name.*pass name="):
        asset(partial)
    assert asset(name="doubled")(partial).__daskflow_asset__.key == "doubled"


def test_sibling_helper_modules_of_a_pipeline_file_are_shipped_by_value(tmp_path):
    import cloudpickle

    write(tmp_path, "pipe_helpers_f1.py", "def double(x):\n    return 2 * x\n")
    text = ("from daskflow.definitions import asset\nfrom pipe_helpers_f1 import double\n\n"
            "@asset\ndef a():\n    return double(2)\n")
    try:
        load_definitions(write(tmp_path, "pipe_uses_helpers.py", text))
        assert "pipe_helpers_f1" in cloudpickle.list_registry_pickle_by_value()
    finally:
        if "pipe_helpers_f1" in sys.modules:
            cloudpickle.unregister_pickle_by_value(sys.modules.pop("pipe_helpers_f1"))


def test_async_and_generator_functions_are_rejected():
    with pytest.raises(AssetDefinitionError, match="async functions and generators are not supported.*Fix"):
        @asset
        async def fetch():
            return 1

    with pytest.raises(AssetDefinitionError, match="rows: async functions and generators are not supported"):
        @asset
        def rows():
            yield 1


@pytest.mark.parametrize("option", ["metadata", "tags", "ins"])
def test_mapping_options_must_be_dicts(option):
    with pytest.raises(AssetDefinitionError, match=rf"asset 'a'.*{option} must be a dict, got list"):
        asset(name="a", **{option: ["x"]})(lambda: 1)


def test_check_blocking_must_be_a_bool_and_the_fix_explains_both_modes():
    with pytest.raises(AssetDefinitionError, match="blocking must be True or False.*skips downstream"):
        asset_check(asset="orders", name="c", blocking="yes")(lambda orders: True)
