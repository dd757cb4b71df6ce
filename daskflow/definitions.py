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

The layer is four modules, one concept each; this one holds the
:class:`Definitions` container and re-exports the rest, so
``from daskflow.definitions import asset`` keeps working:
:mod:`daskflow.asset_specs` (the frozen specs, ``RetryPolicy``,
``CheckResult``, ``AssetContext``, ``io_for_value``), :mod:`daskflow.decorators`
(``@asset``, ``@asset_check``) and :mod:`daskflow.code_versions`
(``code_fingerprint``, ``code_version_of``).
"""


from __future__ import annotations

from typing import Iterable

from daskflow.asset_specs import (
    ASSET_ATTRIBUTE,
    CHECK_ATTRIBUTE,
    CONTEXT_PARAMETER,
    DEFAULT_GROUP,  # noqa: F401  (module attribute kept for old imports)
    IO_FORMATS,
    MAX_RETRIES,  # noqa: F401  (module attribute kept for old imports)
    MAX_RETRY_DELAY_S,  # noqa: F401  (module attribute kept for old imports)
    AssetCheckSpec,
    AssetContext,
    AssetSpec,
    CheckResult,
    RetryPolicy,
    check_spec_of,
    io_for_value,
    spec_of,
    to_check_result,
)
from daskflow.code_versions import code_fingerprint, code_version_of
from daskflow.decorators import asset, asset_check
from daskflow.errors import AssetDefinitionError
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
