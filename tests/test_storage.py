"""Tests for daskflow.storage: round trips on local, memory:// and S3 (moto server), atomicity, schemas."""

from __future__ import annotations

import os
import pickle
import socket
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daskflow.errors import SchemaMismatchError, StorageError
from daskflow.storage import UNPARTITIONED, AssetStore, StoredObject, validate_schema

pytestmark = pytest.mark.timeout(60)


# -- fixtures: one store per backend -------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real HTTP S3 endpoint: moto in server mode on a free local port."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _s3_store(endpoint: str) -> AssetStore:
    import s3fs

    bucket = f"daskflow-{uuid.uuid4().hex[:8]}"
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return AssetStore(f"s3://{bucket}/data", options)


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path) -> AssetStore:
    if request.param == "local":
        return AssetStore(str(tmp_path / "data"))
    if request.param == "memory":
        return AssetStore(f"memory://daskflow-test-{uuid.uuid4().hex[:8]}")
    return _s3_store(request.getfixturevalue("s3_endpoint"))


def _listing(store: AssetStore) -> list[str]:
    """Every file under the store's root (hidden ones included)."""
    store.fs.invalidate_cache()
    if not store.fs.exists(store.root):
        return []
    return sorted(store.fs.find(store.root))


# -- round trips -------------------------------------------------------------------
def test_parquet_round_trip_of_arrow_table(store):
    table = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    stored = store.write("orders", table, partition="2024-01-01", run_id="run1")
    assert isinstance(stored, StoredObject)
    assert stored.format == "parquet"
    assert stored.rows == 3
    assert stored.schema == "id: int64\nname: string"
    assert stored.host is None  # written outside a worker: no worker identity to name
    assert stored.worker is None
    fs, fs_path = store._resolve(stored.path)
    assert stored.bytes == fs.size(fs_path) > 0
    assert stored.path.endswith("/orders/2024-01-01/run1.parquet")
    assert store.read(stored.path).equals(table)
    assert store.read(stored.path, io="parquet").equals(table)


def test_pandas_frame_is_stored_as_parquet_and_read_back_as_arrow(store):
    frame = pd.DataFrame({"x": [1.5, 2.5], "s": ["u", "v"]})
    stored = store.write("frame", frame, run_id="r")
    assert stored.format == "parquet" and stored.rows == 2
    back = store.read(stored.path)
    assert isinstance(back, pa.Table)
    pd.testing.assert_frame_equal(back.to_pandas(), frame)


def test_json_values_round_trip(store):
    import numpy as np

    for i, value in enumerate([42, 3.5, "text", None, [1, 2, 3], {"a": {"b": [True]}}]):
        stored = store.write("scalar", value, io="json", run_id=f"r{i}")
        assert stored.format == "json" and stored.schema is None
        assert stored.path.endswith(f"/scalar/{UNPARTITIONED}/r{i}.json")
        assert store.read(stored.path) == value
    assert store.write("numbers", [1, 2], run_id="auto").rows == 2  # io=None -> json
    stored = store.write("np", {"mean": np.float64(1.5), "v": np.arange(3)}, io="json", run_id="n")
    assert store.read(stored.path) == {"mean": 1.5, "v": [0, 1, 2]}


def test_runs_never_collide_and_old_files_stay(store):
    first = store.write("a", pa.table({"v": [1]}), run_id="run-1")
    second = store.write("a", pa.table({"v": [2]}), run_id="run-2")
    assert first.path != second.path
    assert store.read(first.path).column("v").to_pylist() == [1]
    assert store.read(second.path).column("v").to_pylist() == [2]


def test_local_layout_and_default_base_url(daskflow_home):
    store = AssetStore()
    assert store.base_url == str(daskflow_home / "data")
    stored = store.write("grp/asset", pa.table({"v": [1]}), run_id="r1")
    assert stored.path == str(daskflow_home / "data" / "grp" / "asset" / UNPARTITIONED / "r1.parquet")
    assert os.listdir(daskflow_home / "data" / "grp" / "asset" / UNPARTITIONED) == ["r1.parquet"]


