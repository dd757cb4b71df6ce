"""OpenLineage export: a run listener that turns a daskflow run into OpenLineage ``RunEvent``s.

Design note
-----------
One OpenLineage *job* per asset (namespace ``daskflow.openlineage.namespace``,
name = the asset key) and one OpenLineage *run* per asset-partition, whose
``parent`` facet is the daskflow run (job = the pipeline). Each asset-partition
gets a START and exactly one of COMPLETE (materialized), FAIL (raised) or
ABORT (skipped because an upstream failed); a terminal event for an
asset-partition that never had ``asset_started`` gets its START first, so
pairing holds whatever the run loop reports. Up-to-date (``stale-skipped``)
asset-partitions did not run and emit nothing. Checks are jobs of their own,
``<asset>.check.<name>``, whose input is the asset's dataset carrying a
``dataQualityAssertions`` facet. The daskflow run itself is a run of the
pipeline job (START on ``run_started``, COMPLETE / FAIL / ABORT on
``run_finished``).

Datasets are named by storage URL (OpenLineage naming: namespace = scheme +
authority, ``file`` for local paths; name = the path): the asset's directory in
the store, ``<root>/<asset key>``, so one asset is one dataset across runs and
partitions; the data version goes in the ``version`` facet. Inputs are the
asset-partitions ``RunInfo.inputs`` lists, named by the URL seen in this run
or ``<store root>/<key>``. Facets: ``schema``
(from the Arrow schema), ``dataSource``, ``version``, ``outputStatistics``,
``columnLineage`` when an asset declares
``metadata={"column_lineage": {"out_col": ["upstream_asset.col", ...]}}``.

Export never slows or breaks a run: listener methods snapshot plain values and
hand a thunk to :class:`~daskflow.lineage.emitter.BackgroundEmitter`; events
are built and sent on its thread; every listener method swallows its own errors.

State (:class:`_ExportState`): the run context, the asset-partitions started,
and the dataset URL + schema of every output seen in this run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from daskflow.lineage.describe import (  # noqa: F401 - re-exported
    LineageAsset,
    asset_dataset_url,
    asset_run_id,
    column_lineage_of,
    dataset_naming,
    dataset_url_for,
    describe_assets,
    openlineage_enabled,
    parent_run_id,
    schema_fields,
)
from daskflow.lineage.emitter import BackgroundEmitter, LineageExportWarning
from daskflow.listeners import RunListener

INSTALL_HINT = "pip install 'daskflow[lineage]'"
INTEGRATION = "DASKFLOW"
_RECORD_FIELDS = ("asset", "partition", "status", "duration_s", "rows", "bytes", "path", "worker", "host",
                  "error", "traceback", "reason", "data_version", "schema", "inputs", "check", "blocking", "message",
                  "run_id", "pipeline", "tags", "assets", "task_key")


@dataclasses.dataclass
class _ExportState:
    run_id: str = ""
    pipeline: str = "daskflow-run"
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    assets: dict[str, LineageAsset] = dataclasses.field(default_factory=dict)
    started: set[tuple[str, str | None]] = dataclasses.field(default_factory=set)  # (asset, partition)
    outputs: dict[str, tuple[str, Any]] = dataclasses.field(default_factory=dict)  # asset -> (dataset URL, schema)
    #: RunInfo.inputs: (asset, partition) -> the asset-partitions it reads
    inputs: dict[tuple[str, str | None], list[tuple[str, str | None]]] = dataclasses.field(default_factory=dict)


def _require_client():
    """The ``openlineage.client`` module, or :class:`~daskflow.errors.OptionalDependencyError` with the install hint."""
    from daskflow.errors import import_optional

    return import_optional("openlineage.client", "lineage")


def _fields(obj: Any) -> dict[str, Any]:
    """A plain snapshot of a record / run / result (dataclass, dict or any object)."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj):
        return dict(vars(obj))
    return {name: getattr(obj, name) for name in _RECORD_FIELDS if hasattr(obj, name)}


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).isoformat()


# -- the listener -------------------------------------------------------------
_UNSET: Any = object()


