"""Pure unit tests for daskflow.graph: building, errors, selection, partitions, checks."""

from __future__ import annotations

import pytest

from daskflow.definitions import Definitions, asset, asset_check
from daskflow.errors import (
    AssetCycleError,
    AssetDefinitionError,
    DuplicateAssetError,
    PartitionError,
    SelectionError,
    UnknownAssetError,
)
from daskflow.graph import AssetGraph, build_asset_graph, resolve_partitions
from daskflow.partitions import DailyPartitions, StaticPartitions

pytestmark = pytest.mark.timeout(30)


def diamond():
    """The shared test graph::

        raw/orders   raw/customers
             |    \\      |
             |     joined (group enrich, tag pool=big)
             |       |
           totals  report (+ deps=[totals])
    """

    @asset(group="raw", tags={"source": "db"})
    def orders():
        return []

    @asset(group="raw", tags={"source": "db"})
    def customers():
        return []

    @asset(group="enrich", tags={"pool": "big"})
    def joined(orders, customers):
        return []

    @asset
    def totals(orders):
        return 0

    @asset(deps=[totals])
    def report(joined):
        return ""

    return build_asset_graph([report, totals, joined, customers, orders])


# -- building -------------------------------------------------------------------------

def test_topological_order_is_upstream_first_and_deterministic():
    graph = diamond()
    order = graph.topological_order()
    assert order == ("raw/customers", "raw/orders", "enrich/joined", "totals", "report")
    assert diamond().topological_order() == order
    assert list(graph.assets) == list(order)


def test_upstream_and_downstream_are_direct_neighbours():
    graph = diamond()
    assert graph.upstream("enrich/joined") == ("raw/orders", "raw/customers")
    assert graph.upstream("report") == ("enrich/joined", "totals")
    assert graph.downstream("raw/orders") == ("enrich/joined", "totals")
    assert graph.downstream("report") == ()
    assert graph.ancestors("report") == ("raw/customers", "raw/orders", "enrich/joined", "totals")
    assert graph.descendants("raw/customers") == ("enrich/joined", "report")


def test_parameter_names_resolve_to_keys_and_deps_are_not_inputs():
    graph = diamond()
    assert graph.inputs_of("enrich/joined") == {"orders": "raw/orders", "customers": "raw/customers"}
    assert graph.inputs_of("report") == {"joined": "enrich/joined"}
    assert graph.deps["report"] == ("totals",)


def test_build_accepts_definitions_or_functions_and_graph_is_frozen():
    @asset
    def a():
        return 1

    graph = build_asset_graph(Definitions(assets=[a]))
    assert isinstance(graph, AssetGraph) and list(graph) == ["a"] and len(graph) == 1 and "a" in graph
    with pytest.raises(AttributeError):
        graph.assets = {}


def test_same_prefix_asset_wins_over_a_same_name_elsewhere():
    """``sales/report(orders)`` reads ``sales/orders`` although ``raw/orders`` exists."""

    @asset(group="raw", name="orders")
    def raw_orders():
        return 1

    @asset(group="sales", name="orders")
    def sales_orders():
        return 2

    @asset(group="sales")
    def report(orders):
        return orders

    assert build_asset_graph([raw_orders, sales_orders, report]).inputs_of("sales/report") == {"orders": "sales/orders"}


def test_ambiguous_parameter_name_asks_for_ins_with_the_candidates():
    @asset(group="raw", name="orders")
    def raw_orders():
        return 1

    @asset(group="sales", name="orders")
    def sales_orders():
        return 2

    @asset
    def report(orders):
        return orders

    with pytest.raises(AssetDefinitionError) as info:
        build_asset_graph([raw_orders, sales_orders, report])
    message = str(info.value)
    assert "'report'" in message and "parameter 'orders'" in message
    assert "raw/orders, sales/orders" in message and "ins={'orders': 'raw/orders'}" in message

    @asset(ins={"orders": "sales/orders"})
    def fixed_report(orders):
        return orders

    graph = build_asset_graph([raw_orders, sales_orders, fixed_report])
    assert graph.inputs_of("fixed_report") == {"orders": "sales/orders"}