def test_unsafe_partition_keys_map_to_distinct_safe_segments(tmp_path):
    store = AssetStore(str(tmp_path))
    a = store.write("a", 1, io="json", partition="2024-01-01T00:00", run_id="r")
    b = store.write("a", 1, io="json", partition="2024-01-01T00_00", run_id="r")
    c = store.write("a", 1, io="json", partition="../../escape", run_id="r")
    assert len({a.path, b.path, c.path}) == 3
    for stored in (a, b, c):
        assert stored.path.startswith(str(tmp_path) + "/a/")
        assert ":" not in stored.path and "/../" not in stored.path


def test_store_pickles_and_reads_in_another_instance(tmp_path):
    store = AssetStore(str(tmp_path))
    stored = store.write("a", pa.table({"v": [7]}), run_id="r")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.base_url == store.base_url
    assert clone.read(stored.path).column("v").to_pylist() == [7]


def test_s3_objects_are_visible_to_an_independent_client(s3_endpoint):
    import s3fs

    store = _s3_store(s3_endpoint)
    stored = store.write("events", pa.table({"v": list(range(100))}), partition="p1", run_id="r")
    assert stored.path.startswith("s3://") and stored.path.endswith("/events/p1/r.parquet")
    other = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing")
    assert other.ls(stored.path.rsplit("/", 1)[0]) == [stored.path[len("s3://"):]]
    with other.open(stored.path, "rb") as f:
        assert pq.read_table(f).num_rows == 100


def test_worker_address_is_recorded_inside_a_dask_worker():
    from distributed.utils_test import gen_cluster

    base = f"memory://daskflow-worker-{uuid.uuid4().hex[:8]}"

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def run(c, s, a):
        stored = await c.submit(AssetStore(base).write, "x", pa.table({"v": [1]}), run_id="r")
        assert stored.worker == a.address
        assert stored.host is None  # a shared object store has no host

    run()


def test_local_write_inside_a_worker_records_the_workers_host_as_the_scheduler_names_it(tmp_path):
    from distributed.utils_test import gen_cluster

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def run(c, s, a):
        stored = await c.submit(AssetStore(str(tmp_path)).write, "x", pa.table({"v": [1]}), run_id="r")
        assert stored.worker == a.address
        assert stored.host == s.workers[a.address].host == "127.0.0.1"

    run()


