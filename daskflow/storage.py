"""Asset storage: Parquet/JSON files on any fsspec URL, written atomically.

Design note
-----------
One asset-partition materialization attempt is one file::

    <base>/<asset_key>/<partition or __unpartitioned__>/<run_id>-<attempt>.<parquet|json>

The run id in the file name makes every run write its own file, so concurrent
runs never collide and an older materialization stays readable while a new one
is written; the *attempt* token (8 hex characters, fresh for every execution of
the task, see :func:`new_attempt_token`) makes every execution write its own
file too, so when Dask re-runs a task (a retry, or a recomputation after the
worker holding its result died) the second execution never overwrites a file
the catalog already recorded. Which file is *current* is the catalog's
business, not the file system's; :func:`run_id_of_file` reads the run id back
for ``daskflow gc``. (Without an attempt the name is ``<run_id>.<ext>``.)

Writes are atomic: the bytes go to a hidden temporary name in the same
directory (``.<run_id>.<ext>.tmp-<uuid>``), are flushed and closed, and are
then moved to the final name with fsspec ``mv`` (a rename on local disks; a
server-side copy on object stores, where an object only becomes visible once
complete). Any failure removes the temporary file, so nothing
partial is ever visible under a final name. Readers that list directories
(pyarrow datasets) skip hidden names, so even a temp file left by a killed
process is never read as data; :meth:`AssetStore.remove_temp_files` sweeps them.

Durability: a published file survives the death of the writing process (the
bytes are in the OS page cache before the rename). Surviving an OS crash or
power loss needs an fsync of the file and its directory, which costs ~8 ms per
write on a typical VM disk, i.e. more than all other per-asset overhead
together; it is opt-in with config ``daskflow.storage.fsync: true``.

Values are stored in safe formats only, never pickle: Parquet for
``pyarrow.Table`` / ``pandas.DataFrame`` (pandas is converted with pyarrow)
and JSON for JSON-able values. Every write returns a :class:`StoredObject`:
path, rows, bytes, schema and the host/worker that wrote it. The catalog keeps
these as the Arrow data-location metadata used for locality-aware steering.
Turning a value into an Arrow table and checking it against a declared
schema is :mod:`daskflow.tables` (pure); this module does the file I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import uuid
from typing import Any, Literal, Mapping

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from daskflow import config
from daskflow.errors import StorageError
from daskflow.tables import (
    conform_to_schema,
    is_pandas_frame,
    to_arrow_table,
    validate_schema,
)

__all__ = [
    "UNPARTITIONED",
    "AssetStore",
    "StoredObject",
    "current_worker_address",
    "new_attempt_token",
    "run_id_of_file",
    "to_arrow_table",
    "validate_schema",
]

IOFormat = Literal["parquet", "json"]
UNPARTITIONED = "__unpartitioned__"
_EXTENSIONS: dict[str, str] = {"parquet": "parquet", "json": "json"}
_SAFE_SEGMENT = re.compile(r"[^A-Za-z0-9._=\-]")
_TEMP_MARKER = ".tmp-"


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """Where and what one write produced (the data-location metadata).

    ``path`` is a full URL for remote file systems (``s3://bucket/...``,
    ``memory://...``) and an absolute path for local disks. ``rows`` is the
    number of table rows (Parquet) or ``len(value)`` for a JSON list, else 1.
    ``schema`` is ``pyarrow.Schema.to_string()`` for Parquet, None for JSON.
    ``worker`` is the Dask worker address when written inside a worker task.
    """

    path: str
    format: str
    rows: int
    bytes: int
    schema: str | None
    #: where the bytes live, in the identity the scheduler uses for workers (the host part of a
    #: worker address); None on a shared store (s3://, memory://, http://) or outside a worker
    host: str | None
    worker: str | None
    #: the attempt token in the file name (None: written without one)
    attempt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def new_attempt_token() -> str:
    """A fresh attempt token: 8 hex characters, unique per task execution."""
    return uuid.uuid4().hex[:8]


def run_id_of_file(path: str) -> str | None:
    """The run id in a data file's name (``<run_id>-<attempt>.<ext>`` or ``<run_id>.<ext>``); None if hidden."""
    name = path.rsplit("/", 1)[-1]
    if name.startswith(".") or "." not in name:
        return None
    stem = name.rsplit(".", 1)[0]
    run_id, sep, attempt = stem.rpartition("-")
    if sep and re.fullmatch(r"[0-9a-f]{8}", attempt):
        return run_id
    return stem


def current_worker_address() -> str | None:
    """The address of the Dask worker running this code, or None outside workers."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError, AttributeError):
        return None


def data_host(worker_address: str | None, local_storage: bool) -> str | None:
    """Where a write's bytes live, as the scheduler names hosts (``WorkerInfo.host``).

    A local disk lives on the writing worker's host: the host part of its
    address (what the scheduler's ``WorkerState.host`` is). A shared object
    store has no host, and neither has a write outside a worker (the client's
    own address is not a worker identity).

    >>> data_host("tcp://198.18.0.5:40123", True), data_host("tcp://198.18.0.5:40123", False)
    ('198.18.0.5', None)
    >>> data_host(None, True) is None
    True
    """
    if not local_storage or not worker_address:
        return None
    from distributed.comm.addressing import get_address_host

    try:
        return get_address_host(worker_address) or None
    except (ValueError, TypeError):
        return None


def _safe_segment(text: str) -> str:
    """A path segment safe on every file system, still unique for distinct input."""
    cleaned = _SAFE_SEGMENT.sub("_", text)
    if cleaned in {"", ".", ".."} or cleaned.startswith("."):
        cleaned = "_" + cleaned.lstrip(".")
    if cleaned != text:
        cleaned += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return cleaned


def _json_default(value: Any) -> Any:
    # numpy scalars/arrays are common asset outputs; store them as plain JSON.
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__module__}.{type(value).__qualname__} is not JSON-able")


class AssetStore:
    """Read and write asset values under one fsspec base URL.

    ``base_url`` defaults to config ``daskflow.storage.url`` (else
    ``<home>/data``); ``storage_options`` to ``daskflow.storage.storage-options``
    when the URL is the configured one (e.g. an S3 ``endpoint_url``).
    The store pickles as (base_url, storage_options), so it can be shipped to
    Dask workers.

    >>> store = AssetStore("memory://daskflow-doc")
    >>> obj = store.write("numbers", {"n": 3}, io="json", run_id="r1")
    >>> obj.path, obj.rows
    ('memory:///daskflow-doc/numbers/__unpartitioned__/r1.json', 1)
    >>> store.read(obj.path)
    {'n': 3}
    """

    def __init__(self, base_url: str | None = None, storage_options: Mapping[str, Any] | None = None):
        configured_url = config.get("storage.url")
        if storage_options is None:
            # The configured options belong to the configured URL only.
            same_url = base_url is None or (configured_url and str(base_url) == str(configured_url))
            storage_options = (config.get("storage.storage-options") or {}) if same_url else {}
        if base_url is None:
            base_url = config.home_url("storage.url", "data")
        self.base_url = str(base_url).rstrip("/")
        self.storage_options = dict(storage_options)
        self.fsync = bool(config.get("storage.fsync"))
        self._fs: fsspec.AbstractFileSystem | None = None
        self._root: str | None = None

    def __repr__(self) -> str:
        return f"AssetStore({self.base_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["base_url"], state["storage_options"])

    # -- file system -----------------------------------------------------
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec file system for ``base_url`` (created on first use)."""
        if self._fs is None:
            self._fs, self._root = fsspec.core.url_to_fs(self.base_url, **self.storage_options)
        return self._fs

    @property
    def root(self) -> str:
        """``base_url`` without its protocol, as the file system sees it."""
        self.fs  # noqa: B018 - initialises _root
        assert self._root is not None
        return self._root.rstrip("/")

    def _is_local(self) -> bool:
        return "file" in _protocols(self.fs)

    def url(self, fs_path: str) -> str:
        """A file-system path as the string recorded in the catalog."""
        if self._is_local():
            return fs_path
        return self.fs.unstrip_protocol(fs_path)

    def _resolve(self, path: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """(file system, fs path) for a path returned by :meth:`write`."""
        if self._is_local() and "://" not in path:
            return self.fs, path
        protocol = path.split("://", 1)[0] if "://" in path else "file"
        if protocol in _protocols(self.fs):
            return self.fs, fsspec.core.strip_protocol(path)
        return fsspec.core.url_to_fs(path, **self.storage_options)

    def path_for(
        self, asset_key: str, partition: str | None, run_id: str, io: IOFormat = "parquet",
        attempt: str | None = None,
    ) -> str:
        """The final fs path of one materialization (see the module note)."""
        if io not in _EXTENSIONS:
            raise StorageError(
                f"asset {asset_key!r}: unknown io={io!r}; expected one of {sorted(_EXTENSIONS)}"
            )
        key_segments = [_safe_segment(s) for s in str(asset_key).split("/") if s]
        if not key_segments:
            raise StorageError(f"asset key {asset_key!r} is empty; give the asset a name")
        partition_segment = UNPARTITIONED if partition is None else _safe_segment(str(partition))
        stem = _safe_segment(str(run_id)) + ("" if attempt is None else f"-{_safe_segment(str(attempt))}")
        file_name = f"{stem}.{_EXTENSIONS[io]}"
        return "/".join([self.root, *key_segments, partition_segment, file_name])

    # -- write -----------------------------------------------------------
    def write(
        self,
        asset_key: str,
        value: Any,
        io: IOFormat | None = None,
        partition: str | None = None,
        run_id: str | None = None,
        schema: pa.Schema | None = None,
        attempt: str | None = None,
    ) -> StoredObject:
        """Store ``value`` atomically and describe what was written.

        ``io=None`` picks Parquet for tables/DataFrames and JSON otherwise.
        ``schema`` (a ``pyarrow.Schema``) is validated before anything is
        written; the stored table then uses the declared column order/types.
        ``run_id`` defaults to a fresh uuid; pass the run's id so the file
        can be traced back to its run, and ``attempt`` (see
        :func:`new_attempt_token`) so each task execution writes its own file.
        """
        if run_id is None:
            run_id = uuid.uuid4().hex
        if io is None:
            tabular = isinstance(value, (pa.Table, pa.RecordBatch)) or is_pandas_frame(value)
            io = "parquet" if tabular else "json"
        final_path = self.path_for(asset_key, partition, run_id, io, attempt)
        if io == "parquet":
            table = to_arrow_table(asset_key, value)
            if schema is not None:
                validate_schema(asset_key, table, schema)
                table = conform_to_schema(table, schema)
            payload_writer = lambda f: pq.write_table(table, f)  # noqa: E731
            rows = table.num_rows
            schema_text: str | None = table.schema.to_string(show_schema_metadata=False)
        else:
            if schema is not None:
                raise StorageError(
                    f"asset {asset_key!r}: schema= applies to tables only, but io='json'; "
                    "drop schema= or return a pyarrow.Table / pandas.DataFrame with io='parquet'"
                )
            if isinstance(value, (pa.Table, pa.RecordBatch)) or is_pandas_frame(value):
                raise StorageError(
                    f"asset {asset_key!r}: a table cannot be stored with io='json'; "
                    "use io='parquet' (the default for tables)"
                )
            try:
                data = json.dumps(value, default=_json_default).encode()
            except (TypeError, ValueError) as exc:
                raise StorageError(
                    f"asset {asset_key!r}: value is not JSON-able ({exc}); return a "
                    "pyarrow.Table / pandas.DataFrame, or a JSON-able value with io='json'"
                ) from exc
            payload_writer = lambda f: f.write(data)  # noqa: E731
            rows = len(value) if isinstance(value, list) else 1
            schema_text = None
        size_bytes = self._write_atomic(asset_key, final_path, payload_writer)
        return StoredObject(
            path=self.url(final_path),
            format=io,
            rows=rows,
            bytes=size_bytes,
            schema=schema_text,
            host=data_host(current_worker_address(), self._is_local()),
            worker=current_worker_address(),
            attempt=attempt,
        )

    def _write_atomic(self, asset_key: str, final_path: str, write_payload) -> int:
        fs = self.fs
        directory, name = final_path.rsplit("/", 1)
        temp_path = f"{directory}/.{name}{_TEMP_MARKER}{uuid.uuid4().hex[:12]}"
        try:
            with _open_for_writing(fs, directory, temp_path) as f:
                write_payload(f)
                f.flush()
                size_bytes = _written_bytes(f, fs, temp_path)
                if self.fsync:
                    _fsync(f)
            fs.mv(temp_path, final_path)
            if self.fsync and self._is_local():
                _fsync_directory(directory)
        except BaseException as exc:
            _remove_quietly(fs, temp_path)
            if isinstance(exc, (StorageError, KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(exc, Exception):
                raise StorageError(
                    f"asset {asset_key!r}: writing {self.url(final_path)!r} failed: {exc!r}; "
                    f"check that {self.base_url!r} is writable (daskflow.storage.url / "
                    "storage-options)"
                ) from exc
            raise
        return size_bytes

    # -- read ------------------------------------------------------------
    def read(self, path: str, io: IOFormat | None = None, *, as_pandas: bool | None = False) -> Any:
        """Read a value written by :meth:`write`.

        Parquet returns a ``pyarrow.Table``; with ``as_pandas=True`` a
        ``pandas.DataFrame``, and with ``as_pandas=None`` a DataFrame exactly
        when a DataFrame was written (pyarrow keeps pandas metadata), so an
        asset gets back the kind of value its upstream returned. JSON returns
        the decoded value. ``io=None`` infers the format from the suffix.
        """
        if io is None:
            io = "json" if path.endswith(".json") else "parquet"
        fs, fs_path = self._resolve(path)
        try:
            if io == "parquet":
                table = pq.read_table(fs_path, filesystem=fs)
                written_from_pandas = b"pandas" in (table.schema.metadata or {})
                if as_pandas or (as_pandas is None and written_from_pandas):
                    return table.to_pandas()
                return table
            if io == "json":
                with fs.open(fs_path, "rb") as f:
                    return json.loads(f.read())
        except FileNotFoundError as exc:
            raise StorageError(
                f"stored data {path!r} does not exist; it was deleted or written to another "
                "storage.url; re-materialize the asset"
            ) from exc
        raise StorageError(f"unknown io={io!r} for {path!r}; expected 'parquet' or 'json'")

    def exists(self, path: str) -> bool:
        fs, fs_path = self._resolve(path)
        return bool(fs.exists(fs_path))

    def list_files(self) -> list[tuple[str, float | None, int | None]]:
        """Every file under the root (temp files included): (recorded path, modified unix time, bytes)."""
        fs = self.fs
        if not fs.exists(self.root):
            return []
        found = fs.find(self.root, detail=True)
        return [(self.url(fs_path), _modified_s(fs, fs_path), info.get("size"))
                for fs_path, info in sorted(found.items())]

    def fs_path(self, path: str) -> str | None:
        """The normalised file-system path of a recorded path on this store's file system (None: another one)."""
        fs, fs_path = self._resolve(path)
        if fs is not self.fs:
            return None
        return fs_path.rstrip("/")

    def contains(self, path: str) -> bool:
        """Whether ``path`` (as recorded in the catalog) lies under this store's root."""
        fs, fs_path = self._resolve(path)
        if fs is not self.fs:
            return False
        return fs_path.startswith(self.root + "/") and "/../" not in fs_path and not fs_path.endswith("/..")

    def remove(self, path: str) -> None:
        """Delete one file under the root (refuses anything outside it)."""
        if not self.contains(path):
            raise StorageError(f"refusing to delete {path!r}: it is outside the storage root {self.base_url!r}")
        fs, fs_path = self._resolve(path)
        fs.rm(fs_path)

    def remove_temp_files(self, min_age_s: float = 3600.0) -> list[str]:
        """Delete temp files older than ``min_age_s`` left by killed writers."""
        removed: list[str] = []
        fs = self.fs
        if not fs.exists(self.root):
            return removed
        now = time.time()
        for fs_path in fs.find(self.root):
            if _TEMP_MARKER not in fs_path.rsplit("/", 1)[-1]:
                continue
            modified = _modified_s(fs, fs_path)
            if modified is None or now - modified >= min_age_s:
                _remove_quietly(fs, fs_path)
                removed.append(self.url(fs_path))
        return removed


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _open_for_writing(fs: fsspec.AbstractFileSystem, directory: str, fs_path: str) -> Any:
    # Create the directory only when opening fails: most writes go to a directory
    # that exists already, and a mkdir per write is a quarter of a small write's cost.
    try:
        return fs.open(fs_path, "wb")
    except FileNotFoundError:
        fs.makedirs(directory, exist_ok=True)
        return fs.open(fs_path, "wb")


def _written_bytes(f: Any, fs: fsspec.AbstractFileSystem, fs_path: str) -> int:
    # The file position after writing everything from the start is its size;
    # asking the file system instead would cost a round trip on object stores.
    try:
        return int(f.tell())
    except (AttributeError, OSError, ValueError):
        return int(fs.size(fs_path))


def _fsync(f: Any) -> None:
    # Local files: make the bytes durable before the rename publishes them.
    try:
        os.fsync(f.fileno())
    except (AttributeError, OSError, ValueError, NotImplementedError, TypeError):
        pass  # not a real OS file (object stores: durable on close)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(fs: fsspec.AbstractFileSystem, fs_path: str) -> None:
    try:
        if fs.exists(fs_path):
            fs.rm(fs_path)
    except Exception:  # noqa: BLE001 - cleanup must not hide the original error
        pass


def _modified_s(fs: fsspec.AbstractFileSystem, fs_path: str) -> float | None:
    try:
        modified = fs.modified(fs_path)
    except (NotImplementedError, FileNotFoundError, OSError, KeyError):
        return None
    return modified.timestamp()
