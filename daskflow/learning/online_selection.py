"""Online selection: per category, serve the estimate that has been right in THIS run.

Design note
-----------
Offline selection (:mod:`~daskflow.learning.selection`) picks a predictor per
category on held-out rows of *other* runs; when the one other instance of an
application differs from this one (other input sizes, other task mix), that
choice can be wrong for this run, and the in-run correction
(:mod:`~daskflow.learning.online`) can make it worse (a geometric-mean factor
on a skewed category moves a good arithmetic mean away from the median task).
The tasks of a category already finished in the run are held-out evidence for
every candidate estimate of that category, so the run can check:

* ``corrected`` - the served p50 times the in-run factor (today's behaviour,
  served until there is evidence),
* ``served`` - the served p50 as the model (or offline selection) gave it,
* ``mean`` - the per-category mean of the training rows (what Dask's
  per-prefix estimate would say; the baseline every fold is scored against).

Each finished task is scored *prequentially*: every candidate's estimate as
it stood before the task finished, against what it cost (absolute
percentage error, the benchmark's metric). Per category the last
:attr:`OnlineSelectionConfig.window` errors per candidate are kept; once
:attr:`~OnlineSelectionConfig.min_tasks` tasks have finished the rule is
(:func:`choose`):

1. candidate A *beats* B when A's median error is lower by
   :attr:`~OnlineSelectionConfig.margin` (relative) AND A was closer to the
   truth on significantly more of the same tasks than not (a one-sided sign
   test at :attr:`~OnlineSelectionConfig.significance`: paired, so it needs
   far fewer tasks than comparing two medians);
2. the best non-mean candidate (lowest median error) is *preferred* when it
   beats the mean, else the mean is - the model must be clearly better;
3. a category that already has a choice switches only when the preferred
   candidate also beats the current choice (hysteresis: two candidates whose
   errors are within the margin, or not significantly apart, never
   flip-flop on noise; with medians alone, bwa switched 7 times in 100 tasks).

**Shrink toward the mean by the sign evidence** (:attr:`~OnlineSelectionConfig.shrink`).
A choice other than the mean passed the margin and the sign test once, but
hysteresis keeps it while its lead over the mean thins, and a choice closer
on 60 % of the tasks can still lose the median (blast's memory: closer on 180
of 300 tasks, the fold's median APE 0.0739 vs the mean's 0.0730). So a
non-mean choice is served as the geometric blend ``choice ** c * mean **
(1 - c)`` with ``c`` = :func:`confidence` = 1 - the two-sided sign-test p of
the choice against the mean on the window, set at every decision (closer on
8 of 8: c = 0.992; on 40 of 64: 0.94; no sign either way: 0, the mean). The
weight is the evidence itself, no constant to tune; a clearly better choice
is served almost unchanged.

**Hedge after an alarm** (:attr:`~OnlineSelectionConfig.hedge`). A drift
alarm clears a category's evidence (:meth:`OnlineSelection.forget`); the
category is then served by the correction from its tasks since the change,
which rests on a handful of tasks. When the evidence before the alarm had
put the category on its training mean (the model was not trusted there), the
mean is not dropped at once: until the selection decides again the served
estimate is the geometric blend ``corrected ** w * mean ** (1 - w)``, ``w``
starting at 1/2 and moved by the tasks since the alarm (:func:`evidence_weight`,
below). Per task the blend's log error lies between the two candidates' (so
it is never worse than the worse of them); a true change is followed as soon
as a few tasks show the correction closer, a false alarm (bwa's bursts of
tiny or slow tasks in finishing order) goes back toward the mean that was
right as soon as a few tasks show the mean closer. A category once hedged
stays so at its later alarms in the run (until a new model is served); one
the model served before its first alarm (a drift of the model's own
residuals) is not hedged.

**Evidence before a decision** (:attr:`~OnlineSelectionConfig.early_shrink`).
Until a category's first decision it is served ``corrected`` (the model's p50
times the in-run factor: the first tasks usually help), yet those tasks are
already evidence. :func:`evidence_weight` moves the correction's log weight
from its prior ``w0`` (1 before the first decision, 1/2 after a hedged alarm)
toward the candidate the tasks so far favour, by the sign evidence: ``w0 + (1
- w0) (1 - p2)`` when the correction was closer on more of them, ``w0 p2``
when the mean was, ``p2`` the two-sided sign-test p (ties within the
resolution, below, do not count). No task, or as many either way: ``w0``.
The same statistic as the shrink after a decision; no constant.

**Measurement resolution** (:attr:`~OnlineSelectionConfig.duration_resolution_s`,
:attr:`~OnlineSelectionConfig.memory_resolution_bytes`). Two candidates whose
absolute errors on a task differ by no more than the target's resolution
(1 ms, the recorder's timer floor; 64 KiB, the cleaning floor of a peak) are
a tie in every sign test above: a correction that moves a 2.5 MB mean by
40 KB is no evidence for or against it, whatever the median says.

Pure: the caller passes estimates and actuals, no clock, no I/O. One declared
state dataclass (:class:`OnlineSelection`); the corrector
(:class:`~daskflow.learning.corrector.OnlineCorrector`) owns one per target.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import isnan

#: the candidates, in the order ties are broken (the first wins)
CORRECTED, SERVED, MEAN = "corrected", "served", "mean"
CANDIDATES = (MEAN, CORRECTED, SERVED)
#: what a category without enough evidence is served by (the corrector's behaviour before online selection)
DEFAULT_CHOICE = CORRECTED


@dataclass(frozen=True)
class OnlineSelectionConfig:
    """Tunables (:func:`~daskflow.learning.corrector.corrector_config_from_settings` reads ``steering.online.selection.*``)."""

    enabled: bool = True
    min_tasks: int = 8  # finished tasks of a category before its own evidence decides
    margin: float = 0.05  # relative: a candidate must beat the mean (and, to switch, the current choice) by this much ...
    significance: float = 0.07  # ... and be closer on significantly more of the same tasks (one-sided sign test)
    window: int = 64  # per category and candidate, the most recent errors that count
    decide_every: int = 4  # after the first decision, re-decide every this many tasks (~40 us a decision, on the event loop)
    hedge: bool = True  # after an alarm on a mean-served category: blend the correction with the mean until a decision
    shrink: bool = True  # a non-mean choice is blended with the mean by its sign evidence against it (:func:`confidence`)
    early_shrink: bool = True  # before the first decision: the correction's weight moves toward the mean by the tasks so far
    # measurement resolution of the target (the corrector sets it per target): two candidates' errors on a task
    # that differ by no more than this, in the target's unit, are a tie in the sign tests (:func:`choose`, :func:`confidence`)
    duration_resolution_s: float = 1e-3  # the recorder's timer-noise floor (``recorder.tiny-tasks.seconds``)
    memory_resolution_bytes: float = float(2**16)  # the cleaning noise floor of a peak (``models.promotion.memory-resolution``)


@dataclass
class CategoryEvidence:
    """One category's prequential errors and its current choice."""

    errors: dict[str, deque[float]] = field(default_factory=dict)  # candidate -> recent absolute percentage errors
    ties: deque[float] = field(default_factory=deque)  # per task (aligned): error differences up to this are ties (resolution / actual)
    choice: str | None = None  # None: not enough evidence yet (served by DEFAULT_CHOICE)
    finished: int = 0  # tasks scored
    switches: int = 0  # how often the choice changed after the first decision
    hedged: bool = False  # a drift alarm cleared a mean choice (this run, kept at later alarms): blend with the mean until a decision
    confidence: float = 1.0  # a non-mean choice: 1 - the two-sided sign-test p against the mean at the last decision

    def finished_in_window(self, window: int) -> int:
        """How many of the scored tasks the window still holds."""
        return min(self.finished, max(1, window))


