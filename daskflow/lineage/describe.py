"""What lineage export knows about assets and datasets: naming, schemas, column lineage, run ids.

Pure functions, with two exceptions: :func:`openlineage_enabled` reads the
environment and looks for the client's ``openlineage.yml`` unless ``environ``
and ``cwd`` are passed, and :func:`dataset_naming` makes a relative path
absolute against the working directory.

No OpenLineage client import here: these functions turn daskflow facts (storage
URLs, Arrow schemas, asset metadata, run ids) into the plain values the
exporter puts in events, after the OpenLineage naming spec (dataset namespace =
scheme + authority, ``file`` for local paths; name = the path).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any, TypedDict

#: uuid5 namespace for the OpenLineage run id of one asset-partition of a daskflow run
RUN_ID_NAMESPACE = uuid.UUID("5b0e6f0e-3c1a-4d2b-9a53-6b1f2c6f0d15")


class LineageAsset(TypedDict, total=False):
    """What the exporter knows about one asset before it runs (see :func:`describe_assets`)."""

    upstream: list[str]         # asset keys it reads
    dataset: str                # storage URL of its data directory
    tags: dict[str, str]
    metadata: dict[str, Any]    # ``column_lineage`` is read from here
    schema: Any                 # declared pyarrow.Schema (or its to_string())


def openlineage_enabled(enabled: bool | None = None, transport: Mapping | None = None,
                        environ: Mapping[str, str] | None = None, cwd: str | None = None) -> bool:
    """Whether to export: ``enabled`` if set, else when a transport or the client's own config is present.

    >>> openlineage_enabled(None, None, environ={}, cwd="/nonexistent")
    False
    >>> openlineage_enabled(None, None, environ={"OPENLINEAGE_URL": "http://ol:5000"})
    True
    """
    environ = os.environ if environ is None else environ
    if str(environ.get("OPENLINEAGE_DISABLED", "")).strip().lower() == "true":
        return False
    if enabled is not None:
        return bool(enabled)
    if transport:
        return True
    if environ.get("OPENLINEAGE_URL") or environ.get("OPENLINEAGE_CONFIG"):
        return True
    if any(k.startswith("OPENLINEAGE__TRANSPORT") for k in environ):
        return True
    home = environ.get("HOME") or os.path.expanduser("~")
    candidates = [os.path.join(cwd or os.getcwd(), "openlineage.yml"), os.path.join(home, ".openlineage", "openlineage.yml")]
    return any(os.path.isfile(p) for p in candidates)


def dataset_naming(url: str) -> tuple[str, str]:
    """(namespace, name) of a storage URL, after the OpenLineage naming spec.

    >>> dataset_naming("s3://bucket/data/orders")
    ('s3://bucket', 'data/orders')
    >>> dataset_naming("/home/me/.daskflow/data/orders")
    ('file', '/home/me/.daskflow/data/orders')
    """
    if "://" not in url:
        return "file", os.path.abspath(url) if not url.startswith("/") else url
    scheme, rest = url.split("://", 1)
    authority, _, path = rest.partition("/")
    if scheme == "file":
        return "file", "/" + path if authority in ("", "localhost") else f"//{authority}/{path}"
    return (f"{scheme}://{authority}" if authority else scheme), path or "/"


def asset_dataset_url(path: str) -> str:
    """The asset's data directory from one materialization path ``<root>/<key>/<partition>/<run>.<ext>``.

    >>> asset_dataset_url("/d/data/orders/__unpartitioned__/abc.parquet")
    '/d/data/orders'
    """
    head = path.rstrip("/").rsplit("/", 2)
    return head[0] if len(head) == 3 and "." in head[2] else path


def schema_fields(schema: Any) -> list[dict[str, Any]]:
    """``[{"name", "type", "fields"?}]`` from a ``pyarrow.Schema`` or its ``to_string()``.

    >>> schema_fields("x: int64\\nname: string")
    [{'name': 'x', 'type': 'int64'}, {'name': 'name', 'type': 'string'}]
    """
    if schema is None:
        return []
    if isinstance(schema, str):
        fields = []
        for line in schema.splitlines():
            if not line.strip() or line.startswith((" ", "-- ")) or ":" not in line:
                continue  # child lines of nested types, metadata blocks
            name, _, kind = line.partition(":")
            fields.append({"name": name.strip(), "type": kind.strip()})
        return fields
    return [_arrow_field(f) for f in schema]


def _arrow_field(field: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": field.name, "type": str(field.type)}
    children = [field.type.field(i) for i in range(field.type.num_fields)] if hasattr(field.type, "num_fields") else []
    if children and str(field.type).startswith("struct"):
        out["fields"] = [_arrow_field(c) for c in children]
    return out


def column_lineage_of(metadata: Mapping[str, Any] | None) -> dict[str, list[tuple[str, str]]]:
    """``{output column: [(upstream asset, column)]}`` from ``metadata["column_lineage"]``.

    Entries are ``"asset.column"`` (split at the last dot), ``{"asset":, "column":}`` or pairs.

    >>> column_lineage_of({"column_lineage": {"total": ["orders.amount"]}})
    {'total': [('orders', 'amount')]}
    """
    declared = (metadata or {}).get("column_lineage") or {}
    out: dict[str, list[tuple[str, str]]] = {}
    for column, sources in dict(declared).items():
        refs = []
        for src in [sources] if isinstance(sources, (str, Mapping)) else sources:
            if isinstance(src, str) and "." in src:
                asset, _, col = src.rpartition(".")
                refs.append((asset, col))
            elif isinstance(src, Mapping) and "asset" in src and "column" in src:
                refs.append((str(src["asset"]), str(src["column"])))
            elif isinstance(src, (list, tuple)) and len(src) == 2:
                refs.append((str(src[0]), str(src[1])))
        if refs:
            out[str(column)] = refs
    return out


def asset_run_id(run_id: str, asset: str, partition: str | None = None, check: str | None = None) -> str:
    """The OpenLineage run id (a UUID) of one asset-partition (or check) of a daskflow run: stable, derivable."""
    name = f"{run_id}/{asset}/{partition or ''}" + (f"/check/{check}" if check else "")
    return str(uuid.uuid5(RUN_ID_NAMESPACE, name))


def parent_run_id(run_id: str) -> str:
    """The daskflow run id as a UUID (it is one in hex form; other ids are hashed)."""
    try:
        return str(uuid.UUID(run_id))
    except (ValueError, TypeError, AttributeError):
        return str(uuid.uuid5(RUN_ID_NAMESPACE, str(run_id)))


def dataset_url_for(root_url: str, asset: str) -> str:
    """The storage URL of an asset's data directory under a store root (the layout of :mod:`daskflow.storage`).

    >>> dataset_url_for("s3://bucket/data/", "sales/orders")
    's3://bucket/data/sales/orders'
    """
    return "/".join([root_url.rstrip("/"), *[s for s in asset.split("/") if s]])


def describe_assets(graph: Any, store: Any = None) -> dict[str, LineageAsset]:
    """What the exporter should know about each asset of an :class:`~daskflow.graph.AssetGraph`.

    ``store`` (an :class:`~daskflow.storage.AssetStore`) gives each asset's dataset URL
    before it runs, so inputs read from earlier runs are named too.
    """
    out: dict[str, LineageAsset] = {}
    for key, spec in graph.assets.items():
        info: LineageAsset = {"upstream": list(graph.upstream(key)), "tags": dict(spec.tags),
                              "metadata": dict(spec.metadata), "schema": spec.schema}
        if store is not None:
            info["dataset"] = dataset_url_for(store.url(store.root), key)
        out[key] = info
    return out
