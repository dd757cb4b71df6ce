"""The task history: an append-only, date-partitioned Parquet dataset on any fsspec URL.

Design note
-----------
Every flush of the recorder writes ONE new Parquet file per date it holds,
``<url>/date=YYYY-MM-DD/part-<utc stamp>-<uuid>.parquet``; files are never
rewritten, so concurrent writers (several schedulers) cannot clash and a crash
loses at most the unflushed buffer. Files appear atomically: on a local
filesystem they are written under a hidden temp name (``.tmp-...``, ignored by
readers) and renamed; object stores (s3, gcs, ...) publish an object only
when its upload completes, so the file is written in place there.

All files share :data:`HISTORY_SCHEMA` (explicit, so an all-null column in one
flush does not change a column's type). :func:`read_history` reads the whole
dataset (or the dates since a point in time) into a pandas DataFrame.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import posixpath
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HISTORY_SCHEMA = pa.schema(
    [
        ("recorded_at", pa.float64()),  # unix seconds on the scheduler when the row was made
        ("run_id", pa.string()),
        ("key", pa.string()),
        ("key_prefix", pa.string()),
        ("category", pa.string()),
        ("kind", pa.string()),
        ("asset", pa.string()),
        ("partition", pa.string()),
        ("code_version", pa.string()),
        ("tags", pa.string()),  # JSON object
        ("input_bytes", pa.int64()),
        ("input_rows", pa.int64()),
        ("n_inputs", pa.int64()),
        ("input_locations", pa.string()),  # JSON list of {"host", "bytes"}
        ("n_dependencies", pa.int64()),
        ("dependency_bytes", pa.int64()),
        ("depth", pa.int64()),  # graph position from the annotation (null when the planner did not say)
        ("n_dependents", pa.int64()),
        ("worker", pa.string()),
        ("worker_threads", pa.int64()),
        ("worker_memory_limit_bytes", pa.int64()),
        ("start_s", pa.float64()),  # compute start, unix seconds (worker clock)
        ("stop_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("output_nbytes", pa.int64()),
        ("peak_memory_bytes", pa.int64()),
        ("peak_memory_method", pa.string()),  # vmhwm | rss-end | None (unknown)
        ("concurrent_tasks", pa.int64()),
        ("outcome", pa.string()),  # success | error
        ("true_duration_s", pa.float64()),  # replay only
        ("true_peak_memory_bytes", pa.float64()),  # replay only
        ("predicted_duration_s", pa.float64()),
        ("predicted_peak_memory_bytes", pa.float64()),
        ("model_version", pa.string()),
        ("quality", pa.string()),  # the prediction's source: model | prefix-mean | default | oracle (null before it existed)
        # training-data hygiene (daskflow.learning.cleaning); null in rows recorded before they existed
        ("attempt", pa.int64()),  # 1 + earlier attempts of the key in this scheduler (erred, or lost with a worker)
        ("worker_paused", pa.bool_()),  # the worker was paused at the task's start or finish
        ("spilled_bytes", pa.int64()),  # bytes the worker spilled to disk between the task's start and finish
        ("worker_memory_at_start_bytes", pa.int64()),  # worker process RSS when the task started
        # how many finished tasks of its key prefix the row stands for: 1, or the recorder's tiny-task sampling
        # interval (daskflow.recorder.tiny-tasks); sampling is uniform within a prefix, so its statistics stay unbiased
        ("sample_weight", pa.float64()),
    ]
)

HISTORY_COLUMNS: tuple[str, ...] = tuple(HISTORY_SCHEMA.names)


def history_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) as an Arrow table with :data:`HISTORY_SCHEMA`; dict/list fields become JSON.

    Column by column: pyarrow converts a whole column at once when its values
    already have the column's type (the recorder's rows do), and only a column
    that it rejects is coerced value by value (:func:`_coerce`: ``"3"`` in an
    integer column, NaN in an integer column, a number in a string column). The
    recorder flushes in a thread of the scheduler process, so this is GIL time
    taken from the event loop: ~80 us per row value by value, a few us per row
    column-wise.

    >>> history_table([{"key": "a-1", "duration_s": 1, "attempt": "2", "tags": {"x": 1}}]).to_pylist()[0]["attempt"]
    2
    """
    arrays = []
    for name in HISTORY_COLUMNS:
        arrow_type = HISTORY_SCHEMA.field(name).type
        values = [row.get(name) for row in rows]
        if name in _JSON_COLUMNS:
            values = [v if v is None or isinstance(v, str) else json.dumps(v, sort_keys=True, default=str) for v in values]
        arrays.append(_column(values, arrow_type))
    return pa.Table.from_arrays(arrays, schema=HISTORY_SCHEMA)


_JSON_COLUMNS = frozenset({"tags", "input_locations"})


def _column(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    """One column as an Arrow array of ``arrow_type``; values pyarrow rejects go through :func:`_coerce`."""
    if not (pa.types.is_integer(arrow_type) and any(isinstance(v, float) for v in values)):
        try:  # (floats in an integer column always take the slow path: NaN -> null, 2.7 -> 2 as int() does)
            return pa.array(values, type=arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            pass
    return pa.array([_coerce(v, arrow_type) for v in values], type=arrow_type)


def _coerce(value: Any, arrow_type: pa.DataType) -> Any:
    if value is None:
        return None
    try:
        if pa.types.is_integer(arrow_type):
            if isinstance(value, float) and math.isnan(value):
                return None
            return int(value)
        if pa.types.is_floating(arrow_type):
            return float(value)
        if pa.types.is_boolean(arrow_type):
            return bool(value)
        return str(value)
    except (TypeError, ValueError):
        return None


def _filesystem(url: str, storage_options: Mapping[str, Any] | None = None):
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))
    return fs, path


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def row_date(row: Mapping[str, Any]) -> str:
    stamp = row.get("recorded_at") or row.get("stop_s")
    when = _dt.datetime.fromtimestamp(float(stamp), _dt.timezone.utc) if stamp else _dt.datetime.now(_dt.timezone.utc)
    return when.strftime("%Y-%m-%d")


