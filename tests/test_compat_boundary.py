"""Scheduler/worker internals and private dask modules are touched only in the two compat layers.

The rule (checked on the AST of every module in ``daskflow/`` and
``scheduler_plugins/`` except the compat layers: the module
:data:`COMPAT_MODULES` and the modules of the package :data:`COMPAT_PACKAGES`,
see :func:`is_compat_module`):

1. **Imports**: no private dask/distributed module (a dotted path under ``dask``
   or ``distributed`` with a part starting with ``_``, e.g. ``dask._task_spec``),
   no private name from them (``from distributed.x import _y``), and none of
   the modules holding the scheduler's and worker's state classes
   (:data:`STATE_MODULES`) except under ``if TYPE_CHECKING:``.
2. **Scheduler objects are opaque**: on a name that by house convention holds a
   distributed object (:data:`SCHEDULER_NAMES`: ``scheduler``, ``ts``, ``ws``,
   ``self.scheduler``, ...) only the public plugin API in
   :data:`PUBLIC_SCHEDULER_API` may be used (``scheduler.log_event``, ...).
3. **Known internals by name**: attribute names that exist only on
   distributed's Scheduler / TaskState / WorkerState / TaskPrefix
   (:data:`INTERNAL_ATTRIBUTES`: ``periodic_callbacks``, ``task_prefixes``,
   ``worker_restrictions``, ``plugins``, ...) are not read or written, whatever
   the variable is called.
4. **Private attributes**: ``x._name`` (and ``getattr(x, "_name")``) only on
   ``self`` / ``cls``.

Calls into a compat module (``compat.processing_on(ts)``) are what the rule
asks for, so attributes of a name ``compat`` are never flagged.

``getattr`` / ``setattr`` / ``hasattr`` with a literal name count as attribute
access. Rules 2-4 are syntactic on purpose: they are cheap, precise about what
they flag and can be read in one screen; a new need goes into a compat module.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("daskflow", "scheduler_plugins")
COMPAT_MODULES = {"daskflow/compat.py"}
COMPAT_PACKAGES = {"scheduler_plugins/compat"}  # every module directly in it (one concept each)

STATE_MODULES = {"distributed.scheduler", "distributed.worker_state_machine"}
SCHEDULER_NAMES = {"scheduler", "dask_scheduler", "ts", "ws", "dts", "task_state", "worker_state"}
SELF_SCHEDULER_NAMES = {"scheduler", "worker"}  # self.scheduler / self.worker in plugins
PUBLIC_SCHEDULER_API = {"log_event", "add_plugin", "remove_plugin", "address", "id"}
INTERNAL_ATTRIBUTES = {
    "periodic_callbacks", "task_prefixes", "task_groups", "duration_average", "max_exec_time",
    "worker_restrictions", "loose_restrictions", "host_restrictions", "resource_restrictions",
    "processing_on", "who_has", "who_wants", "waiting_on", "waiters", "unrunnable", "run_spec",
    "plugins", "extensions", "http_application", "http_server", "time_delay", "worker_plugins",
    "periodic_callback", "stealing", "replicated_tasks", "queued", "idle_task_count",
}

# Known offenders, each with the reason it may stay. Empty: the rule holds for every module.
ALLOWED_OFFENDERS: set[tuple[str, str]] = set()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _private_dask_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] in ("dask", "distributed") and any(part.startswith("_") for part in parts[1:])


def _receiver(node: ast.expr) -> str | None:
    """``scheduler`` for ``scheduler.x``; ``self.scheduler`` for ``self.scheduler.x``; else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def _attribute_uses(tree: ast.AST):
    """``(receiver expression, attribute name, line)`` for ``x.name`` and ``getattr(x, "name")``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            yield node.value, node.attr, node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            yield node.args[0], node.args[1].value, node.lineno


def _type_checking_imports(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        lines.add(sub.lineno)
    return lines


def violations(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` for every use of an internal in ``source`` (see the module docstring)."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    typing_only = _type_checking_imports(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _private_dask_module(alias.name) or (alias.name in STATE_MODULES and node.lineno not in typing_only):
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            root = node.module.split(".")[0]
            if _private_dask_module(node.module) or (node.module in STATE_MODULES and node.lineno not in typing_only):
                found.append((node.lineno, f"from {node.module} import"))
            elif root in ("dask", "distributed"):
                found += [(node.lineno, f"from {node.module} import {a.name}") for a in node.names if a.name.startswith("_")]
    for value, attr, line in _attribute_uses(tree):
        receiver = _receiver(value)
        if receiver == "compat":  # compat.processing_on(ts) is the way to do it
            continue
        text = f"{receiver or ast.unparse(value)}.{attr}"
        on_scheduler = receiver in SCHEDULER_NAMES or (
            receiver is not None and receiver.startswith("self.") and receiver[5:] in SELF_SCHEDULER_NAMES
        )
        private = attr.startswith("_") and not attr.startswith("__") and receiver not in ("self", "cls")
        # An internal attribute name on ``self`` is the class's own field (``self.waiting_on`` of the run loop),
        # not a scheduler object's: scheduler objects reached through ``self`` are caught by ``on_scheduler``.
        internal_name = attr in INTERNAL_ATTRIBUTES and receiver not in ("self", "cls")
        if (on_scheduler and attr not in PUBLIC_SCHEDULER_API) or internal_name or private:
            found.append((line, text))
    return found


def is_compat_module(relative: str) -> bool:
    """Whether the module at ``relative`` (``scheduler_plugins/compat/tasks.py``) is part of a compat layer."""
    folder, _, name = relative.rpartition("/")
    return relative in COMPAT_MODULES or (folder in COMPAT_PACKAGES and name.endswith(".py"))


def _modules() -> list[pathlib.Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_only_the_compat_modules_touch_scheduler_internals():
    offenders = []
    seen_allowed = set()
    for path in _modules():
        relative = path.relative_to(ROOT).as_posix()
        if is_compat_module(relative):
            continue
        for line, what in violations(path.read_text()):
            if (relative, what) in ALLOWED_OFFENDERS:
                seen_allowed.add((relative, what))
                continue
            offenders.append(f"{relative}:{line}: {what}")
    assert offenders == [], "move these into daskflow/compat.py or a module of scheduler_plugins/compat/:\n" + "\n".join(offenders)
    stale = ALLOWED_OFFENDERS - seen_allowed
    assert not stale, f"allow-listed offenders that no longer occur (remove them from ALLOWED_OFFENDERS): {sorted(stale)}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from dask._task_spec import Task", "from dask._task_spec import"),
        ("import distributed._concurrent_futures_thread", "import distributed._concurrent_futures_thread"),
        ("from distributed.scheduler import TaskState", "from distributed.scheduler import"),
        ("from distributed.utils import _maybe_complex", "from distributed.utils import _maybe_complex"),
        ("x = scheduler.tasks", "scheduler.tasks"),
        ("x = self.scheduler.workers", "self.scheduler.workers"),
        ("ts.priority = (1,)", "ts.priority"),
        ("x = dask_scheduler.plugins.get('a')", "dask_scheduler.plugins"),
        ("prefix.duration_average = 0.5", "prefix.duration_average"),
        ("getattr(app, '_prefix', None)", "app._prefix"),
        ("x = self.worker.state", "self.worker.state"),
        ("ws = scheduler_state.workers\nws.memory_limit", "ws.memory_limit"),
    ],
)
def test_the_rule_flags_each_kind_of_internal(source, expected):
    assert expected in [what for _, what in violations(source)]


@pytest.mark.parametrize(
    "source",
    [
        "scheduler.log_event('daskflow-steering', {})",
        "if TYPE_CHECKING:\n    from distributed.scheduler import TaskState",
        "self._buffer.append(1)",
        "trace.tasks[0].parents",
        "from distributed.diagnostics.plugin import SchedulerPlugin",
        "from dask.utils import format_bytes",
        "compat.processing_on(ts)",
    ],
)
def test_the_rule_leaves_public_api_and_own_state_alone(source):
    assert violations(source) == []


@pytest.mark.parametrize(
    ("relative", "exempt"),
    [
        ("daskflow/compat.py", True),
        ("scheduler_plugins/compat/__init__.py", True),
        ("scheduler_plugins/compat/tasks.py", True),
        ("scheduler_plugins/compat/nested/tasks.py", False),  # only modules directly in the package
        ("scheduler_plugins/compat_helpers.py", False),
        ("scheduler_plugins/dashboard/compat.py", False),
        ("scheduler_plugins/steering.py", False),
    ],
)
def test_only_the_compat_layers_are_exempt(relative, exempt):
    assert is_compat_module(relative) is exempt


def test_the_compat_package_exists_and_is_scanned():
    """The exemption names a real package, so a rename cannot silently exempt nothing or everything."""
    relatives = {path.relative_to(ROOT).as_posix() for path in _modules()}
    for package in COMPAT_PACKAGES:
        assert f"{package}/__init__.py" in relatives
    assert {relative for relative in relatives if is_compat_module(relative)} >= COMPAT_MODULES
