"""What ``@asset`` and ``@asset_check`` record: frozen, plain-data specs.

Design note
-----------
An :class:`AssetSpec` / :class:`AssetCheckSpec` is stored on the decorated
function (``fn.__daskflow_asset__`` / ``fn.__daskflow_check__``); references
in it (``ins``, ``deps``, a check's ``asset``) stay unresolved strings until
:func:`daskflow.graph.build_asset_graph` resolves them. :class:`RetryPolicy`,
:class:`CheckResult` and :class:`AssetContext` are the small value types an
asset or check meets at run time. :func:`io_for_value` picks the storage
format of a value from its spec. Nothing here imports Dask; the decorators
that build these specs live in :mod:`daskflow.decorators`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from daskflow.errors import AssetDefinitionError
from daskflow.limits import MAX_RETRIES
from daskflow.partitions import PartitionsDefinition

__all__ = [
    "ASSET_ATTRIBUTE",
    "CHECK_ATTRIBUTE",
    "CONTEXT_PARAMETER",
    "DEFAULT_GROUP",
    "IO_FORMATS",
    "MAX_RETRIES",
    "MAX_RETRY_DELAY_S",
    "AssetCheckSpec",
    "AssetContext",
    "AssetSpec",
    "CheckResult",
    "RetryPolicy",
    "check_spec_of",
    "io_for_value",
    "spec_of",
    "to_check_result",
]

ASSET_ATTRIBUTE = "__daskflow_asset__"
CHECK_ATTRIBUTE = "__daskflow_check__"
CONTEXT_PARAMETER = "context"
IO_FORMATS = ("auto", "parquet", "json")
DEFAULT_GROUP = "default"

# Names double as Python parameter names, so they follow identifier rules (ASCII).
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _qualname(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_name(value: object, what: str, owner: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise AssetDefinitionError(
            f"{owner}: {what} {value!r} is not a valid name; expected ASCII letters, digits and '_', "
            f"starting with a letter or '_' (like a Python identifier). "
            f"Fix: rename it (or pass name=...), e.g. 'daily_orders'."
        )
    return value


#: bounds on retries (MAX_RETRIES, from daskflow.limits), so a typo (retries=10**12) is an error, not a run that never ends
MAX_RETRY_DELAY_S = 86400.0


@dataclass(frozen=True)
class RetryPolicy:
    """How an asset retries a failed attempt: up to ``max_retries`` times, waiting between attempts.

    The wait before retry ``n`` (1-based) is ``delay_s * backoff ** (n - 1)``,
    then scaled by a random factor in ``[1 - jitter, 1 + jitter]`` (spreads
    retries of many partitions hitting one flaky service), capped at one day.
    ``backoff=1`` waits ``delay_s`` every time. While waiting, the task gives
    its worker thread back (``distributed.secede``), so other tasks run.
    The asset's ``context.attempt`` is the attempt number (1-based).

    >>> policy = RetryPolicy(max_retries=3, delay_s=1.0, backoff=2.0)
    >>> [policy.delay_before(n) for n in (1, 2, 3)]
    [1.0, 2.0, 4.0]
    """

    max_retries: int = 1
    delay_s: float = 0.0
    backoff: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or not (
                0 <= self.max_retries <= MAX_RETRIES):
            raise AssetDefinitionError(
                f"RetryPolicy: max_retries must be an int in 0..{MAX_RETRIES}, got {self.max_retries!r}. "
                "Fix: RetryPolicy(max_retries=3).")
        for name, value, low, high in (("delay_s", self.delay_s, 0.0, MAX_RETRY_DELAY_S),
                                       ("backoff", self.backoff, 1.0, 100.0), ("jitter", self.jitter, 0.0, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
                raise AssetDefinitionError(
                    f"RetryPolicy: {name} must be a number in [{low:g}, {high:g}], got {value!r}. "
                    "Fix: RetryPolicy(max_retries=3, delay_s=1.0, backoff=2.0, jitter=0.1).")

    def delay_before(self, retry: int, random_unit: float = 0.5) -> float:
        """Seconds to wait before retry number ``retry`` (1-based); ``random_unit`` in [0, 1) drives the jitter."""
        try:
            base = float(self.delay_s) * float(self.backoff) ** max(0, retry - 1)
        except OverflowError:  # 100.0 ** 999: far beyond the cap
            base = MAX_RETRY_DELAY_S
        factor = 1.0 + self.jitter * (2.0 * random_unit - 1.0)
        return float(min(MAX_RETRY_DELAY_S, max(0.0, base * factor)))


@dataclass(frozen=True)
class AssetSpec:
    """Everything ``@asset`` recorded about one asset. Frozen, plain data.

    ``ins`` maps each data parameter to an unresolved reference (key or name);
    ``deps`` lists non-data references. :class:`daskflow.graph.AssetGraph`
    holds the resolved keys.
    """

    key: str
    name: str
    fn: Callable[..., Any] = field(repr=False, compare=False)
    group: str = DEFAULT_GROUP
    ins: tuple[tuple[str, str], ...] = ()
    deps: tuple[str, ...] = ()
    context_parameter: str | None = None
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    code_version: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)
    io: str = "auto"
    schema: Any = field(default=None, compare=False)  # pyarrow.Schema | None
    partitions: PartitionsDefinition | None = None
    retries: int = 0
    retry_policy: RetryPolicy | None = None
    #: Dask worker resources each task of this asset needs (``{"GPU": 1}``): it runs only on workers that have them
    resources: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def key_prefix(self) -> str | None:
        """Everything before the last ``/`` of the key, or None."""
        return self.key.rpartition("/")[0] or None

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the data parameters, in signature order."""
        return tuple(param for param, _ in self.ins)

    @property
    def source(self) -> str:
        """``module.qualname`` of the decorated function (for error messages)."""
        return _qualname(self.fn)