def evidence_weight(errors: Mapping[str, Sequence[float]], prior: float, ties: Sequence[float] | None = None) -> float:
    """Log weight of ``corrected`` against the mean before a decision: ``prior`` moved by the sign evidence of the tasks so far.

    ``prior + (1 - prior) (1 - p2)`` when the correction was closer on more tasks, ``prior p2`` when the mean
    was, ``prior`` when neither (or no task, or either is unknown); ``p2``: the two-sided sign-test p.

    >>> evidence_weight({"mean": [0.3] * 3, "corrected": [0.1] * 3}, 0.5)   # closer on 3 of 3: p2 = 1/4
    0.875
    >>> evidence_weight({"mean": [0.1] * 3, "corrected": [0.3] * 3}, 1.0)   # the mean closer on 3 of 3
    0.25
    >>> evidence_weight({"mean": [], "corrected": []}, 0.5)
    0.5
    """
    if CORRECTED not in errors or MEAN not in errors:
        return prior
    wins, n = _sign_counts(errors[CORRECTED], errors[MEAN], ties)
    losses = n - wins
    if wins == losses:
        return prior
    p2 = min(1.0, 2.0 * _binomial_tail(max(wins, losses), n))
    return prior + (1.0 - prior) * (1.0 - p2) if wins > losses else prior * p2