def test_context_parameter_is_not_an_upstream():
    @asset
    def a(context):
        return context.partition

    graph = build_asset_graph([a])
    assert graph.inputs_of("a") == {} and graph.spec("a").context_parameter == "context"


# -- build-time errors ---------------------------------------------------------------

def test_cycle_error_prints_the_cycle_and_the_parameters():
    """a -> b -> c -> a."""

    @asset
    def a(c):
        return c

    @asset
    def b(a):
        return a

    @asset
    def c(b):
        return b

    with pytest.raises(AssetCycleError) as info:
        build_asset_graph([a, b, c])
    message = str(info.value)
    assert "a -> b -> c -> a" in message
    assert "'b' reads 'a' via parameter 'a'" in message
    assert "Fix: remove one of these dependencies" in message


def test_self_dependency_is_a_cycle():
    @asset
    def a(a):
        return a

    with pytest.raises(AssetCycleError, match="a -> a"):
        build_asset_graph([a])


def test_cycle_through_deps_is_reported_as_deps():
    @asset(deps=["b"])
    def a():
        return 1

    @asset
    def b(a):
        return a

    with pytest.raises(AssetCycleError, match=r"'a' reads 'b' via deps="):
        build_asset_graph([a, b])


def test_unknown_upstream_names_asset_parameter_and_close_matches():
    @asset
    def orders():
        return []

    @asset
    def report(orderz):
        return orderz

    with pytest.raises(UnknownAssetError) as info:
        build_asset_graph([orders, report])
    message = str(info.value)
    assert "asset 'report'" in message and "parameter 'orderz'" in message
    assert "Did you mean 'orders'" in message
    assert "ins={'param': 'group/name'}" in message


def test_unknown_deps_entry_is_reported_as_deps():
    @asset(deps=["setup"])
    def a():
        return 1

    with pytest.raises(UnknownAssetError, match=r"asset 'a'.*deps= entry 'setup' names no asset"):
        build_asset_graph([a])


def test_duplicate_keys_name_both_functions():
    def make(module_name):
        def orders():
            return []

        orders.__module__ = module_name
        return asset(orders)

    with pytest.raises(DuplicateAssetError) as info:
        build_asset_graph([make("pipeline_one"), make("pipeline_two")])
    message = str(info.value)
    assert "'orders'" in message and "pipeline_one." in message and "pipeline_two." in message
    assert "Fix: rename one" in message


def test_different_partitions_fail_at_build_time_naming_both_assets():
    @asset(partitions=DailyPartitions("2024-01-01", "2024-01-03"))
    def daily():
        return 1

    @asset(partitions=StaticPartitions(["eu", "us"]))
    def regional(daily):
        return daily

    with pytest.raises(PartitionError) as info:
        build_asset_graph([daily, regional])
    assert "'regional'" in str(info.value) and "'daily'" in str(info.value) and "Fix:" in str(info.value)


# -- checks -----------------------------------------------------------------------------

def test_checks_attach_to_their_resolved_asset():
    @asset(group="sales")
    def orders():
        return [1]

    @asset_check(asset="orders")
    def not_empty(orders):
        return bool(orders)

    @asset_check(asset=orders, blocking=False)
    def small(orders):
        return len(orders) < 10

    graph = build_asset_graph(Definitions(assets=[orders], checks=[not_empty, small]))
    checks = graph.checks_for("sales/orders")
    assert [(c.name, c.asset, c.blocking) for c in checks] == [("not_empty", "sales/orders", True),
                                                               ("small", "sales/orders", False)]
    assert graph.checks_for("orders") == checks


def test_check_on_unknown_asset_names_check_and_close_match():
    @asset
    def orders():
        return []

    @asset_check(asset="order")
    def not_empty(order):
        return True

    with pytest.raises(UnknownAssetError) as info:
        build_asset_graph(Definitions(assets=[orders], checks=[not_empty]))
    assert "check 'not_empty'" in str(info.value) and "Did you mean 'orders'" in str(info.value)


