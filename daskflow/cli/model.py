"""CLI commands: ``daskflow model train | show | eval | list | promote | rollback | drift | retrain``.

``train`` reads the task history (Parquet, ``daskflow.history.url``), trains
the duration and peak-memory models, registers the result as a candidate in
the model registry (``daskflow.models.url``) and promotes it only when it
beats the served model on the newest held-out run (else it is kept as a
rejected candidate); ``show`` prints a model's manifest and held-out
metrics; ``eval`` scores a model against a history (e.g. runs recorded after
training) next to the per-category mean baseline; ``list``, ``promote`` and
``rollback`` manage the registry's versions; ``drift`` lists the drift the
served model shows on the history recorded since it was trained;
``retrain`` runs the self-healing check once (train in a subprocess when
enough new history or drift exists). ``--json`` prints one JSON object
instead of the table.
"""

from __future__ import annotations

import json
from typing import Any

import click

from daskflow.cli import params


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def metrics_table(metrics: dict[str, Any]) -> str:
    """The metrics as a small text table: target, model median APE, baseline median APE, ratio, rows."""
    lines = [f"{'target':<10} {'model APE':>10} {'baseline APE':>13} {'ratio':>7} {'rows':>7}"]
    for label in ("duration", "memory"):
        lines.append(
            f"{label:<10} {_fmt(metrics.get(f'{label}_median_ape')):>10} "
            f"{_fmt(metrics.get(f'baseline_{label}_median_ape')):>13} {_fmt(metrics.get(f'{label}_ape_ratio')):>7} "
            f"{_fmt(metrics.get(f'{label}_rows')):>7}"
        )
    lines.append("(median absolute percentage error; ratio = model / baseline, < 1 is better)")
    return "\n".join(lines)


def _history_url(url: str | None) -> str:
    from daskflow import config

    return config.history_url(url)


def _model_url(url: str | None) -> str:
    from daskflow import config

    return config.models_url(url)


@click.group("model")
def model_group() -> None:
    """Train, inspect and evaluate the task-cost models."""


@model_group.command("train")
@click.option("--history", "history_url", default=None, help="history dataset URL (default: daskflow.history.url)")
@click.option("--out", "out_url", default=None, help="model directory URL (default: daskflow.models.url)")
@click.option("--since", type=params.SINCE, default=None, help="only rows recorded since: ISO date/time or a duration ago (7d, 12h)")
@click.option("--rounds", type=click.IntRange(1, 100_000), default=200, show_default=True, help="boosting rounds per model")
@click.option("--json", "as_json", is_flag=True, help="print the manifest as JSON")
def train_command(history_url: str | None, out_url: str | None, since: str | None, rounds: int, as_json: bool) -> None:
    """Train the duration and peak-memory models from the task history."""
    from daskflow.errors import DaskflowError
    from daskflow.learning.history import read_history
    from daskflow.learning.retrain import train_and_register

    history_url = _history_url(history_url)
    out_url = _model_url(out_url)
    history = read_history(history_url, since=since)
    try:
        outcome = train_and_register(history, out_url, "daskflow model train", rounds=rounds)
    except DaskflowError as exc:
        raise click.ClickException(str(exc)) from exc
    manifest = outcome["manifest"]
    registry = {k: outcome[k] for k in ("decision", "reason", "version", "previous")}
    if as_json:
        click.echo(json.dumps({"model_url": out_url, "history_url": history_url, **manifest, "registry": registry}, default=str))
        return
    click.echo(f"model {manifest['model_version']} -> {out_url}")
    click.echo(
        f"trained on {manifest['rows']} rows, {manifest['runs']} runs, {len(manifest['category_levels'])} categories "
        f"({manifest['training_window']['start']} .. {manifest['training_window']['end']}); "
        f"held-out split: {manifest['metrics']['split']} ({manifest['metrics']['rows_test']} rows)"
    )
    click.echo(metrics_table(manifest["metrics"]))
    click.echo(f"registry: {outcome['decision']} {outcome['version']} ({outcome['reason']})")