@dataclass(frozen=True)
class AssetCheckSpec:
    """A data-quality check attached to one asset.

    The check function receives the asset's value as its first parameter (and
    an :class:`AssetContext` if it has a ``context`` parameter) and returns a
    bool or a :class:`CheckResult`. ``blocking=True``: when it fails, assets
    downstream of ``asset`` are skipped; ``blocking=False``: failure is a
    warning. ``asset`` is an unresolved reference until the graph is built.
    """

    name: str
    asset: str
    fn: Callable[..., Any] = field(repr=False, compare=False)
    blocking: bool = True
    description: str | None = None
    value_parameter: str = "value"
    context_parameter: str | None = None

    @property
    def source(self) -> str:
        return _qualname(self.fn)


@dataclass(frozen=True)
class CheckResult:
    """What a check returns (a plain ``bool`` is turned into one)."""

    passed: bool
    message: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AssetContext:
    """Passed to an asset or check function that has a ``context`` parameter.

    ``attempt``: which attempt of the asset this is, 1-based (see
    :class:`RetryPolicy`); 0 outside a run.
    """

    asset_key: str
    partition: str | None = None
    run_id: str | None = None
    attempt: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


def spec_of(obj: object) -> AssetSpec | None:
    """The :class:`AssetSpec` of a decorated function (or the spec itself), else None."""
    if isinstance(obj, AssetSpec):
        return obj
    spec = getattr(obj, ASSET_ATTRIBUTE, None) if callable(obj) else None
    return spec if isinstance(spec, AssetSpec) else None


def check_spec_of(obj: object) -> AssetCheckSpec | None:
    """The :class:`AssetCheckSpec` of a decorated check (or the spec itself), else None."""
    if isinstance(obj, AssetCheckSpec):
        return obj
    spec = getattr(obj, CHECK_ATTRIBUTE, None) if callable(obj) else None
    return spec if isinstance(spec, AssetCheckSpec) else None


def to_check_result(value: object, check: AssetCheckSpec | None = None) -> CheckResult:
    """Normalize what a check function returned into a :class:`CheckResult`.

    >>> to_check_result(True), to_check_result(CheckResult(False, "3 nulls")).message
    (CheckResult(passed=True, message='', metadata={}), '3 nulls')
    """
    if isinstance(value, CheckResult):
        return value
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and "bool" in type(value).__name__):
        return CheckResult(passed=bool(value))
    who = f"check {check.name!r} of asset {check.asset!r} ({check.source})" if check else "a check"
    raise AssetDefinitionError(
        f"{who} returned {type(value).__name__} {value!r}; expected a bool or CheckResult. "
        f"Fix: return CheckResult(passed=..., message=...)."
    )


def io_for_value(spec: AssetSpec, value: object) -> str:
    """The storage format for ``value``: the spec's ``io``, or for ``"auto"`` Parquet
    for pyarrow Tables / pandas DataFrames (and for any asset with a ``schema``)
    and JSON for everything else.

    >>> spec = AssetSpec(key="answer", name="answer", fn=lambda: 42)
    >>> io_for_value(spec, 42)
    'json'
    """
    if spec.io != "auto":
        return spec.io
    if spec.schema is not None:  # a declared schema only makes sense for tables
        return "parquet"
    module = type(value).__module__.split(".")[0]
    if module == "pyarrow" and type(value).__name__ in ("Table", "RecordBatch"):
        return "parquet"
    if module == "pandas" and type(value).__name__ == "DataFrame":
        return "parquet"
    return "json"
