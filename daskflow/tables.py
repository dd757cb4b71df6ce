"""Tabular asset values as Arrow tables: conversion and declared-schema checks.

Design note
-----------
Storage writes Parquet from a ``pyarrow.Table``; this module turns what an
asset returned into one (:func:`to_arrow_table`: Arrow tables and record
batches as they are, pandas DataFrames through pyarrow, anything else is a
:class:`~daskflow.errors.StorageError` naming the asset and the fix) and checks
it against the asset's declared ``schema=`` (:func:`validate_schema`: every
problem one line, field order free, string widths equal). pandas is never
imported here: a value can only be a DataFrame when the user imported pandas.
Pure functions of their inputs; :mod:`daskflow.storage` does the I/O.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from daskflow.errors import SchemaMismatchError, StorageError

__all__ = ["conform_to_schema", "is_pandas_frame", "to_arrow_table", "validate_schema"]


def is_pandas_frame(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame (False when pandas was never imported)."""
    pd = _pandas_if_loaded()
    return pd is not None and isinstance(value, pd.DataFrame)


def _pandas_if_loaded():
    # Only look at pandas if the user already imported it: a value cannot be a
    # DataFrame otherwise, and importing pandas costs ~0.3 s per process.
    import sys

    return sys.modules.get("pandas")


def to_arrow_table(asset_key: str, value: Any) -> pa.Table:
    """Convert a tabular value to a ``pyarrow.Table`` or raise StorageError.

    Accepts ``pyarrow.Table``, ``pyarrow.RecordBatch`` and ``pandas.DataFrame``
    (a default RangeIndex is kept as metadata only; any other index becomes
    columns, as ``pyarrow.Table.from_pandas`` does).
    """
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if is_pandas_frame(value):
        try:
            return pa.Table.from_pandas(value)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise StorageError(
                f"asset {asset_key!r}: its pandas.DataFrame could not be converted to Arrow "
                f"for Parquet ({exc}); give object columns one type each "
                "(e.g. df[col] = df[col].astype(str))"
            ) from exc
    raise StorageError(
        f"asset {asset_key!r} returned a {type(value).__module__}.{type(value).__qualname__}, "
        "which cannot be stored as Parquet; return a pyarrow.Table / pandas.DataFrame, "
        "or a JSON-able value with io='json'"
    )


def _types_match(expected: pa.DataType, actual: pa.DataType) -> bool:
    if expected.equals(actual):
        return True
    # string/large_string/string_view (and binary) differ only in offset width;
    # pandas >= 3 produces large_string, users usually declare pa.string().
    string_like = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    binary_like = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)
    for family in (string_like, binary_like):
        if any(f(expected) for f in family) and any(f(actual) for f in family):
            return True
    return False


def validate_schema(asset_key: str, table: pa.Table, schema: pa.Schema) -> None:
    """Check ``table`` against the declared ``schema``; raise SchemaMismatchError.

    Field order does not matter; missing fields, extra fields, different types
    and nulls in non-nullable fields are all reported, one line per problem.
    String and large-string (binary and large-binary) count as the same type.

    >>> import pyarrow as pa
    >>> validate_schema("prices", pa.table({"x": [1]}), pa.schema([("x", pa.int64())]))
    """
    problems: list[str] = []
    actual_fields = {field.name: field for field in table.schema}
    for expected in schema:
        actual = actual_fields.get(expected.name)
        if actual is None:
            problems.append(
                f"field {expected.name!r}: expected type {expected.type}, actual: missing"
            )
            continue
        if not _types_match(expected.type, actual.type):
            problems.append(
                f"field {expected.name!r}: expected type {expected.type}, actual type {actual.type}"
            )
        elif not expected.nullable and table.column(expected.name).null_count:
            problems.append(
                f"field {expected.name!r}: declared not nullable, actual column has "
                f"{table.column(expected.name).null_count} nulls"
            )
    declared = set(schema.names)
    for name, field in actual_fields.items():
        if name not in declared:
            problems.append(f"field {name!r}: not in the declared schema (actual type {field.type})")
    if problems:
        raise SchemaMismatchError(
            f"asset {asset_key!r}: output does not match its declared schema:\n  "
            + "\n  ".join(problems)
            + "\nFix the asset's output or its schema= declaration."
        )


def conform_to_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder columns and cast string-width differences to the declared schema."""
    table = table.select(schema.names)
    if table.schema.equals(schema, check_metadata=False):
        return table
    try:
        return table.cast(schema.with_metadata(table.schema.metadata))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return table
