"""Peer comparison: the same trivial asset graphs in daskflow, Dagster and plain Dask.

Run ``python -m benchmarks.peers.compare`` from the repository root (see
``compare.py`` and BENCHMARKS.md). ``shapes`` builds the graphs for every
system; ``runners`` holds one function per system. Dagster is an optional extra
(``pip install -e '.[peers]'``) imported lazily, so asv can import this package
without it.
"""
