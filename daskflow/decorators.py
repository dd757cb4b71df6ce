"""The decorators ``@asset`` and ``@asset_check``: validate the arguments, record a spec.

Design note
-----------
Decorators only *record* (Hamilton style): ``@asset`` builds a frozen
:class:`~daskflow.asset_specs.AssetSpec`, stores it on the function and
returns the function unchanged, so it stays a plain, testable, picklable
Python function. Every argument is checked here, once, with a one-line
:class:`~daskflow.errors.AssetDefinitionError` naming the function and the
fix; nothing resolves dependencies or touches Dask.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Mapping

from daskflow.asset_specs import (
    ASSET_ATTRIBUTE,
    CHECK_ATTRIBUTE,
    CONTEXT_PARAMETER,
    DEFAULT_GROUP,
    IO_FORMATS,
    AssetCheckSpec,
    AssetSpec,
    RetryPolicy,
    _check_name,
    _qualname,
    spec_of,
)
from daskflow.errors import AssetDefinitionError
from daskflow.limits import check_retries
from daskflow.partitions import PartitionsDefinition, as_partitions

__all__ = ["asset", "asset_check"]


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
    resources: Mapping[str, float] | None = None,
) -> Callable:
    """Declare a function as an asset; record an :class:`AssetSpec`; return the function.

    Works bare (``@asset``) and with arguments (``@asset(group="sales")``).
    ``retries``: Dask re-runs a failed task that many times at once (also
    after a worker died); ``retry_policy``: a :class:`RetryPolicy`, with a
    delay and backoff between attempts. ``resources``: Dask worker resources
    each task needs (``{"GPU": 1}``), so it runs only on workers started with
    them (``dask worker --resources GPU=1``).

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
                   io=io, schema=schema, partitions=partitions, retries=retries, retry_policy=retry_policy,
                   resources=resources)
    if fn is None:
        return lambda f: _record_asset(f, **options)
    return _record_asset(fn, **options)


def _check_resources(resources: Any, owner: str) -> dict[str, float]:
    """``resources=`` as ``{name: positive amount}``; a one-line AssetDefinitionError otherwise."""
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise AssetDefinitionError(
            f"{owner}: resources must be a dict of resource name to amount, got {type(resources).__name__}. "
            "Fix: resources={'GPU': 1}.")
    out = {}
    for name, amount in resources.items():
        if not isinstance(name, str) or not name or isinstance(amount, bool) or not isinstance(
                amount, (int, float)) or not 0 < amount < float("inf"):
            raise AssetDefinitionError(
                f"{owner}: resources must map a name to a positive finite amount, got {name!r}: {amount!r}. "
                "Fix: resources={'GPU': 1}.")
        out[name] = float(amount)
    return out


def _record_asset(fn: Callable, *, name, key, key_prefix, group, ins, deps, description, metadata,
                  code_version, tags, io, schema, partitions, retries, retry_policy,
                  resources=None) -> Callable:
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
    check_retries(retries, owner)
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise AssetDefinitionError(
            f"{owner}: retry_policy must be a daskflow.RetryPolicy, got {type(retry_policy).__name__}. "
            "Fix: retry_policy=RetryPolicy(max_retries=3, delay_s=1.0).")
    if code_version is not None and not isinstance(code_version, str):
        raise AssetDefinitionError(
            f"{owner}: code_version must be a string, got {code_version!r}. Fix: code_version='1'."
        )
    resources = _check_resources(resources, owner)

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
        resources=resources,
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