def append_history(
    rows: Sequence[Mapping[str, Any]],
    url: str,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Append ``rows`` to the dataset at ``url``: one new file per date; returns the paths written.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> paths = append_history([{"key": "a-1", "category": "a", "duration_s": 1.0, "recorded_at": 0}], d)
    >>> read_history(d)["key"].tolist()
    ['a-1']
    """
    if not rows:
        return []
    fs, root = _filesystem(url, storage_options)
    by_date: dict[str, list[Mapping[str, Any]]] = {}
    dates: dict[int, str] = {}  # UTC day number -> "YYYY-MM-DD": one strftime per day, not per row
    for row in rows:
        stamp = row.get("recorded_at") or row.get("stop_s")
        try:
            day = int(float(stamp) // 86400) if stamp else None
        except (TypeError, ValueError):
            day = None
        date = (dates.get(day) or dates.setdefault(day, row_date(row))) if day is not None else row_date(row)
        by_date.setdefault(date, []).append(row)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    written = []
    for date, date_rows in sorted(by_date.items()):
        table = history_table(date_rows)
        directory = posixpath.join(root, f"date={date}")
        name = f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        final = posixpath.join(directory, name)
        fs.makedirs(directory, exist_ok=True)
        if _is_local(fs):
            temp = posixpath.join(directory, f".tmp-{name}")
            try:
                with fs.open(temp, "wb") as f:
                    pq.write_table(table, f)
                fs.mv(temp, final)
            except BaseException:
                if fs.exists(temp):
                    fs.rm(temp)
                raise
        else:
            with fs.open(final, "wb") as f:
                pq.write_table(table, f)
        written.append(final)
    return written


def probe_history(url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Raise when the dataset at ``url`` cannot be written: create it, write and remove a hidden probe file.

    The recorder calls it once at start (off the event loop), so an unwritable history is reported before
    the first flush rather than after a run's worth of rows.
    """
    fs, root = _filesystem(url, storage_options)
    fs.makedirs(root, exist_ok=True)
    probe = posixpath.join(root, f".probe-{uuid.uuid4().hex}")
    with fs.open(probe, "wb") as f:
        f.write(b"")
    fs.rm(probe)


def history_files(url: str, storage_options: Mapping[str, Any] | None = None, since: str | None = None) -> list[str]:
    """Visible Parquet files of the dataset (hidden temp files skipped), oldest date first."""
    fs, root = _filesystem(url, storage_options)
    if not fs.exists(root):
        return []
    since_date = _since_date(since)
    files = []
    for path in sorted(fs.find(root)):
        rel = posixpath.relpath(path, root)
        parts = rel.split("/")
        if any(p.startswith((".", "_")) for p in parts) or not path.endswith(".parquet"):
            continue
        if since_date and parts[0].startswith("date=") and parts[0][5:] < since_date:
            continue
        files.append(path)
    return files


def read_history(
    url: str | None = None,
    since: str | _dt.datetime | float | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The history at ``url`` (default ``daskflow.history.url``) as a DataFrame with :data:`HISTORY_COLUMNS`.

    ``since``: an ISO date/datetime, a duration ago (``"7d"``), a ``datetime`` or unix seconds; rows
    recorded earlier are dropped. A missing dataset gives an empty frame.
    """
    if url is None:
        from daskflow import config

        url = config.history_url()
        storage_options = storage_options or config.get("storage.storage-options") or None
    fs, _ = _filesystem(url, storage_options)
    files = history_files(url, storage_options, since=since)
    if not files:
        return HISTORY_SCHEMA.empty_table().to_pandas()
    tables = []
    for path in files:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        tables.append(table.select([c for c in HISTORY_COLUMNS if c in table.column_names]))
    table = pa.concat_tables(tables, promote_options="default")
    frame = table.to_pandas()
    for name in HISTORY_COLUMNS:
        if name not in frame:
            frame[name] = None
    cutoff = _since_seconds(since)
    if cutoff is not None:
        frame = frame[frame["recorded_at"].fillna(float("inf")) >= cutoff]
    return frame[list(HISTORY_COLUMNS)].reset_index(drop=True)


def _since_seconds(since: Any) -> float | None:
    if since is None:
        return None
    if isinstance(since, (int, float)):
        return float(since)
    if isinstance(since, _dt.datetime):
        value = since if since.tzinfo else since.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    text = str(since).strip()
    if re.fullmatch(r"\d+(\.\d+)?\s*[a-zA-Z]+", text):  # a duration such as "7d" or "12h": that long ago
        from dask.utils import parse_timedelta

        return _dt.datetime.now(_dt.timezone.utc).timestamp() - parse_timedelta(text)
    stamp = pd.Timestamp(text)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


def _since_date(since: Any) -> str | None:
    seconds = _since_seconds(since)
    if seconds is None:
        return None
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%d")


def rows_from_frame(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """History rows back as dicts (NaN → None)."""
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict("records")
