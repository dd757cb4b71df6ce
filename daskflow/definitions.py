"""The definition layer: ``@asset``, ``@asset_check`` and ``Definitions``.

Design note
-----------
Decorators only *record* (Hamilton style): ``@asset`` builds a frozen
:class:`AssetSpec`, stores it on the function as ``fn.__daskflow_asset__`` and
returns the function unchanged, so it stays a plain, testable, picklable Python
function. Nothing here resolves dependencies or touches Dask: the asset graph
(:mod:`daskflow.graph`) turns specs into a graph, execution runs it.

Upstream data dependencies come from parameter names. Each parameter holds a
*reference* that :func:`daskflow.graph.build_asset_graph` resolves, in order:
an exact asset key (``"sales/orders"``), an asset with that name in the same
group/key prefix, then the unique asset with that name anywhere. Map a
parameter to a specific key with ``ins={"orders": "sales/orders"}``. A
parameter named ``context`` is not an upstream: it receives an
:class:`AssetContext` (partition key, run id); every other parameter is one
(a default value does not make it optional). ``deps=`` adds ordering-only
(non-data) dependencies. Names and key parts follow Python identifier rules,
since parameters must be able to name assets.

Asset keys are strings: ``"name"``, or ``"prefix/name"`` when ``key_prefix``
(or, without a prefix, ``group``) is given. ``key="a/b"`` sets it directly.

How a value is stored (``io``): ``"auto"`` (default) stores tables (pyarrow
Table, pandas DataFrame) and any asset with a ``schema`` as Parquet, and anything
else as JSON; ``"parquet"`` and ``"json"`` force one. JSON is the safe
non-pickle format for scalars, lists and dicts. See :func:`io_for_value`.

Without a declared ``code_version`` an asset's code version is a fingerprint of
its bytecode (:func:`code_version_of`), so editing the function makes it stale.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from daskflow.errors import AssetDefinitionError
from daskflow.partitions import PartitionsDefinition, as_partitions
from daskflow.timeline.specs import normalize_schedules, normalize_sensors

__all__ = [
    "ASSET_ATTRIBUTE",
    "CHECK_ATTRIBUTE",
    "CONTEXT_PARAMETER",
    "IO_FORMATS",
    "AssetCheckSpec",
    "AssetContext",
    "AssetSpec",
    "CheckResult",
    "Definitions",
    "RetryPolicy",
    "asset",
    "asset_check",
    "check_spec_of",
    "code_fingerprint",
    "code_version_of",
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


#: bounds on retries, so a typo (retries=10**12) is an error, not a run that never ends
MAX_RETRIES = 1000
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


def _reference(value: object, owner: str, what: str) -> str:
    """Turn a reference (key string, decorated function, spec) into a string."""
    spec = spec_of(value)
    if spec is not None:
        return spec.key
    if isinstance(value, str) and value.strip("/"):
        return value.strip("/")
    raise AssetDefinitionError(
        f"{owner}: {what} {value!r} is not an asset reference; expected an asset key string "
        f"('name' or 'group/name') or an @asset-decorated function. Fix: pass e.g. 'sales/orders'."
    )


def _asset_key(name: str, key: str | None, key_prefix: str | Iterable[str] | None,
               group: str | None, owner: str) -> str:
    if key is not None:
        parts = [p for p in str(key).split("/") if p]
        if not parts:
            raise AssetDefinitionError(f"{owner}: key {key!r} is empty. Fix: key='group/name'.")
        for part in parts:
            _check_name(part, "key part", owner)
        return "/".join(parts)
    if key_prefix is not None:
        prefix = [key_prefix] if isinstance(key_prefix, str) else list(key_prefix)
        prefix = [p for part in prefix for p in str(part).split("/") if p]
    else:
        prefix = [group] if group else []
    for part in prefix:
        _check_name(part, "key prefix", owner)
    return "/".join([*prefix, name])


def _signature(fn: Callable, owner: str) -> inspect.Signature:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise AssetDefinitionError(
            f"{owner}: cannot read the signature of {fn!r} ({exc}). Fix: decorate a plain Python function."
        ) from exc


def _reject_async(fn: Callable, owner: str) -> None:
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise AssetDefinitionError(
            f"{owner}: async functions and generators are not supported; an asset (or check) "
            f"returns its value. Fix: make it a plain 'def' that returns the value."
        )


def _data_parameters(fn: Callable, owner: str) -> tuple[list[str], str | None]:
    params, context = [], None
    for param in _signature(fn, owner).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise AssetDefinitionError(
                f"{owner}: parameter *{param.name} / **{param.name} is not allowed; every parameter "
                f"names one upstream asset. Fix: list the upstream assets as named parameters."
            )
        if param.kind == param.POSITIONAL_ONLY:
            raise AssetDefinitionError(
                f"{owner}: parameter {param.name!r} is positional-only; upstream values are passed "
                f"by name. Fix: remove the '/' from the signature."
            )
        if param.name == CONTEXT_PARAMETER:
            context = param.name
        else:
            params.append(param.name)
    return params, context


def asset(
    fn: Callable | None = None,
    *,
    name: str | None = None,
    key: str | None = None,
    key_prefix: str | Iterable[str] | None = None,
    group: str | None = None,
    ins: Mapping[str, object] | None = None,
    deps: Iterable[object] | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    code_version: str | None = None,
    tags: Mapping[str, str] | None = None,
    io: str = "auto",
    schema: Any = None,
    partitions: PartitionsDefinition | Iterable[str] | None = None,
    retries: int = 0,
    retry_policy: RetryPolicy | None = None,
) -> Callable:
    """Declare a function as an asset; record an :class:`AssetSpec`; return the function.

    Works bare (``@asset``) and with arguments (``@asset(group="sales")``).
    ``retries``: Dask re-runs a failed task that many times at once (also
    after a worker died); ``retry_policy``: a :class:`RetryPolicy`, with a
    delay and backoff between attempts.

    >>> @asset
    ... def orders():
    ...     return [1, 2, 3]
    >>> @asset(group="sales", code_version="1")
    ... def total(orders):
    ...     return sum(orders)
    >>> total.__daskflow_asset__.key, total.__daskflow_asset__.ins, total([1, 2])
    ('sales/total', (('orders', 'orders'),), 3)
    """
    options = dict(name=name, key=key, key_prefix=key_prefix, group=group, ins=ins, deps=deps,
                   description=description, metadata=metadata, code_version=code_version, tags=tags,
                   io=io, schema=schema, partitions=partitions, retries=retries, retry_policy=retry_policy)
    if fn is None:
        return lambda f: _record_asset(f, **options)
    return _record_asset(fn, **options)


def _record_asset(fn: Callable, *, name, key, key_prefix, group, ins, deps, description, metadata,
                  code_version, tags, io, schema, partitions, retries, retry_policy) -> Callable:
    if not callable(fn) or isinstance(fn, type):
        raise AssetDefinitionError(
            f"@asset decorates functions, got {fn!r}. Fix: put @asset on a 'def' function "
            f"(or use @asset(...) with keyword arguments only)."
        )
    owner = f"@asset {_qualname(fn)}"
    _reject_async(fn, owner)
    if group is not None:
        _check_name(group, "group", owner)
    if key is not None:
        asset_name = str(key).strip("/").split("/")[-1]
        if name is not None and name != asset_name:
            raise AssetDefinitionError(
                f"{owner}: name={name!r} contradicts key={key!r}, whose last part is the name. "
                f"Fix: pass only key=, or only name= (with group= / key_prefix=)."
            )
    else:
        asset_name = _check_name(name or getattr(fn, "__name__", None), "name", owner)
    asset_key = _asset_key(asset_name, key, key_prefix, group, owner)
    owner = f"asset {asset_key!r} ({_qualname(fn)})"
    group_name = group if group is not None else DEFAULT_GROUP
    for option, value in (("metadata", metadata), ("tags", tags), ("ins", ins)):
        if value is not None and not isinstance(value, Mapping):
            raise AssetDefinitionError(
                f"{owner}: {option} must be a dict, got {type(value).__name__}. Fix: {option}={{...}}."
            )

    params, context = _data_parameters(fn, owner)
    mapping = dict(ins or {})
    unknown = sorted(set(mapping) - set(params))
    if unknown:
        raise AssetDefinitionError(
            f"{owner}: ins= maps {unknown} but the function has no such parameter(s); its parameters "
            f"are {params}. Fix: add the parameter(s) to the signature or remove them from ins=."
        )
    resolved_ins = tuple((p, _reference(mapping.get(p, p), owner, f"ins[{p!r}]")) for p in params)
    resolved_deps = tuple(dict.fromkeys(_reference(d, owner, "deps entry") for d in (deps or ())))

    if io not in IO_FORMATS:
        raise AssetDefinitionError(
            f"{owner}: io={io!r} is not supported; expected one of {', '.join(IO_FORMATS)}. "
            f"Fix: io='parquet' for tables, io='json' for scalars and JSON-able values."
        )
    if schema is not None:
        import pyarrow as pa  # only needed when a schema is declared

        if not isinstance(schema, pa.Schema):
            raise AssetDefinitionError(
                f"{owner}: schema must be a pyarrow.Schema, got {type(schema).__name__}. "
                f"Fix: schema=pyarrow.schema([('id', pyarrow.int64())])."
            )
        if io == "json":
            raise AssetDefinitionError(
                f"{owner}: schema= applies to tabular (Parquet) output but io='json'. "
                f"Fix: use io='parquet' (or 'auto') or drop the schema."
            )
    for tag_key, tag_value in (tags or {}).items():
        if not isinstance(tag_key, str) or not isinstance(tag_value, str):
            raise AssetDefinitionError(
                f"{owner}: tags must map str to str, got {tag_key!r}: {tag_value!r}. "
                f"Fix: tags={{'team': 'sales'}}."
            )
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
        raise AssetDefinitionError(
            f"{owner}: retries must be an int >= 0 and <= {MAX_RETRIES}, got {retries!r}. Fix: retries=2.")
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise AssetDefinitionError(
            f"{owner}: retry_policy must be a daskflow.RetryPolicy, got {type(retry_policy).__name__}. "
            "Fix: retry_policy=RetryPolicy(max_retries=3, delay_s=1.0).")
    if code_version is not None and not isinstance(code_version, str):
        raise AssetDefinitionError(
            f"{owner}: code_version must be a string, got {code_version!r}. Fix: code_version='1'."
        )

    spec = AssetSpec(
        key=asset_key,
        name=asset_name,
        fn=fn,
        group=group_name,
        ins=resolved_ins,
        deps=resolved_deps,
        context_parameter=context,
        description=description if description is not None else inspect.getdoc(fn),
        metadata=dict(metadata or {}),
        code_version=code_version,
        tags=dict(tags or {}),
        io=io,
        schema=schema,
        partitions=as_partitions(partitions, asset_key),
        retries=retries,
        retry_policy=retry_policy,
    )
    try:
        setattr(fn, ASSET_ATTRIBUTE, spec)
    except (AttributeError, TypeError) as exc:
        raise AssetDefinitionError(
            f"{owner}: cannot record the spec on {fn!r} ({exc}). Fix: decorate a plain 'def' function."
        ) from exc
    return fn


def asset_check(
    fn: Callable | None = None,
    *,
    asset: object,
    name: str | None = None,
    blocking: bool = True,
    description: str | None = None,
) -> Callable:
    """Attach a data-quality check to ``asset`` (a key string or decorated function).

    The check receives the asset value and returns a bool or :class:`CheckResult`.

    >>> @asset_check(asset="orders", blocking=False)
    ... def orders_not_empty(orders):
    ...     return len(orders) > 0
    >>> orders_not_empty.__daskflow_check__.asset, orders_not_empty([1])
    ('orders', True)
    """
    if fn is None:
        return lambda f: _record_check(f, asset=asset, name=name, blocking=blocking, description=description)
    return _record_check(fn, asset=asset, name=name, blocking=blocking, description=description)


def _record_check(fn: Callable, *, asset: object, name: str | None, blocking: bool,
                  description: str | None) -> Callable:
    if not callable(fn) or isinstance(fn, type):
        raise AssetDefinitionError(f"@asset_check decorates functions, got {fn!r}. Fix: use it on a 'def'.")
    owner = f"@asset_check {_qualname(fn)}"
    _reject_async(fn, owner)
    check_name = _check_name(name or getattr(fn, "__name__", None), "name", owner)
    target = _reference(asset, owner, "asset")
    values, context = _data_parameters(fn, owner)
    if len(values) != 1:
        raise AssetDefinitionError(
            f"{owner}: a check takes exactly one value parameter (the value of asset {target!r}) "
            f"plus an optional 'context', got {values}. Fix: def {check_name}(value): ..."
        )
    if not isinstance(blocking, bool):
        raise AssetDefinitionError(
            f"{owner}: blocking must be True or False, got {blocking!r}. "
            f"Fix: blocking=True skips downstream assets on failure, blocking=False only warns."
        )
    spec = AssetCheckSpec(
        name=check_name,
        asset=target,
        fn=fn,
        blocking=blocking,
        description=description if description is not None else inspect.getdoc(fn),
        value_parameter=values[0],
        context_parameter=context,
    )
    setattr(fn, CHECK_ATTRIBUTE, spec)
    return fn


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


def _code_payload(code: Any) -> bytes:
    """Bytes describing a code object: bytecode, constants (recursively), names.

    Line numbers, comments and memory addresses are left out, so moving or
    re-commenting a function keeps its fingerprint; frozenset constants are
    sorted because their order depends on hash randomization.
    """
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            parts.append(_code_payload(const))
        elif isinstance(const, frozenset):
            parts.append(repr(sorted(map(repr, const))).encode())
        else:
            parts.append(repr(const).encode())
    return b"\0".join(parts)


def code_fingerprint(fn: Callable) -> str:
    """``"code:"`` + 16 hex digits of the SHA-256 of ``fn``'s bytecode and constants.

    Cheap (no file I/O) and read from the function object itself, so it
    describes exactly the code that runs. Changes with the Python version.
    """
    code = getattr(fn, "__code__", None)
    payload = _code_payload(code) if code is not None else _qualname(fn).encode()
    return "code:" + hashlib.sha256(payload).hexdigest()[:16]


def code_version_of(spec: AssetSpec) -> str:
    """The declared ``code_version``, else :func:`code_fingerprint` of the function.

    Data versions hash this, so editing an asset without a ``code_version``
    makes it stale; declaring one opts into manual control (bump it to re-run).
    Functions built in a loop share their code, hence their fingerprint
    (closure values are not part of it): give those an explicit ``code_version``.

    >>> code_version_of(asset(lambda: 1, name="one", code_version="7").__daskflow_asset__)
    '7'
    """
    if spec.code_version is not None:
        return spec.code_version
    return code_fingerprint(spec.fn)


def io_for_value(spec: AssetSpec, value: object) -> str:
    """The storage format for ``value``: the spec's ``io``, or for ``"auto"`` Parquet
    for pyarrow Tables / pandas DataFrames (and for any asset with a ``schema``)
    and JSON for everything else.

    >>> spec = asset(lambda: 1, name="answer").__daskflow_asset__
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