def test_two_checks_with_one_name_on_one_asset_are_duplicates():
    @asset
    def orders():
        return []

    @asset_check(asset=orders, name="rows")
    def first(orders):
        return True

    @asset_check(asset=orders, name="rows")
    def second(orders):
        return True

    with pytest.raises(DuplicateAssetError, match=r"asset 'orders' has two checks named 'rows'.*first.*second"):
        build_asset_graph(Definitions(assets=[orders], checks=[first, second]))


# -- selection --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "expr, expected",
    [
        ("totals", ("totals",)),
        ("joined", ("enrich/joined",)),
        ("raw/orders", ("raw/orders",)),
        ("+joined", ("raw/customers", "raw/orders", "enrich/joined")),
        ("joined+", ("enrich/joined", "report")),
        ("+totals+", ("raw/orders", "totals", "report")),
        ("orders+", ("raw/orders", "enrich/joined", "totals", "report")),
        ("group:raw", ("raw/customers", "raw/orders")),
        ("group:raw+", ("raw/customers", "raw/orders", "enrich/joined", "totals", "report")),
        ("tag:pool=big", ("enrich/joined",)),
        ("tag:source", ("raw/customers", "raw/orders")),
        ("report, totals", ("totals", "report")),
        ("*totals*", ("raw/orders", "totals", "report")),
        ("totals,+totals", ("raw/orders", "totals")),
        ("*", ("raw/customers", "raw/orders", "enrich/joined", "totals", "report")),
        (None, ("raw/customers", "raw/orders", "enrich/joined", "totals", "report")),
    ],
)
def test_selection_expressions(expr, expected):
    assert diamond().select(expr) == expected


def test_unknown_selection_name_suggests_close_matches():
    with pytest.raises(SelectionError) as info:
        diamond().select("+totls")
    assert "'totls'" in str(info.value) and "Did you mean 'totals'" in str(info.value)


def test_unknown_group_and_tag_list_the_known_ones():
    with pytest.raises(SelectionError, match=r"'group:rew'.*Did you mean 'raw'.*Known groups: default, enrich, raw"):
        diamond().select("group:rew")
    with pytest.raises(SelectionError, match=r"'tag:pool=small'.*Known tags: pool=big, source=db"):
        diamond().select("tag:pool=small")


def test_malformed_selection_terms_are_errors():
    with pytest.raises(SelectionError, match="empty term"):
        diamond().select("totals,,report")
    with pytest.raises(SelectionError, match="malformed"):
        diamond().select("++")


def test_ambiguous_name_in_selection_asks_for_the_full_key():
    @asset(group="a", name="x")
    def ax():
        return 1

    @asset(group="b", name="x")
    def bx():
        return 1

    with pytest.raises(SelectionError, match=r"'x' is ambiguous: it matches a/x, b/x. Fix: use the full key"):
        build_asset_graph([ax, bx]).select("x")


# -- partitions ----------------------------------------------------------------------------

DAYS = DailyPartitions("2024-01-01", "2024-01-03")


def partitioned_graph():
    """daily_raw (daily) -> daily_clean (daily) -> summary (unpartitioned);
    config (unpartitioned) -> daily_clean."""

    @asset(partitions=DAYS)
    def daily_raw():
        return 1

    @asset
    def config():
        return {}

    @asset(partitions=DailyPartitions("2024-01-01", "2024-01-03"))
    def daily_clean(daily_raw, config):
        return daily_raw

    @asset
    def summary(daily_clean):
        return daily_clean

    return build_asset_graph([daily_raw, config, daily_clean, summary])


