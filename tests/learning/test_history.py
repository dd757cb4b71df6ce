"""The history dataset: append-only, date-partitioned, atomic files, any fsspec URL."""

from __future__ import annotations

import uuid

import fsspec
import pytest

from daskflow.learning.history import (
    HISTORY_COLUMNS,
    append_history,
    history_files,
    read_history,
)
from daskflow.learning.predictor import Predictor
from daskflow.learning.training import train_models
from tests.learning.test_training import synthetic_history

pytestmark = pytest.mark.timeout(60)

DAY = 86_400.0
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def row(key: str, recorded_at: float, **extra) -> dict:
    return {"key": key, "category": key.split("-")[0], "duration_s": 1.0, "recorded_at": recorded_at,
            "outcome": "success", "tags": {"a": "b"}, **extra}


def test_appends_one_file_per_date_and_reads_back_all_columns(tmp_path):
    url = str(tmp_path / "history")
    first = append_history([row("a-1", T0), row("a-2", T0 + DAY)], url)
    second = append_history([row("b-1", T0 + DAY, peak_memory_bytes=123)], url)
    assert len(first) == 2 and len(second) == 1  # a flush spanning two dates writes two files
    assert sorted(p.split("/")[-2] for p in first + second) == ["date=2023-11-14", "date=2023-11-15", "date=2023-11-15"]
    frame = read_history(url)
    assert list(frame.columns) == list(HISTORY_COLUMNS)
    assert sorted(frame["key"]) == ["a-1", "a-2", "b-1"]
    assert frame.set_index("key").loc["a-1", "tags"] == '{"a": "b"}'
    assert frame.set_index("key").loc["b-1", "peak_memory_bytes"] == 123


def test_since_filters_by_time_and_skips_older_date_directories(tmp_path):
    url = str(tmp_path / "history")
    append_history([row("a-1", T0), row("a-2", T0 + 3 * DAY)], url)
    assert read_history(url, since="2023-11-16")["key"].tolist() == ["a-2"]
    assert read_history(url, since=T0 + 1)["key"].tolist() == ["a-2"]
    assert len(history_files(url, since="2023-11-16")) == 1
    assert read_history(url, since="1d").empty  # a duration ago: nothing that recent


def test_half_written_files_are_invisible_and_missing_dataset_is_empty(tmp_path):
    url = tmp_path / "history"
    append_history([row("a-1", T0)], str(url))
    partition = next(url.glob("date=*"))
    (partition / ".tmp-part-crashed.parquet").write_bytes(b"PAR1 truncated")
    assert read_history(str(url))["key"].tolist() == ["a-1"]
    empty = read_history(str(tmp_path / "nothing-here"))
    assert empty.empty and list(empty.columns) == list(HISTORY_COLUMNS)


def test_history_and_models_on_a_non_local_fsspec_url():
    root = f"memory://daskflow-test-{uuid.uuid4().hex[:8]}"
    try:
        append_history(synthetic_history(runs=2, tasks=30).to_dict("records"), f"{root}/history")
        history = read_history(f"{root}/history")
        assert len(history) == 60
        manifest = train_models(history, f"{root}/models", rounds=10)
        predictor = Predictor.load(f"{root}/models")
        assert predictor.model_version == manifest["model_version"]
        assert predictor.predict(history.head(3)).quality.tolist() == ["model"] * 3
    finally:
        fsspec.filesystem("memory").rm(root.replace("memory://", "/"), recursive=True)
