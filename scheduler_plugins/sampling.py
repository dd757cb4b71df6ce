"""Tiny-task sampling: which finished tasks of a stream of trivial ones get measured and recorded.

Design note
-----------
A history row and a per-task peak-memory measurement cost ~60 us of CPU each
(the row on the scheduler, the ``/proc`` readings on the worker); for a
sub-millisecond task that is ~8 % of what Dask itself spends on it, and the
trainer floors such durations at 1 ms anyway (timer noise). So once a key
prefix has finished ``after`` tasks of which at most 1 % ran ``tiny_s`` or
longer (a GC pause now and then does not count), only every ``every``-th
further task of it is measured and recorded, with weight ``every``; the others
get weight 0 (not measured, no row). Sampling is uniform within a prefix
(every n-th task, whatever its duration), so the prefix's weighted mean,
median and quantiles stay unbiased; if long tasks become more than 1 %, every
task is measured again.

:class:`TinyTaskSampler` is the one rule. The worker's peak-memory plugin
decides per task when it starts (so a skipped task costs no ``/proc``
reading) and says so in the task's metadata (``sample_weight``); the recorder
records what the worker decided, and applies the same rule itself only where
no worker plugin measured (``register_worker_plugin=False``). Pure: no clock,
no I/O; settings ``daskflow.recorder.tiny-tasks.*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from daskflow.contracts import METADATA_KEY, SAMPLE_WEIGHT_METADATA_KEY


@dataclass
class TinyTaskSampler:
    """Per key prefix: tasks decided and, of the finished ones, how many were not tiny.

    >>> sampler = TinyTaskSampler(tiny_s=0.001, after=2, every=3)
    >>> weights = []
    >>> for _ in range(8):
    ...     weights.append(sampler.decide("noop"))
    ...     sampler.finished("noop", 0.0001)
    >>> weights
    [1.0, 1.0, 3.0, 0.0, 0.0, 3.0, 0.0, 0.0]
    """

    tiny_s: float = 0.001
    after: int = 256
    every: int = 16  # 1: every task is measured and recorded
    max_prefixes: int = 100_000
    counts: dict[str, list[int]] = field(default_factory=dict)  # prefix -> [decided, finished at least tiny_s long]

    def decide(self, prefix: str) -> float:
        """The weight of the prefix's next task: 1 (in full), ``every`` (sampled, stands for that many) or 0 (skipped)."""
        counts = self.counts.get(prefix)
        if counts is None:
            if len(self.counts) >= self.max_prefixes:
                self.counts.clear()  # bounded: a stream of one-off prefixes must not grow without end
            counts = self.counts[prefix] = [0, 0]
        counts[0] += 1
        n = counts[0]
        if self.every <= 1 or n <= self.after or counts[1] * 100 > n:
            return 1.0
        return float(self.every) if n % self.every == 0 else 0.0

    def finished(self, prefix: str, duration_s: float | None) -> None:
        """A decided task of the prefix finished after ``duration_s`` (None: unknown, counts as not tiny)."""
        counts = self.counts.get(prefix)
        if counts is not None and (duration_s is None or duration_s >= self.tiny_s):
            counts[1] += 1


def sample_weight_of(metadata: Any) -> float | None:
    """The weight the worker's peak-memory plugin gave a finished task (None: it did not decide).

    ``metadata`` is the task's metadata as the scheduler receives it: a
    skipped task has :data:`SAMPLE_WEIGHT_METADATA_KEY` = 0 (not measured: no
    learning sample, one of every ``every`` is); a measured one has its weight
    in the measurement nested under :data:`METADATA_KEY`.

    >>> sample_weight_of({SAMPLE_WEIGHT_METADATA_KEY: 0.0}), sample_weight_of({METADATA_KEY: {"sample_weight": 16.0}})
    (0.0, 16.0)
    >>> sample_weight_of({}), sample_weight_of(None)
    (None, None)
    """
    if not metadata:
        return None
    skipped = metadata.get(SAMPLE_WEIGHT_METADATA_KEY)
    if skipped is not None:
        return float(skipped)
    measured = metadata.get(METADATA_KEY)
    weight = measured.get("sample_weight") if measured else None
    return None if weight is None else float(weight)


def sampler_from_settings() -> TinyTaskSampler:
    """The sampler ``daskflow.recorder.tiny-tasks.*`` describes (defaults in daskflow.yaml)."""
    from dask.utils import parse_timedelta

    from daskflow import config

    return TinyTaskSampler(
        tiny_s=float(parse_timedelta(config.get("recorder.tiny-tasks.seconds"))),
        after=int(config.get("recorder.tiny-tasks.after")),
        every=max(1, int(config.get("recorder.tiny-tasks.sample-every"))),
    )
