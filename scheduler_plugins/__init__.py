"""Code that runs inside the Dask scheduler and workers.

May import from ``daskflow``; ``daskflow`` never imports this package except
by naming its modules as preload strings.
"""
