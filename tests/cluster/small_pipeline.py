"""A small asset pipeline for the cluster tests (used until/unless examples/etl_pipeline.py exists)."""

import pyarrow as pa

from daskflow.definitions import asset


@asset
def raw_orders() -> pa.Table:
    return pa.table({"order_id": list(range(200)), "amount": [float(i % 17) for i in range(200)]})


@asset
def clean_orders(raw_orders: pa.Table) -> pa.Table:
    return raw_orders.filter(pa.compute.greater(raw_orders["amount"], 0.0))


@asset
def order_summary(clean_orders: pa.Table) -> dict:
    return {"orders": clean_orders.num_rows, "revenue": float(pa.compute.sum(clean_orders["amount"]).as_py())}
