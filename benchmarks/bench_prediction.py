"""asv: cost of predicting task costs and of the steering policy's decisions.

Why it matters: the steering plugin predicts once per graph update (batched:
one XGBoost call for the whole batch) and then makes one placement decision
per ready task inside the scheduler's event loop. Both must stay in the
microseconds per task, or the plugin slows down the scheduler it is meant to
speed up (DESIGN: ~10 µs per task is within noise at ~1,350 tasks/s).

* feature extraction + batch prediction for 10k task records with a real
  XGBoost model trained in ``setup_cache`` on synthetic history;
* policy: critical-path ranks for a 10k-task DAG, and ``choose_worker`` /
  ``plan_dispatch`` per task over 8 workers. ``track_`` methods report the
  cost per task in microseconds directly.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time

from benchmarks import require

N_TASKS = 10_000
N_CATEGORIES = 25
N_WORKERS = 8


def synthetic_records(n_tasks: int, seed: int = 0) -> list[dict]:
    """History-shaped rows: ``n_tasks`` tasks in ``N_CATEGORIES`` categories, duration ∝ input bytes.

    Each row has every feature field of :mod:`daskflow.learning.features` plus the
    targets (``duration_s``, ``peak_memory_bytes``), so it serves both as training
    history and as records to predict for.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n_tasks):
        category = f"cat{i % N_CATEGORIES:02d}"
        input_bytes = int(10 ** rng.uniform(3, 9))
        n_dependencies = rng.randint(0, 4)
        rows.append({
            "run_id": f"run{i % 5}", "key": f"{category}-{i}", "key_prefix": category,
            "category": category, "kind": "asset", "asset": category,
            "partition": f"2024-01-{1 + i % 28:02d}", "input_bytes": input_bytes,
            "input_rows": input_bytes // 100, "n_inputs": n_dependencies,
            "n_dependencies": n_dependencies, "dependency_bytes": input_bytes // 2,
            "worker_threads": 1, "worker_memory_limit_bytes": 4 * 2**30,
            "duration_s": 0.01 + input_bytes / 1e8 * (1 + (i % N_CATEGORIES) / 10) * rng.uniform(0.9, 1.1),
            "peak_memory_bytes": int(input_bytes * rng.uniform(1.5, 2.5)), "outcome": "success",
            "recorded_at": 1.7e9 + i,
        })
    return rows


def train_synthetic_model(model_dir: str, n_rows: int = 5_000) -> str:
    """Train and save a real XGBoost model on synthetic history into ``model_dir``; return it."""
    import pandas as pd

    training = require("daskflow.learning.training", "train_models")
    training.train_models(pd.DataFrame(synthetic_records(n_rows, seed=1)), model_dir, rounds=50)
    return model_dir


class BatchPrediction:
    """Feature extraction and batched duration + peak-memory prediction for 10k tasks."""

    timeout = 180
    number = 1
    repeat = (1, 5, 20.0)

    def setup_cache(self) -> str:
        """Train the model once for all benchmarks of this class; its directory is the cache."""
        require("daskflow.learning.predictor", "Predictor")
        model_dir = os.path.join(tempfile.gettempdir(), f"daskflow-bench-model-{os.getpid()}")
        shutil.rmtree(model_dir, ignore_errors=True)
        return train_synthetic_model(model_dir)

    def setup(self, model_dir: str) -> None:
        features = require("daskflow.learning.features", "feature_frame")
        predictor = require("daskflow.learning.predictor", "Predictor")
        self.feature_frame = features.feature_frame
        self.predictor = predictor.Predictor.load(model_dir)
        if not self.predictor.has_model:
            raise RuntimeError(f"benchmark model at {model_dir} did not load: {self.predictor.load_error}")
        self.records = synthetic_records(N_TASKS, seed=2)
        self.levels = sorted({r["category"] for r in self.records})

    def time_feature_frame_10k(self, model_dir: str) -> None:
        """Records (dicts, as built from annotations) → the model's feature frame."""
        self.feature_frame(self.records, self.levels)

    def time_predict_10k(self, model_dir: str) -> None:
        """One batched ``Predictor.predict`` (features + two XGBoost boosters) for 10k tasks."""
        self.predictor.predict(self.records)

    def track_predict_us_per_task(self, model_dir: str) -> float:
        """Microseconds per task of a 10k batched prediction (median of 3)."""
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            self.predictor.predict(self.records)
            samples.append(time.perf_counter() - start)
        return 1e6 * sorted(samples)[1] / N_TASKS

    track_predict_us_per_task.unit = "µs/task"

    def peakmem_predict_10k(self, model_dir: str) -> None:
        """Peak memory while predicting a 10k batch (features, DMatrix, outputs)."""
        self.predictor.predict(self.records)