def median_errors(evidence: CategoryEvidence) -> dict[str, float]:
    """Candidate -> median of its recent errors (candidates without errors are left out)."""
    out = {}
    for name, errors in evidence.errors.items():
        value = _median(errors)
        if value is not None:
            out[name] = value
    return out


def choose(errors: Mapping[str, Sequence[float]], current: str | None, margin: float, significance: float,
           ties: Sequence[float] | None = None) -> str:
    """The candidate to serve from aligned per-task errors (NaN: no estimate); ``current``: the choice so far (None: first).

    A candidate *beats* another when its median error is lower by ``margin`` (relative) AND it was
    closer on significantly more of the same tasks than not (one-sided sign test at ``significance``,
    the rule of :func:`~daskflow.learning.selection.sign_test_p`). The preferred candidate is the best
    non-mean one if it beats the mean, else the mean; the current choice is left only for a candidate
    that beats it. ``ties`` (aligned per task): two errors that differ by no more than this are a tie
    in the sign test (the measurement resolution over the task's actual; default: only equal errors).
    Plain Python on a few dozen floats: it runs per finished task on the scheduler's loop.

    >>> errors = {"mean": [0.3] * 8, "corrected": [0.1] * 8, "served": [0.2] * 8}
    >>> choose(errors, None, 0.05, 0.07)
    'corrected'
    >>> choose({"mean": [0.30] * 8, "corrected": [0.29] * 8}, None, 0.05, 0.07)   # not clearly better
    'mean'
    >>> choose({"mean": [0.30] * 8, "corrected": [0.29] * 8}, "corrected", 0.05, 0.07)   # ... no flip either
    'corrected'
    """
    medians = {}
    for name, values in errors.items():
        value = _median(values)
        if value is not None:
            medians[name] = value

    def beats(a: str, b: str) -> bool:
        if medians[a] > medians[b] * (1.0 - margin):
            return False
        return _sign_test_p(errors[a], errors[b], ties) <= significance

    others = sorted((name for name in medians if name != MEAN), key=lambda n: (medians[n], CANDIDATES.index(n)))
    if MEAN in medians:
        preferred = others[0] if others and beats(others[0], MEAN) else MEAN
    else:
        preferred = others[0] if others else (current or DEFAULT_CHOICE)
    if current is None or preferred == current or current not in medians:
        return preferred
    return preferred if beats(preferred, current) else current


