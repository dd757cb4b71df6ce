"""Replaying workflow traces on a real Dask cluster."""
