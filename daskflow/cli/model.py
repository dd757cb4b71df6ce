"""CLI commands: ``daskflow model train | show | eval``.

``train`` reads the task history (Parquet, ``daskflow.history.url``), trains
the duration and peak-memory models and writes the model directory
(``daskflow.models.url``); ``show`` prints a model's manifest and held-out
metrics; ``eval`` scores a model against a history (e.g. runs recorded after
training) next to the per-category mean baseline. ``--json`` prints one JSON
object instead of the table.
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
    from daskflow.learning.history import read_history
    from daskflow.learning.training import TrainingError, train_models

    history_url = _history_url(history_url)
    out_url = _model_url(out_url)
    history = read_history(history_url, since=since)
    try:
        manifest = train_models(history, out_url, rounds=rounds)
    except TrainingError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"model_url": out_url, "history_url": history_url, **manifest}, default=str))
        return
    click.echo(f"model {manifest['model_version']} -> {out_url}")
    click.echo(
        f"trained on {manifest['rows']} rows, {manifest['runs']} runs, {len(manifest['category_levels'])} categories "
        f"({manifest['training_window']['start']} .. {manifest['training_window']['end']}); "
        f"held-out split: {manifest['metrics']['split']} ({manifest['metrics']['rows_test']} rows)"
    )
    click.echo(metrics_table(manifest["metrics"]))


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


commands: list = [model_group]