def confidence(errors: Mapping[str, Sequence[float]], choice: str, ties: Sequence[float] | None = None) -> float:
    """Log weight of ``choice`` against the mean: 1 - the two-sided sign-test p of it vs the mean on the same tasks.

    1 for the mean itself or without mean errors; 0 (serve the mean) when the tasks give no sign either way
    (``ties``: as for :func:`choose` - differences within the measurement resolution are no sign).

    >>> confidence({"mean": [0.3] * 8, "corrected": [0.1] * 8}, "corrected")   # closer on 8 of 8: p2 = 2/256
    0.9921875
    >>> confidence({"mean": [0.3, 0.1] * 4, "corrected": [0.1, 0.3] * 4}, "corrected")   # 4 of 8: no evidence
    0.0
    """
    if choice == MEAN or MEAN not in errors or choice not in errors:
        return 1.0
    return max(0.0, 1.0 - 2.0 * _sign_test_p(errors[choice], errors[MEAN], ties))


def _median(values: Iterable[float]) -> float | None:
    finite = sorted(v for v in values if not isnan(v))
    n = len(finite)
    if not n:
        return None
    return finite[n // 2] if n % 2 else 0.5 * (finite[n // 2 - 1] + finite[n // 2])


def _sign_test_p(a: Sequence[float], b: Sequence[float], ties: Sequence[float] | None = None) -> float:
    """One-sided: the chance of ``a`` having smaller errors than ``b`` on this many tasks if neither were better.

    ``ties`` (aligned per task): a pair of errors that differ by no more than this is a tie (not counted).
    """
    return _binomial_tail(*_sign_counts(a, b, ties))


def _sign_counts(a: Sequence[float], b: Sequence[float], ties: Sequence[float] | None = None) -> tuple[int, int]:
    """``(wins, n)``: on how many tasks ``a`` had the smaller error, of the ``n`` where both are known and not tied."""
    wins = n = 0
    for x, y, tie in zip(a, b, itertools.repeat(0.0) if ties is None else ties):
        if abs(x - y) > tie and not (isnan(x) or isnan(y)):  # both known, apart by more than the resolution (0: unequal)
            n += 1
            wins += x < y
    return wins, n


@functools.lru_cache(maxsize=4096)
def _binomial_tail(wins: int, n: int) -> float:
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2.0**n)