class Definitions:
    """An explicit collection of assets, checks, schedules and sensors (what a pipeline module exports).

    ``assets`` items are @asset functions (or :class:`AssetSpec`); ``checks``
    items are @asset_check functions (or :class:`AssetCheckSpec`). Check
    functions placed in ``assets`` are moved to checks for convenience.

    >>> @asset
    ... def orders():
    ...     return [1, 2, 3]
    >>> @asset_check(asset=orders)
    ... def has_rows(orders):
    ...     return len(orders) > 0
    >>> defs = Definitions(assets=[orders], checks=[has_rows])
    >>> [s.key for s in defs.assets], [c.name for c in defs.checks]
    (['orders'], ['has_rows'])
    """

    def __init__(self, assets: Iterable[object] = (), checks: Iterable[object] = (),
                 schedules: Iterable[object] = (), sensors: Iterable[object] = ()):
        asset_specs: list[AssetSpec] = []
        check_specs: list[AssetCheckSpec] = []
        seen: set[int] = set()  # by identity: the same function listed twice counts once
        for item in list(assets) + list(checks):
            spec, check = spec_of(item), check_spec_of(item)
            found = spec if spec is not None else check
            if found is None:
                raise AssetDefinitionError(
                    f"Definitions got {item!r}, which is neither an @asset nor an @asset_check. "
                    f"Fix: decorate it with @daskflow.asset / @daskflow.asset_check, or remove it."
                )
            if id(found) in seen:
                continue
            seen.add(id(found))
            (asset_specs if spec is not None else check_specs).append(found)
        self.assets: tuple[AssetSpec, ...] = tuple(asset_specs)
        self.checks: tuple[AssetCheckSpec, ...] = tuple(check_specs)
        self.schedules = normalize_schedules(schedules)  # tuple[ScheduleSpec, ...]
        self.sensors = normalize_sensors(sensors)  # tuple[SensorSpec, ...]

    def __repr__(self) -> str:
        timeline = "".join(f", {len(items)} {kind}" for kind, items in (("schedules", self.schedules),
                                                                         ("sensors", self.sensors)) if items)
        return f"Definitions({len(self.assets)} assets, {len(self.checks)} checks{timeline})"