# -- atomicity ---------------------------------------------------------------------
def _failing_parquet_writer(monkeypatch):
    def write_half_then_fail(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("daskflow.storage.pq.write_table", write_half_then_fail)


def test_writer_failing_midway_leaves_no_file_and_no_temp_debris(store, monkeypatch):
    good = store.write("a", pa.table({"v": [1]}), run_id="good")
    before = _listing(store)
    _failing_parquet_writer(monkeypatch)
    with pytest.raises(StorageError, match="asset 'a'.*disk on fire"):
        store.write("a", pa.table({"v": [2]}), run_id="bad")
    with pytest.raises(StorageError):
        store.write("b", pa.table({"v": [2]}), partition="p", run_id="bad")
    assert _listing(store) == before
    assert not store.exists(store.url(store.path_for("a", None, "bad")))
    monkeypatch.undo()
    assert store.read(good.path).column("v").to_pylist() == [1]


def test_failure_while_publishing_removes_the_temp_file(store, monkeypatch):
    def broken_move(*args, **kwargs):
        raise OSError("rename failed")

    monkeypatch.setattr(store.fs, "mv", broken_move)
    with pytest.raises(StorageError, match="rename failed"):
        store.write("a", {"k": 1}, io="json", run_id="r")
    assert _listing(store) == []


def test_interrupt_during_write_leaves_nothing_and_propagates(tmp_path, monkeypatch):
    store = AssetStore(str(tmp_path / "data"))

    def interrupted(table, where, **kwargs):
        where.write(b"PAR1")
        raise KeyboardInterrupt

    monkeypatch.setattr("daskflow.storage.pq.write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write("a", pa.table({"v": [1]}), run_id="r")
    assert _listing(store) == []


def test_remove_temp_files_sweeps_debris_of_killed_writers(tmp_path):
    store = AssetStore(str(tmp_path))
    kept = store.write("a", pa.table({"v": [1]}), run_id="r")
    debris = tmp_path / "a" / UNPARTITIONED / ".r2.parquet.tmp-abc"
    debris.write_bytes(b"PAR1")
    assert store.remove_temp_files(min_age_s=3600) == []  # too young: a writer may still own it
    assert store.remove_temp_files(min_age_s=0) == [str(debris)]
    assert not debris.exists() and store.exists(kept.path)


# -- unsupported values ------------------------------------------------------------
def test_unsupported_values_get_a_clear_error_and_nothing_is_written(tmp_path):
    store = AssetStore(str(tmp_path))

    class Model:
        pass

    with pytest.raises(StorageError, match=r"asset 'model'.*Model.*pyarrow.Table / pandas.DataFrame.*io='json'"):
        store.write("model", Model(), io="parquet", run_id="r")
    with pytest.raises(StorageError, match=r"asset 'model': value is not JSON-able"):
        store.write("model", Model(), run_id="r")
    with pytest.raises(StorageError, match=r"asset 'model': value is not JSON-able"):
        store.write("model", {"s": {1, 2}}, io="json", run_id="r")
    with pytest.raises(StorageError, match="io='parquet'"):
        store.write("t", pa.table({"v": [1]}), io="json", run_id="r")
    with pytest.raises(StorageError, match="unknown io='pickle'"):
        store.write("t", 1, io="pickle", run_id="r")
    assert _listing(store) == []


def test_reading_a_missing_file_names_the_path_and_the_fix(tmp_path):
    store = AssetStore(str(tmp_path))
    with pytest.raises(StorageError, match=r"does not exist.*re-materialize"):
        store.read(str(tmp_path / "nope.parquet"))


# -- schemas -----------------------------------------------------------------------
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), pa.field("price", pa.float64(), nullable=False)])


def test_schema_match_passes_and_conforms_column_order(tmp_path):
    store = AssetStore(str(tmp_path))
    frame = pd.DataFrame({"price": [1.0], "name": ["x"], "id": [1]})  # pandas 3: large_string
    stored = store.write("prices", frame, schema=SCHEMA, run_id="r")
    assert store.read(stored.path).schema.equals(SCHEMA, check_metadata=False)
    assert stored.schema == "id: int64\nname: string\nprice: double not null"


def test_schema_mismatch_names_asset_field_expected_and_actual_type(tmp_path):
    store = AssetStore(str(tmp_path))
    table = pa.table({"id": ["1"], "name": ["x"], "price": [1.0]})
    with pytest.raises(SchemaMismatchError) as info:
        store.write("prices", table, schema=SCHEMA, run_id="r")
    message = str(info.value)
    assert "asset 'prices'" in message
    assert "field 'id': expected type int64, actual type string" in message
    assert "Fix the asset's output or its schema=" in message
    assert _listing(store) == []  # validated before anything is written


def test_schema_reports_missing_extra_and_null_fields_together():
    table = pa.table({"id": [1, 2], "price": [1.0, None], "extra": [True, False]})
    with pytest.raises(SchemaMismatchError) as info:
        validate_schema("prices", table, SCHEMA)
    message = str(info.value)
    assert "field 'name': expected type string, actual: missing" in message
    assert "field 'extra': not in the declared schema (actual type bool)" in message
    assert "field 'price': declared not nullable, actual column has 1 nulls" in message
    assert "field 'id'" not in message


