"""Manifest validation (issue 16.4): every wrong-typed field gives baseline predictions and ONE warning, never an exception."""

from __future__ import annotations

import copy
import json
import warnings

import pytest

from daskflow.errors import ModelUnavailableError
from daskflow.learning.manifest import validate_manifest
from daskflow.learning.predictor import Predictor
from daskflow.learning.training import train_models
from tests.learning.test_training import synthetic_history

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("manifest") / "models"
    train_models(synthetic_history(runs=2, tasks=60), str(out), rounds=10)
    return out


def _set(manifest: dict, path: tuple, value) -> dict:
    broken = copy.deepcopy(manifest)
    node = broken
    for part in path[:-1]:
        node = node[part] if not isinstance(node, list) else node[int(part)]
    node[path[-1]] = value
    return broken


DAMAGES = {
    "format-string": (("format",), "2"),
    "category_levels-string": (("category_levels",), "parse"),
    "category_levels-numbers": (("category_levels",), [1, 2]),
    "feature_defaults-list": (("feature_defaults",), [1]),
    "feature_defaults-string-value": (("feature_defaults", "worker_threads"), "one"),
    "feature_defaults-unknown-feature": (("feature_defaults", "no_such_feature"), 1.0),
    "baseline-list": (("baseline",), []),
    "category_means-string": (("baseline", "category_means"), "x"),
    "category_mean-duration-string": (("baseline", "category_means", "parse", "duration_s"), "fast"),
    "category_mean-duration-missing": (("baseline", "category_means", "parse", "duration_s"), None),
    "category_mean-count-negative": (("baseline", "category_means", "parse", "duration_count"), -3),
    "category_mean-memory-bool": (("baseline", "category_means", "parse", "peak_memory_bytes"), True),
    "baseline_categories-dict-of-strings": (("baseline_categories", "duration"), "parse"),
    "targets-list": (("targets",), ["duration.ubj"]),
    "target-file-number": (("targets", "duration", "file"), 7),
    "target-file-escapes": (("targets", "duration", "file"), "../../etc/passwd"),
    "feature_columns-string": (("feature_columns",), "category"),
    "composite-string": (("composite",), "yes"),
    "selection-choice-unknown": (("composite", "selection", "duration", "choice", "parse"), "magic"),
    "selection-fallback-number": (("composite", "selection", "duration", "fallback"), 3),
    "spread-pooled-string": (("composite", "spread", "duration", "pooled"), "wide"),
    "spread-q90-string": (("composite", "spread", "duration", "pooled", "q90"), "0.5"),
    "scaling-law-slope-string": (("composite", "scaling", "duration", "laws", "parse", "slope"), "steep"),
    "scaling-laws-list": (("composite", "scaling", "duration", "laws"), [1, 2]),
    "online-prior-string": (("composite", "online_priors", "duration", ""), "k"),
    "drift-sigma-negative": (("composite", "drift_baselines", "duration", ""), {"mean": 0.0, "sigma": -1.0}),
    "model_version-number": (("model_version",), 12),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_wrong_typed_field_gives_baseline_predictions_and_one_warning(model_dir, tmp_path, damage):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    path, value = DAMAGES[damage]
    broken = _set(manifest, path, value)
    with pytest.raises(ModelUnavailableError, match="retrain with `daskflow model train`"):
        validate_manifest(broken)
    # On disk, through Predictor.load (the scheduler path): one warning, baseline, no exception.
    directory = tmp_path / "broken"
    directory.mkdir()
    for file in model_dir.iterdir():
        (directory / file.name).write_bytes(file.read_bytes())
    (directory / "manifest.json").write_text(json.dumps(broken))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = Predictor.load(str(directory), default_duration_s=0.25, reload_interval_s=0)
        predictor.maybe_reload()
        predictions = predictor.predict([{"category": "parse", "input_bytes": 10**6}, {"category": "new"}])
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "unusable" in messages[0], messages
    assert not predictor.has_model and predictor.load_error
    assert list(predictions.quality) == ["default", "default"] and list(predictions.duration_s) == [0.25, 0.25]
    # In memory, through install_model (training, tests, the registry): the same.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        direct = Predictor.from_parts(broken, {}, default_duration_s=0.25)
        assert direct.predict([{"category": "parse"}]).duration_s[0] == 0.25
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1


def test_valid_manifest_serves_p90_above_p50_and_sources(model_dir):
    predictor = Predictor.load(str(model_dir))
    assert predictor.manifest["format"] == 2 and predictor.composite is not None
    rows = [{"category": "parse", "kind": "replay", "input_bytes": 10**7, "n_dependencies": 1}, {"category": "never-seen"}]
    predictions = predictor.predict(rows)
    assert predictions.quality[0] == "model" and predictions.source[0] in ("model", "scaling", "blend")
    assert predictions.p90_duration_s[0] > predictions.duration_s[0]
    assert predictions.p90_peak_memory_bytes[0] > predictions.peak_memory_bytes[0]
    assert predictions.source[1] == "default" and predictions[1].p90_duration_s >= predictions[1].duration_s
    assert "partition_hash" not in predictor.manifest["feature_columns"]


def test_format_1_model_with_the_partition_hash_is_still_served(model_dir, tmp_path):
    """A model trained before the composite (format 1, partition hash among its features) keeps working."""
    old = tmp_path / "old"
    train_models(synthetic_history(runs=2, tasks=40), str(old), rounds=5, composite=False)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format"] = 1
    manifest["feature_columns"].insert(7, "partition_hash")
    assert validate_manifest(manifest).format == 1
    # boosters trained without the hash cannot be fed it; the feature list check is what matters here
    assert validate_manifest(manifest).feature_columns[7] == "partition_hash"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_scheduler_starts_with_a_broken_manifest(model_dir, tmp_path, daskflow_home):
    """A LocalCluster with the steering preload starts and runs a task although the model manifest is broken."""
    import dask
    from distributed import Client, LocalCluster

    from daskflow.contracts import STEERING_PLUGIN

    models = tmp_path / "models"
    models.mkdir()
    for file in model_dir.iterdir():
        (models / file.name).write_bytes(file.read_bytes())
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["category_levels"] = {"not": "a list"}
    manifest["baseline"]["category_means"]["parse"]["duration_s"] = "slow"
    (models / "manifest.json").write_text(json.dumps(manifest))
    with dask.config.set({"daskflow.models.url": str(models), "daskflow.steering.model": str(models)}), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                          scheduler_kwargs={"preload": ["scheduler_plugins.preload"]}) as cluster, Client(cluster) as client:
            assert client.submit(lambda x: x + 1, 1).result(timeout=60) == 2
            steering = cluster.scheduler.plugins[STEERING_PLUGIN]
            assert not steering.predictor.has_model
            assert steering.predictor.load_error and "category_levels" in steering.predictor.load_error