class OpenLineageListener(RunListener):
    """Export a run as OpenLineage events: a :class:`~daskflow.listeners.RunListener`.

    Every argument defaults to its ``daskflow.openlineage.*`` setting, so the class
    can be named in ``daskflow.execution.listeners`` (built with no arguments).
    ``client``: anything with ``emit(event)`` and ``close(timeout)`` (default: an
    ``OpenLineageClient`` configured by ``transport``, else by the client's own
    configuration). ``assets`` (:func:`describe_assets`) adds what the run does not
    report: declared column lineage, asset tags and schemas, input dataset URLs.
    :func:`openlineage_listener` builds one only when export is enabled.
    """

    def __init__(self, *, namespace: str | None = None, transport: Mapping | None = _UNSET, client: Any = None,
                 assets: Mapping[str, LineageAsset] | None = None, queue_size: int | None = None,
                 max_attempts: int | None = None, retry_backoff_s: float | None = None,
                 close_timeout_s: float | None = None, dataset_root: str | None = None):
        from dask.utils import parse_timedelta

        from daskflow import config

        _require_client()
        from openlineage.client import OpenLineageClient

        import daskflow

        def setting(value: Any, name: str, seconds: bool = False) -> Any:
            if value is not None and value is not _UNSET:
                return value
            raw = config.get(f"openlineage.{name}")
            return parse_timedelta(raw, default="s") if seconds else raw

        self.namespace = str(setting(namespace, "namespace") or "daskflow")
        transport = config.get("openlineage.transport") if transport is _UNSET else transport
        if isinstance(transport, str):  # the env-var form: DASK_DASKFLOW__OPENLINEAGE__TRANSPORT='{"type": "file", ...}'
            import json

            try:
                transport = json.loads(transport) if transport.strip() else None
            except ValueError as exc:
                raise ValueError(f"daskflow.openlineage.transport is not a JSON object ({exc}); use e.g. "
                                 '\'{"type": "http", "url": "http://localhost:5000"}\'') from None
        self.producer = f"https://pypi.org/project/daskflow/{daskflow.__version__}"
        self.client = client if client is not None else (
            OpenLineageClient(config={"transport": dict(transport)}) if transport else OpenLineageClient())
        self.describe = getattr(getattr(self.client, "transport", None), "kind", None) or "the OpenLineage endpoint"
        self._emitter_args = {"queue_size": int(setting(queue_size, "queue-size")),
                              "max_attempts": int(setting(max_attempts, "max-attempts")),
                              "retry_backoff_s": float(setting(retry_backoff_s, "retry-backoff", seconds=True))}
        self.close_timeout_s = float(setting(close_timeout_s, "close-timeout", seconds=True))
        self.dataset_root = dataset_root
        self.state = _ExportState(assets=dict(assets or {}))
        self.emitter: BackgroundEmitter | None = None

    # -- RunListener methods (each swallows its own errors) --------------------
    def run_started(self, run: Any) -> None:
        self._guard(self._run_started, run)

    def asset_started(self, run: Any, start: Any) -> None:
        self._guard(self._asset_started, _fields(start), time.time())

    def asset_materialized(self, run: Any, record: Any, stored: Any = None) -> None:
        fields = _fields(record)
        for name, value in _fields(stored).items():  # the worker's MaterializedEvent: path, schema, ...
            if fields.get(name) is None:
                fields[name] = value
        self._guard(self._asset_finished, fields, "COMPLETE")

    def asset_failed(self, run: Any, record: Any) -> None:
        self._guard(self._asset_finished, _fields(record), "FAIL")

    def asset_skipped(self, run: Any, record: Any) -> None:
        fields = _fields(record)
        if fields.get("status") != "stale-skipped":  # up to date: nothing ran, nothing to report
            self._guard(self._asset_finished, fields, "ABORT")

    def check_evaluated(self, run: Any, record: Any) -> None:
        self._guard(self._check_evaluated, _fields(record))

    def batch_finished(self, run: Any) -> None:
        pass  # events already stream out in the background

    def run_finished(self, run: Any, result: Any = None) -> None:
        self._guard(self._run_finished, _fields(result))
        self.close()

    def close(self, timeout_s: float | None = None) -> bool:
        """Flush queued events within ``timeout_s`` (default ``close-timeout``); True when all went out."""
        emitter, self.emitter = self.emitter, None
        if emitter is None:
            return True
        flushed = emitter.close(self.close_timeout_s if timeout_s is None else timeout_s)
        with contextlib.suppress(Exception):  # the transport's own close: nothing left to report
            self.client.close(1.0)
        return flushed and emitter.dropped == 0

    # -- internals --------------------------------------------------------------
    def _guard(self, method: Callable, *args: Any) -> None:
        try:
            method(*args)
        except Exception as exc:  # noqa: BLE001 - a listener bug must never break the run
            warnings.warn(f"daskflow OpenLineage export: {type(exc).__name__}: {exc}; events of this run may be "
                          "missing (the run is unaffected)", LineageExportWarning, stacklevel=3)

    def _submit(self, build: Callable[[], Any]) -> None:
        if self.emitter is None:
            self.emitter = BackgroundEmitter(self.client.emit, name="OpenLineage", describe=self.describe,
                                             **self._emitter_args)
        self.emitter.submit(build)

    def _run_started(self, run: Any) -> None:
        fields = _fields(run)
        st = self.state
        st.run_id = str(fields.get("run_id") or uuid.uuid4().hex)
        st.pipeline = str(fields.get("pipeline") or "daskflow-run")
        st.tags = {str(k): str(v) for k, v in dict(fields.get("tags") or {}).items()}
        st.assets.update(fields.get("assets") or {})
        st.inputs = {tuple(k): [tuple(i) for i in v] for k, v in dict(fields.get("inputs") or {}).items()}
        st.started.clear()
        st.outputs.clear()
        snap = (st.run_id, st.pipeline, dict(st.tags), time.time())
        self._submit(lambda: self._pipeline_event("START", *snap))

    def _run_finished(self, fields: dict) -> None:
        status = str(fields.get("status") or "success")
        event_type = {"success": "COMPLETE", "failure": "FAIL", "canceled": "ABORT"}.get(status, "COMPLETE")
        st = self.state
        snap = (st.run_id or str(fields.get("run_id") or ""), st.pipeline, dict(st.tags), time.time())
        self._submit(lambda: self._pipeline_event(event_type, *snap))

    def _inputs_of(self, asset: str, fields: dict) -> list[tuple[str, Any, str | None]]:
        """(dataset URL, schema, upstream asset) of each input: explicit ``inputs`` or the declared upstreams."""
        out = []
        for item in fields.get("inputs") or []:
            item = item if isinstance(item, Mapping) else {"path": str(item)}
            url = item.get("dataset") or (asset_dataset_url(item["path"]) if item.get("path") else None)
            if url:
                out.append((url, item.get("schema"), item.get("asset")))
        if out:
            return out
        partition = fields.get("partition")
        read = self.state.inputs.get((asset, partition))
        upstream = list(dict.fromkeys(a for a, _ in read)) if read is not None else \
            list(self.state.assets.get(asset, {}).get("upstream", []))
        for up in upstream:
            info = self.state.assets.get(up, {})
            url, schema = self.state.outputs.get(up, (info.get("dataset") or self._dataset_url(up), None))
            if url:
                out.append((url, schema or info.get("schema"), up))
        return out

    def _dataset_url(self, asset: str) -> str | None:
        """``<store root>/<asset key>``: the dataset of an asset not seen in this run (root from config)."""
        if self.dataset_root is None:
            try:
                from daskflow.storage import AssetStore

                store = AssetStore()
                self.dataset_root = store.url(store.root)
            except Exception:  # noqa: BLE001 - no store config: inputs stay unnamed, the event is still valid
                self.dataset_root = ""
        return dataset_url_for(self.dataset_root, asset) if self.dataset_root else None

    def _output_of(self, asset: str, fields: dict) -> tuple[str | None, Any]:
        info = self.state.assets.get(asset, {})
        url = asset_dataset_url(fields["path"]) if fields.get("path") else (info.get("dataset")
                                                                          or self._dataset_url(asset))
        return url, fields.get("schema") or info.get("schema")

    def _asset_started(self, fields: dict, now: float) -> None:
        asset, partition = str(fields["asset"]), fields.get("partition")
        if (asset, partition) in self.state.started:
            return
        self.state.started.add((asset, partition))
        ctx = self._asset_context(asset, fields)
        self._submit(lambda: self._asset_event("START", ctx, fields, now, output_facets=False))

    def _asset_finished(self, fields: dict, event_type: str) -> None:
        asset, partition = str(fields["asset"]), fields.get("partition")
        now = time.time()
        if (asset, partition) not in self.state.started:
            self._asset_started(fields, now - float(fields.get("duration_s") or 0.0))
        ctx = self._asset_context(asset, fields)
        if event_type == "COMPLETE" and ctx["output"][0]:
            self.state.outputs[asset] = ctx["output"]
        self._submit(lambda: self._asset_event(event_type, ctx, fields, now, output_facets=event_type == "COMPLETE"))

    def _asset_context(self, asset: str, fields: dict) -> dict[str, Any]:
        info = self.state.assets.get(asset, {})
        return {"run_id": self.state.run_id, "pipeline": self.state.pipeline,
                "tags": {**self.state.tags, **{str(k): str(v) for k, v in dict(info.get("tags") or {}).items()}},
                "inputs": self._inputs_of(asset, fields), "output": self._output_of(asset, fields),
                "column_lineage": column_lineage_of(info.get("metadata"))}

    def _check_evaluated(self, fields: dict) -> None:
        asset = str(fields["asset"])
        url, schema = self.state.outputs.get(asset) or self._output_of(asset, {})
        snap = (self.state.run_id, self.state.pipeline, dict(self.state.tags), url, schema, time.time())
        self._submit(lambda: self._check_events(fields, *snap))

    # -- event builders (run on the emitter's thread) ----------------------------
    def _run_facets(self, run_id: str, pipeline: str, tags: Mapping[str, str], *, parent: bool) -> dict:
        from openlineage.client import __version__ as ol_version
        from openlineage.client.facet_v2 import (
            parent_run,
            processing_engine_run,
            tags_run,
        )

        import daskflow

        facets: dict[str, Any] = {
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=daskflow.__version__, name="daskflow", openlineageAdapterVersion=ol_version,
                producer=self.producer)}
        if tags:
            facets["tags"] = tags_run.TagsRunFacet(
                tags=[tags_run.TagsRunFacetFields(key=k, value=v, source=INTEGRATION) for k, v in sorted(tags.items())],
                producer=self.producer)
        if parent:
            prun = parent_run_id(run_id)
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=prun), job=parent_run.Job(namespace=self.namespace, name=pipeline),
                root=parent_run.Root(run=parent_run.RootRun(runId=prun),
                                     job=parent_run.RootJob(namespace=self.namespace, name=pipeline)),
                producer=self.producer)
        return facets

    def _job(self, name: str, job_type: str):
        from openlineage.client.event_v2 import Job
        from openlineage.client.facet_v2 import job_type_job

        return Job(namespace=self.namespace, name=name, facets={"jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration=INTEGRATION, jobType=job_type, producer=self.producer)})

    def _dataset_facets(self, url: str, schema: Any) -> dict[str, Any]:
        from openlineage.client.facet_v2 import datasource_dataset, schema_dataset

        namespace, _ = dataset_naming(url)
        facets: dict[str, Any] = {"dataSource": datasource_dataset.DatasourceDatasetFacet(
            name=namespace, uri=namespace if "://" in namespace else "file:///", producer=self.producer)}
        fields = schema_fields(schema)
        if fields:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(
                fields=[_schema_field(f) for f in fields], producer=self.producer)
        return facets

    def _pipeline_event(self, event_type: str, run_id: str, pipeline: str, tags: dict, now: float):
        from openlineage.client.event_v2 import Run, RunEvent

        return RunEvent(eventType=event_type, eventTime=_iso(now), producer=self.producer,
                        run=Run(runId=parent_run_id(run_id), facets=self._run_facets(run_id, pipeline, tags,
                                                                                       parent=False)),
                        job=self._job(pipeline, "JOB"), inputs=[], outputs=[])

    def _asset_event(self, event_type: str, ctx: dict, fields: dict, now: float, *, output_facets: bool):
        from openlineage.client.event_v2 import (
            InputDataset,
            OutputDataset,
            Run,
            RunEvent,
        )
        from openlineage.client.facet_v2 import (
            column_lineage_dataset,
            dataset_version_dataset,
            error_message_run,
            output_statistics_output_dataset,
        )

        asset, partition = str(fields["asset"]), fields.get("partition")
        tags = dict(ctx["tags"])
        if partition is not None:
            tags["daskflow.partition"] = str(partition)
        if event_type != "START":
            for name in ("worker", "host", "reason"):
                if fields.get(name) is not None:
                    tags[f"daskflow.{name}"] = str(fields[name])
        run_facets = self._run_facets(ctx["run_id"], ctx["pipeline"], tags, parent=True)
        if event_type == "FAIL":
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=str(fields.get("error") or "failed"), programmingLanguage="python",
                stackTrace=fields.get("traceback") or None, producer=self.producer)
        inputs = [InputDataset(namespace=dataset_naming(url)[0], name=dataset_naming(url)[1],
                               facets=self._dataset_facets(url, schema))
                  for url, schema, _ in ctx["inputs"]]
        outputs = []
        url, schema = ctx["output"]
        if url:
            facets = self._dataset_facets(url, schema if output_facets else None)
            output_stats = {}
            if output_facets:
                if fields.get("data_version"):
                    facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                        datasetVersion=str(fields["data_version"]), producer=self.producer)
                lineage = self._column_lineage(ctx)
                if lineage:
                    facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
                        fields=lineage, producer=self.producer)
                if fields.get("rows") is not None or fields.get("bytes") is not None:
                    output_stats["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                        rowCount=fields.get("rows"), size=fields.get("bytes"), fileCount=1, producer=self.producer)
            outputs.append(OutputDataset(namespace=dataset_naming(url)[0], name=dataset_naming(url)[1],
                                         facets=facets, outputFacets=output_stats))
        return RunEvent(eventType=event_type, eventTime=_iso(now), producer=self.producer,
                        run=Run(runId=asset_run_id(ctx["run_id"], asset, partition), facets=run_facets),
                        job=self._job(asset, "ASSET"), inputs=inputs, outputs=outputs)

    def _column_lineage(self, ctx: dict) -> dict:
        from openlineage.client.facet_v2 import column_lineage_dataset as cl

        by_asset = {up: url for url, _, up in ctx["inputs"] if up}
        out = {}
        for column, refs in ctx["column_lineage"].items():
            fields = [cl.InputField(namespace=dataset_naming(by_asset[a])[0], name=dataset_naming(by_asset[a])[1],
                                    field=c) for a, c in refs if a in by_asset]
            if fields:
                out[column] = cl.Fields(inputFields=fields)
        return out

    def _check_events(self, fields: dict, run_id: str, pipeline: str, tags: dict, url: str | None, schema: Any,
                      now: float) -> list:
        from openlineage.client.event_v2 import InputDataset, Run, RunEvent
        from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq

        asset, partition, check = str(fields["asset"]), fields.get("partition"), str(fields.get("check"))
        status, blocking = str(fields.get("status")), bool(fields.get("blocking"))
        terminal = {"passed": "COMPLETE", "failed": "FAIL" if blocking else "COMPLETE"}.get(status, "ABORT")
        tags = {**tags, **({"daskflow.partition": str(partition)} if partition else {})}
        inputs = []
        if url:
            input_facets = {}
            if status in ("passed", "failed"):
                input_facets["dataQualityAssertions"] = dq.DataQualityAssertionsDatasetFacet(
                    assertions=[dq.Assertion(assertion=check, success=status == "passed",
                                             severity="error" if blocking else "warn",
                                             description=str(fields.get("message") or "") or None)],
                    producer=self.producer)
            inputs.append(InputDataset(namespace=dataset_naming(url)[0], name=dataset_naming(url)[1],
                                       facets=self._dataset_facets(url, schema), inputFacets=input_facets))
        job = self._job(f"{asset}.check.{check}", "CHECK")
        run = Run(runId=asset_run_id(run_id, asset, partition, check),
                  facets=self._run_facets(run_id, pipeline, tags, parent=True))
        # both events of the check come from this one thunk, START first
        return [RunEvent(eventType=kind, eventTime=_iso(now), producer=self.producer, run=run, job=job,
                         inputs=inputs, outputs=[]) for kind in ("START", terminal)]


def _schema_field(field: dict):
    from openlineage.client.facet_v2 import schema_dataset

    children = [_schema_field(c) for c in field.get("fields", [])] or None
    return schema_dataset.SchemaDatasetFacetFields(name=field["name"], type=field.get("type"), fields=children)


def openlineage_listener(assets: Mapping[str, LineageAsset] | None = None) -> OpenLineageListener | None:
    """The exporter configured by ``daskflow.openlineage.*``, or None when export is off.

    Export is on with ``enabled: true``, or (``enabled: null``) when a transport is
    configured here or the OpenLineage client finds its own configuration. A missing
    client or a bad configuration is ONE warning and no export, never a failed run.
    """
    from daskflow import config

    if not openlineage_enabled(config.get("openlineage.enabled"), config.get("openlineage.transport")):
        return None
    try:
        return OpenLineageListener(assets=assets)
    except Exception as exc:  # noqa: BLE001 - bad client config or missing extra: no export, never a failed run
        warnings.warn(f"daskflow OpenLineage export is off: {exc}. Fix: {INSTALL_HINT}, or correct "
                      "daskflow.openlineage.transport / the client's openlineage.yml", LineageExportWarning,
                      stacklevel=2)
        return None