@model_group.command("show")
@click.option("--model", "model_url", default=None, help="model directory URL (default: daskflow.models.url)")
@click.option("--json", "as_json", is_flag=True, help="print the manifest as JSON")
def show_command(model_url: str | None, as_json: bool) -> None:
    """Print a model's version, training window, features and held-out metrics."""
    import fsspec.core

    model_url = _model_url(model_url)
    fs, root = fsspec.core.url_to_fs(model_url)
    try:
        with fs.open(root.rstrip("/") + "/manifest.json", "rb") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise click.ClickException(f"no model at {model_url!r} (manifest.json missing); train one with `daskflow model train`") from None
    except ValueError as exc:
        raise click.ClickException(f"manifest.json at {model_url!r} is not valid JSON ({exc}); retrain with `daskflow model train`") from exc
    if as_json:
        click.echo(json.dumps({"model_url": model_url, **manifest}, default=str))
        return
    click.echo(f"model {manifest.get('model_version')} at {model_url}")
    click.echo(f"created {manifest.get('created_at')}, xgboost {manifest.get('xgboost_version')}")
    window = manifest.get("training_window") or {}
    click.echo(f"rows {manifest.get('rows')}, runs {manifest.get('runs')}, window {window.get('start')} .. {window.get('end')}")
    click.echo(f"categories ({len(manifest.get('category_levels', []))}): {', '.join(manifest.get('category_levels', [])[:20])}")
    click.echo(f"features: {', '.join(manifest.get('feature_columns', []))}")
    click.echo(metrics_table(manifest.get("metrics") or {}))
    for line in serving_lines(manifest):
        click.echo(line)
    from daskflow.learning.registry import ModelRegistry

    try:
        events = ModelRegistry(model_url).read_events(limit=10)
    except Exception:  # noqa: BLE001 - the event log is informative only
        events = []
    if events:
        click.echo("recent model events:")
        for event in events:
            click.echo("  " + event_line(event))


def serving_lines(manifest: dict[str, Any]) -> list[str]:
    """Which candidate serves how many categories, per target, and the p90 coverage held out (format 2)."""
    composite = manifest.get("composite") if isinstance(manifest.get("composite"), dict) else None
    if composite is None:
        return []
    lines = []
    for target, selection in sorted((composite.get("selection") or {}).items()):
        counts: dict[str, int] = {}
        for name in (selection.get("choice") or {}).values():
            counts[name] = counts.get(name, 0) + 1
        chosen = ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none"
        lines.append(f"serving {target}: {chosen} categories; small/unseen: {selection.get('fallback')}")
    metrics = manifest.get("metrics") or {}
    lines.append(f"held-out p90 coverage: duration {_fmt(metrics.get('duration_p90_coverage'))}, memory {_fmt(metrics.get('memory_p90_coverage'))}")
    return lines


def event_line(event: dict[str, Any]) -> str:
    import datetime as dt

    at = event.get("at")
    when = dt.datetime.fromtimestamp(float(at), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if isinstance(at, (int, float)) else "-"
    detail = {k: v for k, v in event.items() if k not in ("event", "at")}
    return f"{when} {event.get('event')}: " + ", ".join(f"{k}={v}" for k, v in sorted(detail.items()) if v is not None)


@model_group.command("eval")
@click.option("--history", "history_url", default=None, help="history dataset URL (default: daskflow.history.url)")
@click.option("--model", "model_url", default=None, help="model directory URL (default: daskflow.models.url)")
@click.option("--since", type=params.SINCE, default=None, help="only rows recorded since: ISO date/time or a duration ago (7d, 12h)")
@click.option("--json", "as_json", is_flag=True, help="print the metrics as JSON")
def eval_command(history_url: str | None, model_url: str | None, since: str | None, as_json: bool) -> None:
    """Score a model on recorded history against the per-category mean baseline."""
    from daskflow.learning.history import read_history
    from daskflow.learning.predictor import Predictor
    from daskflow.learning.training import evaluate, usable_rows

    history_url = _history_url(history_url)
    model_url = _model_url(model_url)
    rows = usable_rows(read_history(history_url, since=since))
    if not len(rows):
        raise click.ClickException(f"no successful task rows in the history at {history_url!r}; record some runs first")
    predictor = Predictor.load(model_url)
    metrics = evaluate(predictor, rows)
    if as_json:
        click.echo(json.dumps({"model_url": model_url, "history_url": history_url, "model_version": predictor.model_version, **metrics}))
        return
    click.echo(f"model {predictor.model_version or '(none: baseline only)'} on {len(rows)} rows from {history_url}")
    click.echo(metrics_table(metrics))


@model_group.command("list")
@click.option("--model", "model_url", default=None, help="model directory URL (default: daskflow.models.url)")
@click.option("--json", "as_json", is_flag=True, help="print the versions as JSON")
def list_command(model_url: str | None, as_json: bool) -> None:
    """List the registry's model versions (oldest first), their status and why."""
    from daskflow.errors import DaskflowError
    from daskflow.learning.registry import ModelRegistry

    model_url = _model_url(model_url)
    try:
        versions = ModelRegistry(model_url).list_versions()
    except (DaskflowError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"model_url": model_url, "versions": versions}, default=str))
        return
    if not versions:
        click.echo(f"no model versions at {model_url}; train one with `daskflow model train`")
        return
    click.echo(f"{'':1} {'version':<32} {'status':<10} {'rows':>7} {'dur APE':>8} reason")
    for v in versions:
        metrics = v.get("metrics") or {}
        click.echo(f"{'*' if v['current'] else ' '} {v['version']:<32} {v.get('status', '-'):<10} {_fmt(v.get('rows')):>7} "
                   f"{_fmt(metrics.get('duration_median_ape')):>8} {v.get('reason') or ''}")


