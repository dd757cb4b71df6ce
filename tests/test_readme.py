"""README snippets run as written: the "Defining assets" example is extracted and materialized."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"

pytestmark = pytest.mark.timeout(120)


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of one ``## section`` of the README, in order."""
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end != -1 else None]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


def test_defining_assets_snippet_runs_as_written(daskflow_home, tmp_path):
    from distributed import Client, LocalCluster

    import daskflow

    snippet, script = python_blocks("Defining assets")[:2]
    pipeline = tmp_path / "sales.py"
    pipeline.write_text(snippet)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        result = daskflow.materialize(str(pipeline), client=client, progress=False)
    assert result.ok, [(r.asset, r.partition, r.error) for r in result.records if r.error]
    revenue = result.record("sales/revenue")
    assert revenue.status == "success" and len(result.by_status("success")) == 8  # 7 days + revenue
    assert [c.status for c in result.checks] == ["passed"]
    assert 'if __name__ == "__main__":' in script and 'daskflow.materialize("sales.py")' in script