def test_partition_mappings_between_assets():
    graph = partitioned_graph()
    assert graph.partition_mapping("daily_clean", "daily_raw") == "identity"
    assert graph.partition_mapping("daily_clean", "config") == "single"
    assert graph.partition_mapping("summary", "daily_clean") == "all"
    assert graph.upstream_partitions("daily_clean", "2024-01-02", "daily_raw") == ("2024-01-02",)
    assert graph.upstream_partitions("daily_clean", "2024-01-02", "config") == (None,)
    assert graph.upstream_partitions("summary", None, "daily_clean") == DAYS.keys()


def test_resolve_partitions_all_one_and_range():
    graph = partitioned_graph()
    spec = graph.spec("daily_raw")
    assert resolve_partitions(spec) == DAYS.keys()
    assert resolve_partitions(spec, "2024-01-02") == ("2024-01-02",)
    assert resolve_partitions(spec, "2024-01-02...2024-01-03") == ("2024-01-02", "2024-01-03")
    assert resolve_partitions(graph.spec("config"), "2024-01-02") == (None,)


def test_resolve_partitions_error_names_asset_and_valid_keys():
    with pytest.raises(PartitionError) as info:
        resolve_partitions(partitioned_graph().spec("daily_raw"), "2024-02-01")
    message = str(info.value)
    assert "'daily_raw'" in message and "'2024-02-01'" in message
    assert "2024-01-01, 2024-01-02, 2024-01-03" in message


def test_asset_partitions_lists_work_items_in_topological_order():
    graph = partitioned_graph()
    items = graph.asset_partitions(["summary", "daily_clean"], partitions="2024-01-02...2024-01-03")
    assert items == (("daily_clean", "2024-01-02"), ("daily_clean", "2024-01-03"), ("summary", None))
    assert len(graph.asset_partitions()) == 3 + 1 + 3 + 1


@pytest.mark.parametrize("module_name", [
    "definitions", "asset_specs", "decorators", "code_versions", "partitions", "partitions.definitions",
    "partitions.time_windows", "partitions.selection", "partitions.mapping", "graph", "loading",
])
def test_docstring_examples_run(module_name):
    """The runnable examples in the public docstrings stay true."""
    import doctest
    import importlib

    module = importlib.import_module(f"daskflow.{module_name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_select_accepts_a_list_of_terms():
    assert diamond().select(["totals", "group:enrich"]) == ("enrich/joined", "totals")


def test_unknown_name_in_a_big_pipeline_keeps_the_known_list_short():
    functions = [asset(name=f"asset_{i}")(lambda: i) for i in range(40)]
    with pytest.raises(SelectionError) as info:
        build_asset_graph(functions).select("asset_x")
    assert "(28 more)" in str(info.value) and "asset_39" not in str(info.value)


def test_partitions_are_checked_on_deps_edges_too():
    @asset(partitions=["eu", "us"])
    def regional():
        return 1

    @asset(partitions=DailyPartitions("2024-01-01", "2024-01-02"), deps=[regional])
    def daily():
        return 1

    with pytest.raises(PartitionError, match="'daily'.*'regional'"):
        build_asset_graph([regional, daily])


@pytest.mark.parametrize("seed", range(5))
def test_random_dags_order_every_edge_forward_and_selection_matches_closure(seed):
    """Random DAG of 30 assets (parents drawn among earlier ones), declared in shuffled order."""
    import random

    rng = random.Random(seed)
    functions = []
    for i in range(30):
        parents = sorted(rng.sample(range(i), k=min(i, rng.randint(0, 3))))
        fn = asset(name=f"n{i}", deps=[f"n{p}" for p in parents])(lambda: None)
        functions.append(fn)
    rng.shuffle(functions)
    graph = build_asset_graph(functions)
    position = {key: i for i, key in enumerate(graph.topological_order())}
    for key in graph:
        for up in graph.upstream(key):
            assert position[up] < position[key]
            assert key in graph.downstream(up)
    target = f"n{rng.randrange(30)}"
    assert set(graph.select(f"+{target}")) == {target, *graph.ancestors(target)}
    assert set(graph.select(f"{target}+")) == {target, *graph.descendants(target)}
    assert build_asset_graph(list(reversed(functions))).topological_order() == graph.topological_order()