@model_group.command("promote")
@click.argument("version")
@click.option("--model", "model_url", default=None, help="model directory URL (default: daskflow.models.url)")
@click.option("--reason", default="promoted by hand", show_default=True, help="why (kept in the registry)")
def promote_command(version: str, model_url: str | None, reason: str) -> None:
    """Serve VERSION from now on (running predictors pick it up on their next reload)."""
    from daskflow.errors import DaskflowError
    from daskflow.learning.registry import ModelRegistry

    model_url = _model_url(model_url)
    try:
        ModelRegistry(model_url).promote(version, reason)
    except DaskflowError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"promoted {version} at {model_url}")


@model_group.command("rollback")
@click.option("--model", "model_url", default=None, help="model directory URL (default: daskflow.models.url)")
@click.option("--reason", default="rolled back by hand", show_default=True, help="why (kept in the registry)")
def rollback_command(model_url: str | None, reason: str) -> None:
    """Serve the previously promoted version again (its exact bytes)."""
    from daskflow.errors import DaskflowError
    from daskflow.learning.registry import ModelRegistry

    model_url = _model_url(model_url)
    try:
        version = ModelRegistry(model_url).rollback(reason)
    except DaskflowError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"rolled back to {version} at {model_url}")


@model_group.command("drift")
@click.option("--history", "history_url", default=None, help="history dataset URL (default: daskflow.history.url)")
@click.option("--model", "model_url", default=None, help="model directory URL (default: daskflow.models.url)")
@click.option("--json", "as_json", is_flag=True, help="print the drift events as JSON")
def drift_command(history_url: str | None, model_url: str | None, as_json: bool) -> None:
    """List the categories whose cost drifted from the served model's predictions since it was trained."""
    import warnings

    from daskflow.learning.drift import detect_drift, drift_config_from_settings
    from daskflow.learning.history import read_history
    from daskflow.learning.predictor import Predictor
    from daskflow.learning.retrain import new_history

    history_url = _history_url(history_url)
    model_url = _model_url(model_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        predictor = Predictor.load(model_url)
    if not predictor.has_model:
        raise click.ClickException(f"no usable model at {model_url!r} ({predictor.load_error or 'missing'}); train one with `daskflow model train`")
    rows = new_history(read_history(history_url), predictor.manifest)
    baselines = predictor.composite.drift_baselines if predictor.composite is not None else None
    events = detect_drift(rows, baselines, predictor.model_version, config=drift_config_from_settings())
    if as_json:
        click.echo(json.dumps({"model_url": model_url, "model_version": predictor.model_version, "rows": len(rows), "drift": events}, default=str))
        return
    click.echo(f"model {predictor.model_version}: {len(rows)} rows recorded since training, {len(events)} drift event(s)")
    for event in events:
        click.echo("  " + event_line(event))


@model_group.command("retrain")
@click.option("--history", "history_url", default=None, help="history dataset URL (default: daskflow.history.url)")
@click.option("--model", "model_url", default=None, help="model directory URL (default: daskflow.models.url)")
@click.option("--min-new-rows", type=int, default=None, help="retrain when at least this many rows were recorded since training (default: daskflow.models.retrain.min-new-rows)")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as JSON")
def retrain_command(history_url: str | None, model_url: str | None, min_new_rows: int | None, as_json: bool) -> None:
    """Retrain (in a subprocess) if enough new history or drift exists; promote or reject the candidate."""
    from daskflow.learning.retrain import maybe_retrain, retrain_config_from_settings

    outcome = maybe_retrain(_model_url(model_url), _history_url(history_url), config=retrain_config_from_settings(min_new_rows=min_new_rows))
    if as_json:
        click.echo(json.dumps(outcome, default=str))
    else:
        click.echo(f"{outcome['decision']}: {outcome['reason']}" + (f" (version {outcome['version']})" if outcome.get("version") else ""))
    if outcome["decision"] == "error":
        raise click.ClickException(outcome["reason"])


commands: list = [model_group]