@dataclass
class OnlineSelection:
    """Per category of one target: prequential errors of the candidates and the choice they support.

    >>> selection = OnlineSelection(OnlineSelectionConfig(min_tasks=4))
    >>> for _ in range(4):   # the model is off by x2, the mean is right
    ...     _ = selection.record("load", {"corrected": 2.0, "served": 2.0, "mean": 1.0}, actual=1.0)
    >>> selection.choice("load")
    'mean'
    """

    config: OnlineSelectionConfig = field(default_factory=OnlineSelectionConfig)
    categories: dict[str, CategoryEvidence] = field(default_factory=dict)
    resolution: float = 0.0  # in the target's unit: error differences within it are ties (0: only equal errors)

    def _evidence(self, hedged: bool = False) -> CategoryEvidence:
        return CategoryEvidence(ties=deque(maxlen=max(1, self.config.window)), hedged=hedged)

    def _ties(self, evidence: CategoryEvidence) -> deque[float] | None:
        """The per-task tie tolerances aligned with the errors (None: resolution 0, only equal errors tie)."""
        if self.resolution > 0 and len(evidence.ties) == evidence.finished_in_window(self.config.window):
            return evidence.ties
        return None

    def choice(self, category: str) -> str:
        """What serves ``category`` now (:data:`DEFAULT_CHOICE` before enough evidence, or when disabled)."""
        evidence = self.categories.get(category)
        if evidence is None or evidence.choice is None or not self.config.enabled:
            return DEFAULT_CHOICE
        return evidence.choice

    def record(self, category: str, estimates: Mapping[str, float], actual: float) -> bool:
        """Score one finished task: ``estimates`` (candidate -> what it said before the task finished); True if the choice changed."""
        if not (actual > 0 and math.isfinite(actual)):
            return False
        evidence = self.categories.get(category)
        if evidence is None:
            evidence = self.categories[category] = self._evidence()
        known = evidence.errors
        # aligned per task: NaN where a candidate had no estimate (the same candidates every task: no set algebra)
        names = estimates.keys() if estimates.keys() == known.keys() else set(known) | set(estimates)
        for name in names:
            estimate = estimates.get(name)
            errors = known.get(name)
            if errors is None:
                errors = known[name] = deque([math.nan] * evidence.finished, maxlen=max(1, self.config.window))
            valid = estimate is not None and estimate > 0 and math.isfinite(estimate)
            errors.append(abs(estimate - actual) / actual if valid else math.nan)
        if self.resolution > 0:
            evidence.ties.append(self.resolution / actual)  # the resolution as a difference of percentage errors
        evidence.finished += 1
        if not self.config.enabled or evidence.finished < self.config.min_tasks:
            return False
        if evidence.choice is not None and (evidence.finished - self.config.min_tasks) % max(1, self.config.decide_every):
            return False
        ties = self._ties(evidence)
        new = choose(evidence.errors, evidence.choice, self.config.margin, self.config.significance, ties)
        evidence.confidence = confidence(evidence.errors, new, ties) if self.config.shrink else 1.0
        if new == evidence.choice:
            return False
        if evidence.choice is not None:
            evidence.switches += 1
        evidence.choice = new
        return True

    def forget(self, category: str) -> None:
        """Drop a category's evidence and choice (a drift alarm: the errors before the change do not apply after it).

        A category whose choice was the mean, or that was hedged before (its evidence put it on the mean
        earlier in the run: the alarms of such a category are the ones that may be false), is left *hedged*
        (:attr:`OnlineSelectionConfig.hedge`): see :meth:`blend_weight`.
        """
        evidence = self.categories.pop(category, None)
        if self.config.hedge and self.config.enabled and evidence is not None and (
                evidence.choice == MEAN or evidence.hedged):  # once hedged, every later alarm is
            self.categories[category] = self._evidence(hedged=True)

    def blend_weight(self, category: str) -> float:
        """Log weight of ``corrected`` against the mean in what serves ``category`` (1.0: not blended).

        A decided non-mean choice: its :func:`confidence`; a mean choice: 1 (the mean is served as is). Before a
        decision: :func:`evidence_weight` of the tasks so far from 1/2 for a hedged category (a drift alarm cleared
        its mean choice) and from 1 otherwise (1 with :attr:`~OnlineSelectionConfig.early_shrink` off, or the
        selection disabled).

        >>> selection = OnlineSelection(OnlineSelectionConfig(min_tasks=4))
        >>> for _ in range(4):
        ...     _ = selection.record("load", {"corrected": 2.0, "mean": 1.0}, actual=1.0)
        >>> selection.forget("load")   # an alarm: the mean choice is cleared, the category hedged
        >>> selection.choice("load"), selection.blend_weight("load")
        ('corrected', 0.5)
        """
        evidence = self.categories.get(category)
        if evidence is None:
            return 1.0
        if evidence.choice is not None:
            return evidence.confidence if evidence.choice != MEAN else 1.0
        if not self.config.enabled or not (evidence.hedged or self.config.early_shrink):
            return 1.0
        return evidence_weight(evidence.errors, 0.5 if evidence.hedged else 1.0, self._ties(evidence))

    def describe(self) -> dict[str, dict[str, object]]:
        """Category -> choice, tasks scored, switches and median errors (the model page, explain)."""
        return {category: {"choice": self.choice(category), "finished": e.finished, "switches": e.switches,
                           "blend": round(self.blend_weight(category), 4),
                           "median_errors": {k: round(v, 4) for k, v in median_errors(e).items()}}
                for category, e in self.categories.items()}