def _layered_dag(n_tasks: int, width: int = 100, seed: int = 3) -> tuple[dict, dict]:
    rng = random.Random(seed)
    durations = {f"t{i}": rng.lognormvariate(-2, 1) for i in range(n_tasks)}
    parents = {}
    for i in range(width, n_tasks):
        layer_start = (i // width - 1) * width
        parents[f"t{i}"] = [f"t{layer_start + rng.randrange(width)}" for _ in range(2)]
    return durations, parents


class PolicyDecisions:
    """The pure steering policy: ranks for a 10k-task DAG and per-task placement over 8 workers."""

    timeout = 120
    number = 1
    repeat = (1, 5, 20.0)

    def setup(self) -> None:
        policy = require("scheduler_plugins.policy", "critical_path_ranks", "choose_worker", "plan_dispatch")
        self.policy = policy
        self.durations, self.parents = _layered_dag(N_TASKS)
        rng = random.Random(4)
        addresses = [f"tcp://10.0.0.{i}:8786" for i in range(N_WORKERS)]
        self.tasks = [
            policy.TaskInfo(
                key=key, duration_s=duration, peak_memory_bytes=rng.randrange(1, 500) * 2**20,
                dependencies=tuple(policy.DependencyInfo(rng.randrange(1, 100) * 2**20,
                                                         frozenset([rng.choice(addresses)]))
                                   for _ in range(2)),
                input_locations=((f"10.0.0.{rng.randrange(N_WORKERS)}", 2**20),),
            )
            for key, duration in self.durations.items()
        ]
        self.addresses = addresses
        self.config = policy.PolicyConfig()

    def _workers(self) -> dict:
        return {a: self.policy.WorkerInfo(address=a, host=a.split("//")[1].split(":")[0], nthreads=2,
                                          memory_limit_bytes=16 * 2**30, n_processing=1)
                for a in self.addresses}

    def time_critical_path_ranks_10k(self) -> None:
        """Critical-path ranks (predicted duration + longest path to a sink) for 10k tasks."""
        self.policy.critical_path_ranks(self.durations, self.parents)

    def time_choose_worker_10k(self) -> None:
        """``choose_worker`` for each of 10k ready tasks over 8 workers (finish time, memory, locality)."""
        workers = self._workers()
        choose = self.policy.choose_worker
        for task in self.tasks:
            choose(task, workers.values(), self.config, open_only=False)

    def track_choose_worker_us_per_task(self) -> float:
        """Microseconds per placement decision over 8 workers (median of 3 passes over 10k tasks)."""
        samples = []
        for _ in range(3):
            workers = self._workers()
            start = time.perf_counter()
            for task in self.tasks:
                self.policy.choose_worker(task, workers.values(), self.config, open_only=False)
            samples.append(time.perf_counter() - start)
        return 1e6 * sorted(samples)[1] / N_TASKS

    track_choose_worker_us_per_task.unit = "µs/task"

    def time_plan_dispatch_rounds(self) -> None:
        """Dispatch rounds over the 10k tasks (each round places until no worker is open, ≤ max_scan)."""
        remaining = iter(self.tasks)
        for _ in range(N_TASKS // self.config.max_scan + 1):
            workers = {a: self.policy.WorkerInfo(address=a, nthreads=32) for a in self.addresses}
            for _placement in self.policy.plan_dispatch(remaining, workers, self.config):
                pass
