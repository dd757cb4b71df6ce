"""The curated public API: every name in ``daskflow.__all__`` resolves, and the module docstring runs."""

import doctest

import daskflow


def test_all_names_resolve():
    missing = [name for name in daskflow.__all__ if not hasattr(daskflow, name)]
    assert missing == []


def test_unknown_attribute_raises_attribute_error():
    try:
        daskflow.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_module_docstring_example_runs():
    result = doctest.testmod(daskflow)
    assert result.attempted > 0 and result.failed == 0


def test_package_does_not_import_scheduler_plugins():
    """daskflow names scheduler_plugins only as preload strings (DESIGN: one dependency direction)."""
    import pathlib

    root = pathlib.Path(daskflow.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if any(
            line.lstrip().startswith(("import scheduler_plugins", "from scheduler_plugins"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_module_docstring_examples_run():
    """Runnable examples in the docstrings of core modules stay true."""
    import importlib

    for name in ("daskflow.config", "daskflow.catalog", "daskflow.catalog_records", "daskflow.storage"):
        module = importlib.import_module(name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
