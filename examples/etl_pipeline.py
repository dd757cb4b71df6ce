"""ETL example: generated shop data with daily partitions, a join and aggregations.

Run it on an embedded Dask cluster (2 worker processes) with::

    daskflow run examples/etl_pipeline.py

Graph (``[daily]`` = one task per day; a daily asset reading the unpartitioned
``customers`` gets the whole table; ``weekly_report`` reads every day)::

    customers ─────────┐
    orders [daily] ──> enriched_orders [daily] ──> daily_revenue [daily] ──> weekly_report
                                 └────────────────────────────────────────> top_customers

``daily_revenue`` carries a blocking check (no negative revenue): if it
fails, ``weekly_report`` is skipped. Everything is seeded, so re-runs give the
same data; ``daskflow run examples/etl_pipeline.py --only-stale`` then skips
it all.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pyarrow as pa

from daskflow import CheckResult, DailyPartitions, asset, asset_check

DAYS = DailyPartitions("2024-01-01", "2024-01-07")
REGIONS = ["north", "south", "east", "west"]
N_CUSTOMERS = 300
ORDERS_PER_DAY = 2_000


@asset(code_version="1", tags={"layer": "raw"})
def customers() -> pd.DataFrame:
    """Customer master data: id, region, segment."""
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "customer_id": np.arange(N_CUSTOMERS, dtype="int64"),
        "region": rng.choice(REGIONS, N_CUSTOMERS),
        "segment": rng.choice(["consumer", "business"], N_CUSTOMERS, p=[0.8, 0.2]),
    })


@asset(partitions=DAYS, code_version="1", tags={"layer": "raw"},
       schema=pa.schema([("order_id", pa.int64()), ("customer_id", pa.int64()), ("amount", pa.float64()),
                         ("day", pa.string())]))
def orders(context) -> pd.DataFrame:
    """One day of orders, generated deterministically from the partition key."""
    rng = np.random.default_rng(zlib.crc32(context.partition.encode()))
    base = int(context.partition.replace("-", "")) * 10_000
    return pd.DataFrame({
        "order_id": base + np.arange(ORDERS_PER_DAY, dtype="int64"),
        "customer_id": rng.integers(0, N_CUSTOMERS, ORDERS_PER_DAY).astype("int64"),
        "amount": rng.gamma(2.0, 25.0, ORDERS_PER_DAY).round(2),
        "day": context.partition,
    })


@asset(partitions=DAYS, code_version="1", tags={"layer": "clean"})
def enriched_orders(orders: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Orders joined with their customer's region and segment."""
    return orders.merge(customers, on="customer_id", how="left", validate="many_to_one")


@asset(partitions=DAYS, code_version="1", tags={"layer": "mart"})
def daily_revenue(enriched_orders: pd.DataFrame) -> pd.DataFrame:
    """Revenue, order count and mean basket per region and segment for one day."""
    grouped = enriched_orders.groupby(["day", "region", "segment"], as_index=False)
    return grouped.agg(revenue=("amount", "sum"), orders=("order_id", "count"), mean_basket=("amount", "mean"))


@asset_check(asset=daily_revenue, blocking=True)
def revenue_is_positive(daily_revenue: pd.DataFrame) -> CheckResult:
    """Blocking: a negative revenue means a broken upstream; stop the report."""
    negative = int((daily_revenue["revenue"] < 0).sum())
    return CheckResult(passed=negative == 0, message=f"{negative} negative revenue rows",
                       metadata={"rows": len(daily_revenue)})


@asset(code_version="1", tags={"layer": "report"})
def weekly_report(daily_revenue: dict) -> pd.DataFrame:
    """Revenue per region over the whole week (receives every daily partition)."""
    week = pd.concat(daily_revenue.values(), ignore_index=True)
    report = week.groupby("region", as_index=False).agg(revenue=("revenue", "sum"), orders=("orders", "sum"))
    report["share"] = (report["revenue"] / report["revenue"].sum()).round(4)
    return report.sort_values("revenue", ascending=False, ignore_index=True)


@asset(code_version="1", tags={"layer": "report"})
def top_customers(enriched_orders: dict) -> pd.DataFrame:
    """The ten customers who spent most over the week."""
    week = pd.concat(enriched_orders.values(), ignore_index=True)
    spend = week.groupby(["customer_id", "region"], as_index=False).agg(spend=("amount", "sum"))
    return spend.nlargest(10, "spend").reset_index(drop=True)