def test_schema_with_json_io_is_rejected(tmp_path):
    with pytest.raises(StorageError, match="schema= applies to tables only"):
        AssetStore(str(tmp_path)).write("n", 1, io="json", schema=SCHEMA, run_id="r")


def test_read_returns_pandas_when_asked_or_when_pandas_was_written(tmp_path):
    store = AssetStore(str(tmp_path))
    frame = pd.DataFrame({"price": [1.0, 2.0], "name": ["x", "y"], "id": [1, 2]})
    from_pandas = store.write("f", frame, schema=SCHEMA, run_id="r").path
    from_arrow = store.write("t", pa.table({"v": [1]}), run_id="r").path
    pd.testing.assert_frame_equal(store.read(from_pandas, as_pandas=None), frame[["id", "name", "price"]],
                                  check_dtype=False)
    assert isinstance(store.read(from_arrow, as_pandas=None), pa.Table)
    assert isinstance(store.read(from_arrow, as_pandas=True), pd.DataFrame)
    assert isinstance(store.read(from_pandas), pa.Table)


@pytest.mark.parametrize("fsync", [False, True])
def test_fsync_is_opt_in(tmp_path, monkeypatch, fsync):
    import dask.config

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    with dask.config.set({"daskflow.storage.fsync": fsync}):
        store = AssetStore(str(tmp_path))
    stored = store.write("a", pa.table({"v": [1]}), run_id="r")
    assert len(synced) == (2 if fsync else 0)  # the file, then its directory
    assert store.read(stored.path).num_rows == 1


def _write_until_killed(base: str, ready) -> None:
    """Child process: start writing a Parquet file, report that bytes are out, then hang."""
    import time

    import pyarrow.parquet

    def write_forever(table, where, **kwargs):
        where.write(b"PAR1" + b"\0" * 65536)
        where.flush()
        ready.set()
        time.sleep(600)

    pyarrow.parquet.write_table = write_forever
    AssetStore(base).write("big", pa.table({"v": [1]}), run_id="killed")


def test_a_killed_writer_never_publishes_a_partial_file(tmp_path):
    import multiprocessing
    import signal

    import pyarrow.dataset as ds

    store = AssetStore(str(tmp_path / "data"))
    good = store.write("big", pa.table({"v": [1, 2]}), run_id="good")
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_write_until_killed, args=(store.base_url, ready))
    child.start()
    try:
        assert ready.wait(timeout=30), "the child never started writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    directory = tmp_path / "data" / "big" / UNPARTITIONED
    names = sorted(os.listdir(directory))
    assert names[0].startswith(".killed.parquet.tmp-")  # only a hidden temp file
    assert names[1:] == ["good.parquet"]
    assert not store.exists(store.url(store.path_for("big", None, "killed")))
    assert ds.dataset(str(directory)).to_table().num_rows == 2  # readers skip the hidden temp file
    assert store.remove_temp_files(min_age_s=0) == [str(directory / names[0])]
    assert os.listdir(directory) == ["good.parquet"] and store.read(good.path).num_rows == 2


def test_configured_s3_url_and_storage_options_are_the_default(s3_endpoint, tmp_path):
    import dask.config

    bucket_url = _s3_store(s3_endpoint).base_url  # creates a fresh bucket
    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    with dask.config.set({"daskflow.storage.url": bucket_url, "daskflow.storage.storage-options": options}):
        store = AssetStore()
        local = AssetStore(str(tmp_path))  # another URL: the S3 options do not apply to it
    assert store.base_url == bucket_url and store.storage_options == options
    assert local.storage_options == {}
    stored = store.write("configured", pa.table({"v": [1]}), run_id="r")
    assert stored.path.startswith(bucket_url + "/configured/")
    assert store.read(stored.path).num_rows == 1
    assert local.write("a", 1, io="json", run_id="r").path.startswith(str(tmp_path))
