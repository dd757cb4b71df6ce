"""Errors of the multi-host test bed (one line each: the object, what went wrong, the fix)."""

from __future__ import annotations

from daskflow.errors import DaskflowError


class TestBedError(DaskflowError):
    """A test bed could not be started or torn down."""

    __test__ = False  # not a pytest test class


class TestBedUnavailable(TestBedError):
    """This machine cannot run a test bed (not root, no ``ip``/``tc``, no network namespaces)."""

    __test__ = False
